"""Closed-loop prediction: the rollout itself and the files the command writes."""
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from model.config import load_config
from model.data import load_frames
from model.rollout import rollout
from model.engine import train
from model.scripts import predict
from model.vit import VisionTransformer


def stripes(num_frames=30, size=32):
    """uint8 (N, size, size): a bright column sweeping right, one pixel per frame."""
    frames = np.full((num_frames, size, size), 30, np.uint8)
    for i, frame in enumerate(frames):
        frame[:, (2 * i) % size: (2 * i) % size + 3] = 220
    return frames


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(config path, checkpoint path) of a tiny model trained for 3 steps on a 30-frame video."""
    folder = tmp_path_factory.mktemp("predict")
    with h5py.File(folder / "video.hdf5", "w") as file:
        file.create_dataset("rgb_images", data=stripes())
    config = folder / "tiny.json"
    config.write_text(json.dumps({
        "model_path": "tiny", "num_workers": 0,
        "data": {"hdf5_file": str(folder / "video.hdf5"), "validation_fraction": 0.5, "test_fraction": 0.0},
        "model": {"batch_size": 4, "image_height": 32, "image_width": 32, "num_frames": 3, "channels": 16,
                  "num_heads": 2, "layers": 1, "patch_size": 8},
        "training": {"max_steps": 3, "warmup_steps": 1}}))
    train(load_config(config), load_frames(folder / "video.hdf5"), folder / "run", log=lambda line: None)
    return config, folder / "run" / "quicksave.ckpt"


def test_rollout_feeds_back_quantised_predictions():
    torch.manual_seed(0)
    model = VisionTransformer(num_frames=3, image_height=16, image_width=16, patch_size=8, channels=16,
                              num_heads=2, layers=1).eval()
    context = torch.rand(2, 2, 16, 16)
    with torch.no_grad():
        frames = rollout(model, context, steps=3)
        assert frames.shape == (2, 3, 16, 16)
        assert torch.equal(frames * 255, (frames * 255).round())  # 8-bit values
        window = context
        for i in range(3):
            expected = torch.round(model.predict_next_frame(window) * 255) / 255
            torch.testing.assert_close(frames[:, i], expected, rtol=0, atol=0)
            window = torch.stack([window[:, 1], expected], dim=1)


def test_predict_writes_pngs_gif_and_metrics(trained, tmp_path, capsys):
    config, checkpoint = trained
    out = tmp_path / "samples"
    assert predict.main(["-cfg", str(config), "--load", str(checkpoint), "--output", str(out),
                         "--num_samples", "2", "--steps", "4", "--seed", "3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["steps"] == 4 and metrics["checkpoint_step"] == 3
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 8
    for sample in metrics["samples"]:
        first = sample["first_predicted_frame"]
        assert first == sample["first_context_frame"] + 2 and first >= 15  # predicted frames in the validation half
        for i in range(4):
            assert f"prediction_{sample['sample']:05d}_{i:05d}_frame_{first + i:05d}.png" in pngs
        for kind in ("rollout", "copy_last"):
            assert {key: len(values) for key, values in sample[kind].items()} == {"l1": 4, "psnr": 4, "ssim": 4}
    with Image.open(out / pngs[0]) as image:
        assert image.size == (128, 128) and image.mode == "L"  # 4x nearest
    with Image.open(out / "rollout_00000.gif") as gif:
        assert gif.n_frames == 4 and gif.size == ((3 * 32 + 4) * 4, 32 * 4)
    assert len(metrics["mean"]["rollout"]["l1"]) == 4
    assert "wrote 8 PNGs, 2 GIFs and metrics.json" in capsys.readouterr().out


def test_copy_last_metrics_hold_the_last_real_frame(trained, tmp_path):
    config, checkpoint = trained
    out = tmp_path / "samples"
    assert predict.main(["-cfg", str(config), "--load", str(checkpoint), "--output", str(out), "--steps", "2",
                         "--split", "train"]) == 0
    sample = json.loads((out / "metrics.json").read_text())["samples"][0]
    video = stripes().astype(np.float64) / 255
    last_real = video[sample["first_predicted_frame"] - 1]
    for i in range(2):
        truth = video[sample["first_predicted_frame"] + i]
        assert sample["copy_last"]["l1"][i] == pytest.approx(np.abs(last_real - truth).mean(), abs=1e-6)


def test_predict_errors(trained, tmp_path, capsys):
    config, checkpoint = trained
    assert predict.main(["-cfg", str(config), "--load", str(tmp_path / "none.ckpt"),
                         "--output", str(tmp_path / "s")]) == 1
    assert "error: checkpoint not found" in capsys.readouterr().err
    assert predict.main(["-cfg", str(config), "--load", str(checkpoint), "--output", str(tmp_path / "s"),
                         "--steps", "16"]) == 1
    assert "the validation part of the video has 15 frames; 1 rollouts of 16 steps need at least 16" in \
        capsys.readouterr().err
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert predict.main(["-cfg", str(config), "--load", str(checkpoint), "--output", str(blocked / "s")]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert not Path(tmp_path / "s").exists()


def test_exported_checkpoint_predicts_the_same_and_is_smaller(trained, tmp_path):
    from model.scripts import export_checkpoint
    config, checkpoint = trained
    published = tmp_path / "published.ckpt"
    assert export_checkpoint.main([str(checkpoint), str(published)]) == 0
    assert published.stat().st_size < checkpoint.stat().st_size / 2
    runs = []
    for path in (checkpoint, published):
        out = tmp_path / path.stem
        assert predict.main(["-cfg", str(config), "--load", str(path), "--output", str(out), "--steps", "2"]) == 0
        runs.append(json.loads((out / "metrics.json").read_text())["samples"][0]["rollout"])
    assert runs[0] == runs[1]
