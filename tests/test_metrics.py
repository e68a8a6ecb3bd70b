"""The baselines of model/metrics.py: what each predicts, on frames built so the answer is known."""
import math

import pytest
import torch

from model.metrics import (artifact_measures, artifact_sums, continue_motion_baseline, copy_last_frame_baseline,
                           frame_metrics, shift_frame)


def test_shift_frame_moves_content_and_repeats_the_edge():
    frame = torch.arange(30.0).reshape(5, 6)
    moved = shift_frame(frame, 1, -2)  # down one row, left two columns
    torch.testing.assert_close(moved[1:, :-2], frame[:-1, 2:])
    torch.testing.assert_close(moved[0, :-2], frame[0, 2:])  # uncovered top row: the edge repeated
    torch.testing.assert_close(moved[1:, -2:], frame[:-1, -1:].expand(4, 2))  # right edge repeated
    assert torch.equal(shift_frame(frame, 0, 0), frame)


@pytest.mark.parametrize("dy, dx", [(0, 2), (-2, 0), (2, -2), (1, 1)])
def test_continue_motion_predicts_a_steady_scroll_exactly_away_from_the_border(dy, dx):
    torch.manual_seed(0)
    scene = torch.rand(3, 40, 48)  # a large world; the camera sees a window of it
    crops = [scene[:, 10 - k * dy: 30 - k * dy, 10 - k * dx: 34 - k * dx] for k in range(3)]
    context, truth = torch.stack(crops[:2], dim=1), crops[2]
    prediction = continue_motion_baseline(context)
    m = 2
    torch.testing.assert_close(prediction[:, m:-m, m:-m], truth[:, m:-m, m:-m])
    assert frame_metrics(prediction, truth)["l1"].max() < frame_metrics(copy_last_frame_baseline(context), truth)["l1"].min()


def test_continue_motion_is_copy_last_when_nothing_moves():
    context = torch.rand(2, 3, 16, 16)
    context[:, 1] = context[:, 0]
    context[:, 2] = context[:, 1]
    assert torch.equal(continue_motion_baseline(context), copy_last_frame_baseline(context))


def test_continue_motion_needs_two_context_frames():
    with pytest.raises(ValueError, match=">=2"):
        continue_motion_baseline(torch.rand(2, 1, 8, 8))


def test_continue_motion_in_closed_loop_keeps_scrolling_on_its_own_predictions():
    """Rolled out on its own 8-bit predictions, continue motion moves the last real frame on by the same
    shift every step: exact away from the border for a steady scroll, for all ten steps."""
    from model.rollout import rollout

    torch.manual_seed(0)
    world = torch.randint(0, 256, (1, 40, 80)).float() / 255
    frames = torch.stack([world[:, :, 2 * t: 2 * t + 40] for t in range(13)], dim=1)  # scrolls 2 px left per frame
    predicted = rollout(continue_motion_baseline, frames[:, :3], steps=10)
    assert predicted.shape == (1, 10, 40, 40)
    for step in range(10):
        border = 2 * (step + 1)  # the repeated edge grows by the shift every step
        assert torch.equal(predicted[0, step, :, :-border], frames[0, 3 + step, :, :-border]), step


def measures_of(prediction, target, patch_size=8, box=(8, 16, 8, 16)):
    """artifact_measures over all frames of a batch."""
    sums = artifact_sums(prediction, target, patch_size, box)
    return artifact_measures({key: value.sum() for key, value in sums.items()})


def test_each_artifact_measure_reads_its_artifact_and_stays_neutral_on_the_others():
    generator = torch.Generator().manual_seed(0)
    truth = torch.rand(4, 32, 48, generator=generator)
    noise = measures_of(truth + 0.1 * torch.randn(4, 32, 48, generator=generator), truth)  # no structure
    blurred = torch.nn.functional.avg_pool2d(truth[:, None], 3, 1, 1, count_include_pad=False)[:, 0]
    blur = measures_of(blurred, truth)
    streaks = measures_of(truth + 0.1 * torch.randn(4, 1, 48, generator=generator), truth)  # constant down columns
    per_patch = 0.1 * torch.randn(4, 4, 6, generator=generator).repeat_interleave(8, 1).repeat_interleave(8, 2)
    seams = measures_of(truth + per_patch + 0.01 * torch.randn(4, 32, 48, generator=generator), truth)
    assert blur["sharpness"] < 0.2 and 0.9 < noise["sharpness"] < 1.2
    assert streaks["streak_share"] == pytest.approx(1.0) and noise["streak_share"] < 0.1
    assert seams["seam_ratio"] > 5 and noise["seam_ratio"] == pytest.approx(1.0, abs=0.05)
    assert blur["seam_ratio"] == pytest.approx(1.0, abs=0.1)  # the 3x3 blur does not know the patch grid


def test_player_error_is_the_mean_absolute_error_in_the_box_and_a_perfect_prediction_scores_clean():
    truth = torch.rand(2, 32, 48, generator=torch.Generator().manual_seed(1))
    ghost = truth.clone()
    ghost[:, 8:16, 8:16] += 0.25  # wrong inside the player's box only
    assert measures_of(ghost, truth)["player_l1"] == pytest.approx(0.25)
    perfect = measures_of(truth.clone(), truth)
    assert perfect["sharpness"] == 1.0 and perfect["player_l1"] == 0.0
    assert math.isnan(perfect["seam_ratio"]) and math.isnan(perfect["streak_share"])  # no error: no artifact to read
