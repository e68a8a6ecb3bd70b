"""scripts/frame_head_bound.py: the best PSNR an affine C-dimensional patch decoder can reach."""
import pytest
import torch

from model.metrics import psnr
from scripts.frame_head_bound import patches, subspace_psnr


def test_patches_are_the_reverse_embeddings_layout():
    frames = torch.arange(2 * 4 * 6, dtype=torch.float64).reshape(2, 4, 6)
    cut = patches(frames, 2)  # (2 frames * 2 * 3 patches, 4 pixels)
    assert cut.shape == (12, 4)
    assert cut[1].tolist() == [2, 3, 8, 9]  # frame 0, patch row 0, column 1
    assert cut[6].tolist() == [24, 25, 30, 31]  # frame 1, first patch


def test_patches_on_a_line_need_one_dimension_and_no_dimension_leaves_the_mean():
    torch.manual_seed(0)
    direction = torch.rand(16, dtype=torch.float64)
    targets = 0.3 + 0.2 * torch.rand(200, 1, dtype=torch.float64) * direction / direction.norm()
    bounds = subspace_psnr(targets, widths=(0, 1, 16))
    assert bounds[1][0] >= 80  # exact up to rounding (and the PSNR floor)
    assert bounds[16] == (None, None)  # C >= p*p: every patch fits
    assert bounds[0][0] == pytest.approx(psnr((targets - targets.mean(0)).pow(2).mean()).item())


def test_no_other_affine_decoder_of_the_same_width_does_better():
    torch.manual_seed(1)
    targets = torch.rand(300, 16, dtype=torch.float64) ** 2
    bound = subspace_psnr(targets, widths=(4,))[4][0]
    for _ in range(20):  # random 4-dimensional subspaces through the best offset, least-squares fitted
        basis, _ = torch.linalg.qr(torch.randn(16, 4, dtype=torch.float64))
        centred = targets - targets.mean(0)
        drawn = centred @ basis @ basis.T + targets.mean(0)
        assert psnr((drawn - targets).pow(2).mean()).item() <= bound + 1e-9
