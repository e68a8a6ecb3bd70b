"""model/protocol.py: a model that sees fewer frames than a baseline needs still meets it, on the same frames."""
import numpy as np
import pytest
import torch

from model import protocol
from model.config import load_config, with_overrides
from model.data import Video, split_video
from model.vit import VisionTransformer


def scrolling_video(num_frames=60, height=144, width=160):
    """uint8 (N, H, W): a textured map scrolling one pixel a frame, with the renderer's /meta of the player."""
    rng = np.random.default_rng(0)
    world = (rng.random((height, width + num_frames)) * 255).astype(np.uint8)
    frames = np.stack([world[:, i:i + width] for i in range(num_frames)])
    return frames, {"player_tile_x": np.zeros(num_frames)}


def model_of(num_frames):
    cfg = with_overrides(load_config("config/vit_cpu.json"), {
        "model.num_frames": num_frames, "model.channels": 16, "model.num_heads": 2, "model.layers": 1})
    torch.manual_seed(0)
    return VisionTransformer.from_config(cfg.model).eval()


def test_the_held_player_meets_a_model_of_two_frames_on_the_same_predicted_frames():
    frames, meta = scrolling_video()
    video = Video(frames, split_video(len(frames), 0.2, 0.25, 3), 3, meta)
    two, _ = protocol.evaluate_model(model_of(2), video, "test")
    three, _ = protocol.evaluate_model(model_of(3), video, "test")
    assert two["windows"] == three["windows"]
    for name in ("copy_last", "continue_motion", "player_held"):  # scored on the same frames: the same numbers
        assert two["one_step"][name] == pytest.approx(three["one_step"][name]), name
        assert two["train_one_step"][name] == pytest.approx(three["train_one_step"][name]), name
        for key, values in three["rollout"][name].items():  # per closed-loop step
            assert two["rollout"][name][key] == pytest.approx(values, rel=1e-5), (name, key)
    assert two["one_step"]["model"] != pytest.approx(three["one_step"]["model"])  # two different models
    assert protocol.longer_baselines(video, 3) == {}
