"""The baselines of model/metrics.py: what each predicts, on frames built so the answer is known."""
import pytest
import torch

from model.metrics import continue_motion_baseline, copy_last_frame_baseline, frame_metrics, shift_frame


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
