"""Closed-loop prediction: the rollout itself, the files the command writes, its choice of model."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from model.config import load_config
from model.data import Video, load_frames
from model.rollout import rollout
from model.engine import train
from model.scripts import predict
from model.vit import VisionTransformer

REPO = Path(__file__).resolve().parents[1]


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
    cfg = load_config(config)
    train(cfg, Video.of_config(cfg, load_frames(folder / "video.hdf5")), folder / "run", log=lambda line: None)
    return config, folder / "run" / "quicksave.ckpt"


def test_rollout_feeds_back_quantised_predictions():
    torch.manual_seed(0)
    model = VisionTransformer(num_frames=3, image_height=16, image_width=16, patch_size=8, channels=16,
                              num_heads=2, layers=1).eval()
    context = torch.rand(2, 2, 16, 16)
    with torch.no_grad():
        frames = rollout(model.predict_next_frame, context, steps=3)
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
    pngs = sorted(p.name for p in out.glob("prediction_*.png"))
    assert len(pngs) == 8
    for sample in metrics["samples"]:
        first = sample["first_predicted_frame"]
        assert first == sample["first_context_frame"] + 2 and first >= 15  # predicted frames in the validation half
        for i in range(4):
            assert f"prediction_{sample['sample']:05d}_{i:05d}_frame_{first + i:05d}.png" in pngs
        for kind in ("rollout", "copy_last"):
            assert {key: len(values) for key, values in sample[kind].items()} == {"l1": 4, "psnr": 4, "ssim": 4}
    label_rows = predict.label_font(predict.UPSCALE)[1]
    with Image.open(out / pngs[0]) as image:  # title, context frames, truth | prediction | error, error scale
        assert image.mode == "L" and image.width == (3 * 32 + 2 * predict.GAP) * 4 and image.height > 2 * 32 * 4
        assert_labelled(image, label_rows)
        first = metrics["samples"][0]["first_predicted_frame"]
        context = np.asarray(image)[2 * label_rows: 2 * label_rows + 128, :128]  # below the title and its label
        assert np.array_equal(context, np.kron(stripes()[first - 2], np.ones((4, 4), np.uint8)))  # 4x nearest
    with Image.open(out / "rollout_00000.gif") as gif:  # the prediction PNGs of the sample, one frame per step
        assert gif.n_frames == 4 and gif.width == (3 * 32 + 4) * 4 and gif.height > 2 * 32 * 4
        assert_labelled(gif.convert("L"), label_rows)
    for sample in range(2):  # every step of a sample in one labelled image
        with Image.open(out / f"rollout_{sample:05d}.png") as sheet:
            assert sheet.width == (3 * 32 + 4) * predict.SHEET_UPSCALE and sheet.height > 5 * 32 * predict.SHEET_UPSCALE
            assert_labelled(sheet.convert("L"), predict.label_font(predict.SHEET_UPSCALE)[1])
    assert len(metrics["mean"]["rollout"]["l1"]) == 4
    assert "wrote 8 prediction PNGs, 2 labelled rollout PNGs, 2 GIFs and metrics.json" in capsys.readouterr().out


def assert_labelled(image, label_rows):
    """The first rows of the image hold dark text on white (the labels above the panels)."""
    strip = np.asarray(image)[:label_rows]
    assert (strip == 255).mean() > 0.5 and (strip < 100).any()


def test_predict_replaces_its_own_earlier_files_only(trained, tmp_path, capsys):
    config, checkpoint = trained
    out = tmp_path / "samples"
    assert predict.main(["-cfg", str(config), "--load", str(checkpoint), "--output", str(out),
                         "--num_samples", "2", "--steps", "3"]) == 0
    (out / "notes.txt").write_text("mine")
    (out / "prediction_mine.png").write_bytes(b"mine too")
    capsys.readouterr()
    assert predict.main(["-cfg", str(config), "--load", str(checkpoint), "--output", str(out), "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"{out} holds an earlier prediction: replacing its 11 files" in printed  # not silently
    assert "wrote 2 prediction PNGs, 1 labelled rollout PNG, 1 GIF and metrics.json" in printed
    first = json.loads((out / "metrics.json").read_text())["samples"][0]["first_predicted_frame"]
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json", "notes.txt", f"prediction_00000_00000_frame_{first:05d}.png",
        f"prediction_00000_00001_frame_{first + 1:05d}.png", "prediction_mine.png", "rollout_00000.gif",
        "rollout_00000.png"]


def test_start_frames_are_fixed_by_the_seed_alone(trained, tmp_path):
    part = range(100, 200)
    first = predict.pick_first_predicted(part, 2, 10, 5, 0, "val")
    assert len(set(first.tolist())) == 5 and all(100 <= f <= 200 - 50 for f in first.tolist())
    for steps in (1, 7, 50):  # up to half the part: the same starts
        for num_samples in (1, 3, 5):  # more samples add rollouts after the same first ones
            assert torch.equal(predict.pick_first_predicted(part, 2, steps, num_samples, 0, "val"), first[:num_samples])
    assert not torch.equal(predict.pick_first_predicted(part, 2, 10, 5, 1, "val"), first)  # another seed
    assert predict.pick_first_predicted(part, 2, 80, 5, 0, "val").max() <= 200 - 80  # longer: still inside

    config, checkpoint = trained
    runs = []
    for num_samples, steps in ((1, 2), (3, 5)):
        out = tmp_path / f"{num_samples}x{steps}"
        assert predict.main(["-cfg", str(config), "--load", str(checkpoint), "--output", str(out),
                             "--num_samples", str(num_samples), "--steps", str(steps)]) == 0
        runs.append(json.loads((out / "metrics.json").read_text())["samples"])
    assert runs[0][0]["first_predicted_frame"] == runs[1][0]["first_predicted_frame"]
    assert runs[0][0]["rollout"]["l1"] == runs[1][0]["rollout"]["l1"][:2]  # the same rollout, only longer


def test_predict_without_load_takes_the_run_folders_checkpoint(trained, tmp_path, capsys):
    config, checkpoint = trained
    run_dir = tmp_path / "out" / "tiny.device0"
    argv = ["-cfg", str(config), "--out-dir", str(tmp_path / "out"), "--output", str(tmp_path / "s"), "--steps", "2"]
    assert predict.main(argv) == 1
    assert f"error: no checkpoint in {run_dir} (train with python -m model.main -cfg {config} --train" in \
        capsys.readouterr().err
    run_dir.mkdir(parents=True)
    shutil.copy(checkpoint, run_dir / "quicksave.ckpt")
    assert predict.main(argv) == 0
    assert f"using {config} and {run_dir / 'quicksave.ckpt'}" in capsys.readouterr().out
    # Bare (no -cfg): an unvalidated local run (a quicksave alone) does not replace the published model.
    published = tmp_path / "published.ckpt"
    shutil.copy(checkpoint, published)
    cfg, _, chosen, line = predict.choose_model(None, None, tmp_path / "out", sheet_config=str(config),
                                                published=str(published))
    assert chosen == published and line.startswith(f"{run_dir} has no validated run yet (only quicksave.ckpt")
    assert predict.main(argv) == 0  # with -cfg: that config's run, quicksave or not, and the checkpoint's step
    assert f"{run_dir / 'quicksave.ckpt'}: step 3" in capsys.readouterr().out
    shutil.copy(checkpoint, run_dir / "best.ckpt")  # the best validation wins over the latest step
    cfg, config_name, chosen, line = predict.choose_model(None, None, tmp_path / "out", sheet_config=str(config))
    assert chosen == run_dir / "best.ckpt" and cfg.model_path == "tiny" and config_name == str(config)
    assert line == f"using {config} and {chosen}"
    # --load alone: the config stored in the checkpoint
    assert predict.main(["--load", str(checkpoint), "--output", str(tmp_path / "s"), "--steps", "2"]) == 0
    assert f"using {checkpoint} and the config stored in it" in capsys.readouterr().out
    assert json.loads((tmp_path / "s" / "metrics.json").read_text())["config"] == f"stored in {checkpoint}"


def test_bare_predict_works_on_a_fresh_clone(tmp_path):
    """No arguments, no run folder: the published checkpoint with its own config, saying so."""
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("config", "results"):  # what a clone holds (read only here); out/ and samples/ do not exist
        (clone / name).symlink_to(REPO / name)
    if (REPO / "gameplay-data.hdf5").exists():  # else rendered on first use, as on a fresh clone
        (clone / "gameplay-data.hdf5").symlink_to(REPO / "gameplay-data.hdf5")
    result = subprocess.run([sys.executable, "-m", "model.scripts.predict"], cwd=clone, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert ("no run of config/vit.json in out/vit.device0 yet: using the published "
            "results/vit/vit_cpu.ckpt and the config stored in it") in result.stdout
    out = clone / "samples" / "sheet30k"  # samples/{model_path}/ of the config used
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["checkpoint"] == "results/vit/vit_cpu.ckpt" and metrics["steps"] == 10
    assert metrics["config"] == "stored in results/vit/vit_cpu.ckpt"
    assert len(list(out.glob("prediction_00000_*.png"))) == 10 and (out / "rollout_00000.png").is_file()


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
    assert "the validation part of the video has 15 frames, too few for 1 rollout of 16 steps" in \
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


def test_of_several_runs_the_one_best_on_validation_is_exported(trained, tmp_path, capsys):
    from model.checkpoint import load_checkpoint
    from model.scripts import export_checkpoint
    _, checkpoint = trained
    sources = []
    for seed, loss in enumerate((0.02, 0.01, 0.03)):
        run = tmp_path / f"run.seed{seed}"
        run.mkdir()
        (run / "final.ckpt").write_bytes(checkpoint.read_bytes())
        records = [{"step": 1, "val_loss": 0.001}, {"step": 2, "train_loss": 0.5}, {"step": 3, "val_loss": loss}]
        (run / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
        sources.append(str(run / "final.ckpt"))
    published = tmp_path / "published.ckpt"
    assert export_checkpoint.main([*sources, str(published)]) == 0  # the last validation counts, not the best
    assert f"from {sources[1]}" in capsys.readouterr().out and "optimizer" not in load_checkpoint(published)
    (tmp_path / "run.seed2" / "metrics.jsonl").write_text(json.dumps({"step": 1, "train_loss": 0.5}) + "\n")
    assert export_checkpoint.main([*sources, str(tmp_path / "other.ckpt")]) == 1
    assert "holds no validation" in capsys.readouterr().err
    (tmp_path / "run.seed2" / "metrics.jsonl").write_text('{"step": 1, "val_loss": 0.5}\n{"step": 2, "val_lo')
    assert export_checkpoint.main([*sources, str(tmp_path / "other.ckpt")]) == 1
    assert "line 2: not a JSON record (cut short?)" in capsys.readouterr().err
    assert export_checkpoint.main([sources[0], str(checkpoint), str(tmp_path / "other.ckpt")]) == 1
    assert "give each run's final.ckpt" in capsys.readouterr().err
    assert not (tmp_path / "other.ckpt").exists()


@pytest.mark.parametrize("module", ["model.scripts.predict", "model.main"])
def test_help_shows_the_defaults(module, capsys):
    import importlib
    with pytest.raises(SystemExit):
        importlib.import_module(module).parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 1234)" in text and "(default: None)" not in text and "(default: False)" not in text
