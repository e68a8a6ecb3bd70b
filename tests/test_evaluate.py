"""The one evaluator (model.evaluate): what it shows while it runs."""
import torch

from model.data import FrameWindows
from model.evaluate import evaluate
from model.vit import VisionTransformer


def test_evaluation_shows_the_baselines_pass_too(capsys):
    """After the model's pass, --validate scores the baselines (on a CPU for longer than the model): a bar of
    their own, not a silence after the model's bar has reached 100 %."""
    torch.manual_seed(0)
    model = VisionTransformer(num_frames=3, image_height=16, image_width=16, patch_size=8, channels=16,
                              num_heads=2, layers=1)
    windows = FrameWindows((torch.rand(12, 16, 16) * 255).to(torch.uint8), 3)
    metrics = evaluate(model, windows, batch_size=4, loss="mse", progress=True)
    shown = capsys.readouterr().err
    assert "\rmodel: " in shown and "\rbaselines: " in shown
    assert metrics["windows"] == 10 and "continue_motion_l1" in metrics
    evaluate(model, windows, batch_size=4, loss="mse")  # during training: no bars
    assert capsys.readouterr().err == ""
