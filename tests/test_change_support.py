"""scripts/change_support.py: the share of the copy-last error near the last change."""
import numpy as np
import pytest

from scripts.change_support import support_shares


def test_a_moving_dot_is_half_inside_at_radius_0_and_all_inside_at_radius_1():
    frames = np.zeros((3, 10, 12), np.uint8)
    for t in range(3):
        frames[t, 5, 5 + t] = 200  # one pixel to the right per frame
    shares = support_shares(frames, radii=(0, 1))
    assert shares[0] == pytest.approx((2 / 120, 0.5))  # changed: (5, 5), (5, 6); error at (5, 6), (5, 7)
    assert shares[1] == pytest.approx((12 / 120, 1.0))  # 3 x 4 pixels around the two changed ones


def test_a_change_in_a_still_scene_lies_outside_the_support():
    frames = np.zeros((4, 6, 6), np.uint8)
    frames[3, 2, 2] = 50
    area, inside = support_shares(frames, radii=(3,))[3]
    assert area == 0 and inside == 0
