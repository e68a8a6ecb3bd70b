"""The sheet's model can learn: at a tiny size, with config/vit_cpu.json's recipe, it fits one fixed batch of
real windows of the built-in video better than the copy of the last frame does.

A model that paints the most common pixel value also lowers its loss, so the test asks for more than a falling
loss: the fitted prediction must beat the copy of the last frame on the same windows by a clear margin. With the
template's loss (0.15 L1 + 0.85 DSSIM) the same model stays below that copy (the second test).
"""
import pytest
import torch

from model.config import load_config, with_overrides
from model.data import FrameWindows
from scripts.fit import fit_one_batch
from model.video.gameplay import render_gameplay

STEPS = 1000
MARGIN_DB = 3.0
TINY = {"model.channels": 32, "model.layers": 2}


@pytest.fixture(scope="module")
def batch():
    frames, _ = render_gameplay(400)  # the first 400 frames of the built-in video: its training part
    windows = FrameWindows(torch.as_tensor(frames), num_frames=3)
    starts = torch.randperm(len(windows), generator=torch.Generator().manual_seed(0))[:4]
    return windows.batch(starts)


def tiny_sheet_model(**overrides):
    cfg = with_overrides(load_config("config/vit_cpu.json"), {**TINY, **overrides})
    assert cfg.model.output == "frame"  # the sheet's output, not a head that starts as the copy
    return cfg


def test_the_sheet_model_with_its_recipe_beats_the_copy_of_the_last_frame_on_one_batch(batch):
    fit = fit_one_batch(tiny_sheet_model(), batch, STEPS)
    final = fit["psnr"][-1][1]
    assert final > fit["copy_last_psnr"] + MARGIN_DB, fit


def test_the_template_loss_leaves_the_same_model_below_the_copy(batch):
    cfg = tiny_sheet_model(**{"training.loss": "l1_ssim"})
    fit = fit_one_batch(cfg, batch, STEPS)
    assert fit["psnr"][-1][1] < fit["copy_last_psnr"], fit


def test_the_sheet_configs_header_quotes_the_committed_diagnosis():
    """config/vit.json says why it left the template's recipe; its numbers are those of the one-batch fits."""
    import json
    from pathlib import Path

    diagnosis = json.loads(Path("results/vit/diagnosis/one_batch.json").read_text())
    fits = diagnosis["runs"]
    header = " ".join(Path("config/vit.json").read_text().split("{")[0].replace("//", " ").split())
    final = {name: f"{fit['psnr'][-1][1]:.2f} dB" for name, fit in fits.items()}
    template = final["config/vit.json's size, the template's recipe"]
    assert f"({template} after {diagnosis['steps']} steps" in header
    assert f"copy of the last frame, {fits['diag_mse']['copy_last_psnr']:.2f} dB" in header
    recipe = final["config/vit.json's size, config/vit_cpu.json's recipe"]
    assert f"reaches {recipe}" in header
    assert final["config/vit.json's size, the template's recipe with MSE"] in Path("config/vit.json").read_text()
