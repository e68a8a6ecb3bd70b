"""scripts/artifacts.py: every predictor scored on the same frames, the figures drawn, the table written."""
import math

import pytest
import torch

from model.baselines import baseline_predictors
from model import protocol
from model.data import split_video
from scripts import artifacts


def test_the_test_part_is_scored_whole_and_the_training_part_on_spread_frames():
    parts = split_video(100, 0.1, 0.1, 3)
    assert artifacts.part_targets(parts, "test", 5).tolist() == list(range(90, 100))
    train = artifacts.part_targets(parts, "train", 5).tolist()
    assert train[0] == protocol.TRAIN_FIRST_TARGET and train[-1] == 79 and len(train) == 5


def test_models_of_other_window_lengths_predict_the_same_frames(tmp_path):
    """A 2-frame and a 3-frame predictor are handed the windows that end at the same target frames."""
    generator = torch.Generator().manual_seed(0)
    video = (torch.rand(40, 32, 32, generator=generator) * 255).to(torch.uint8)
    seen = {}

    def recorder(label):
        def predict(frames, mask):
            seen.setdefault(label, []).append(frames[:, -1].clone())  # the target frame of each window
            return frames[:, -2]  # the last seen frame
        return predict

    found = {"two": (2, recorder("two"), {}), "three": (3, recorder("three"), {}),
             "copy": (3, baseline_predictors(3)["copy_last"], {})}
    targets = torch.tensor([10, 20, 30, 35])
    numbers, pictures, seen_and_truth, shown = artifacts.measure(found, video, targets, 8, (0, 8, 0, 8))
    assert torch.equal(torch.cat(seen["two"]), torch.cat(seen["three"]))
    assert torch.equal(torch.cat(seen["two"]), video[targets].float() / 255)
    assert numbers["two"] == pytest.approx(numbers["copy"]) == numbers["three"]  # all three copy the last frame
    assert shown.tolist() == [20, 30] and torch.equal(pictures["copy"], video[[19, 29]].float() / 255)
    assert torch.equal(seen_and_truth[:, 1], video[[20, 30]].float() / 255)
    artifacts.figure(tmp_path / "p.png", pictures, seen_and_truth, shown, "test")
    assert (tmp_path / "p.png").stat().st_size > 0
    table = artifacts.markdown({"parts": {"test": {"windows": 4, "numbers": numbers}}, "notes": ["a note"]})
    assert "| copy |" in table and "- a note" in table and not any(math.isnan(v) for v in numbers["copy"].values())
