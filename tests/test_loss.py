"""Masked L1 + SSIM loss and the SSIM map against a pixel-by-pixel reference."""
import pytest
import torch

from nn.loss import masked_l1_ssim_loss, ssim

B, T, H, W = 2, 3, 9, 10


def make_frames(seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(B, T, H, W, generator=generator, dtype=torch.float64)


def last_frame_mask():
    mask = torch.zeros(B, T, H, W, dtype=torch.bool)
    mask[:, -1] = True
    return mask


def patch_mask():
    """A 4x4 block masked in every frame, far enough from the border to have unmasked surroundings."""
    mask = torch.zeros(B, T, H, W, dtype=torch.bool)
    mask[:, :, 2:6, 3:7] = True
    return mask


def reference_ssim(x, y, c1=0.01 ** 2, c2=0.03 ** 2):
    """SSIM written out per pixel: 3x3 window, reflected at the border (index -1 -> 1, H -> H-2)."""
    def reflect(index, size):
        return -index if index < 0 else 2 * (size - 1) - index if index >= size else index

    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            for i in range(H):
                for j in range(W):
                    rows = [reflect(i + di, H) for di in (-1, 0, 1)]
                    cols = [reflect(j + dj, W) for dj in (-1, 0, 1)]
                    wx = x[b, t][rows][:, cols]
                    wy = y[b, t][rows][:, cols]
                    mx, my = wx.mean(), wy.mean()
                    vx = ((wx - mx) ** 2).mean()
                    vy = ((wy - my) ** 2).mean()
                    cxy = ((wx - mx) * (wy - my)).mean()
                    out[b, t, i, j] = ((2 * mx * my + c1) * (2 * cxy + c2)
                                       / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    return out


def test_ssim_matches_reference():
    x, y = make_frames(0), make_frames(1)
    y = 0.5 * x + 0.5 * y  # correlated, so the structure term is far from zero
    result = ssim(x, y)
    assert result.shape == (B, T, H, W)
    torch.testing.assert_close(result, reference_ssim(x, y), atol=1e-12, rtol=0)


def test_ssim_of_identical_frames_is_one():
    x = make_frames(0)
    torch.testing.assert_close(ssim(x, x), torch.ones_like(x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("mask", [last_frame_mask(), patch_mask()])
def test_identical_frames_give_zero_loss(mask):
    x = make_frames(0)
    loss, l1, ssim_value = masked_l1_ssim_loss(x, x.clone(), mask)
    assert loss.dim() == l1.dim() == ssim_value.dim() == 0
    assert abs(loss.item()) < 1e-12 and l1.item() == 0
    assert abs(ssim_value.item() - 1) < 1e-12


def test_loss_combines_masked_l1_and_dssim():
    prediction, target, mask = make_frames(0), make_frames(1), last_frame_mask()
    loss, l1, ssim_value = masked_l1_ssim_loss(prediction, target, mask)
    ssim_map = reference_ssim(prediction, target)[mask]
    expected_l1 = (prediction - target).abs()[mask].mean()
    expected_dssim = ((1 - ssim_map) / 2).clamp(0, 1).mean()
    torch.testing.assert_close(l1, expected_l1, atol=1e-12, rtol=0)
    torch.testing.assert_close(ssim_value, ssim_map.mean(), atol=1e-12, rtol=0)
    torch.testing.assert_close(loss, 0.15 * expected_l1 + 0.85 * expected_dssim, atol=1e-12, rtol=0)


@pytest.mark.parametrize("mask", [last_frame_mask(), patch_mask()])
def test_unmasked_pixels_do_not_change_the_loss(mask):
    prediction, target = make_frames(0), make_frames(1)
    changed = torch.where(mask, prediction, make_frames(2))
    original = masked_l1_ssim_loss(prediction, target, mask)
    for a, b in zip(original, masked_l1_ssim_loss(changed, target, mask)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_gradients_are_finite_and_only_reach_masked_pixels():
    mask = patch_mask()
    target = make_frames(1)
    for prediction in (make_frames(0), target.clone()):  # also at the optimum, where SSIM = 1
        prediction.requires_grad_()
        loss, _, _ = masked_l1_ssim_loss(prediction, target, mask)
        loss.backward()
        assert torch.isfinite(prediction.grad).all()
        assert (prediction.grad[~mask] == 0).all()


def test_half_precision_input_is_evaluated_in_float32():
    prediction, target = make_frames(0).half(), make_frames(1).half()
    loss, l1, ssim_value = masked_l1_ssim_loss(prediction, target, last_frame_mask())
    assert loss.dtype == l1.dtype == ssim_value.dtype == torch.float32
    expected = masked_l1_ssim_loss(prediction.float(), target.float(), last_frame_mask())[0]
    torch.testing.assert_close(loss, expected, atol=0, rtol=0)


def test_mismatched_shapes_are_rejected():
    x = make_frames(0)
    with pytest.raises(ValueError, match="same shape"):
        masked_l1_ssim_loss(x, x[:, :-1], last_frame_mask())


def test_masked_loss_kinds():
    from nn.loss import masked_loss
    torch.manual_seed(0)
    prediction, target = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    mask[:, :, :4] = True
    template = masked_l1_ssim_loss(prediction, target, mask)
    torch.testing.assert_close(masked_loss("l1_ssim", prediction, target, mask)[0], template[0])
    torch.testing.assert_close(masked_loss("l1", prediction, target, mask)[0],
                               (prediction - target)[mask].abs().mean())
    torch.testing.assert_close(masked_loss("mse", prediction, target, mask)[0],
                               ((prediction - target)[mask] ** 2).mean())
    with pytest.raises(ValueError, match="loss must be one of"):
        masked_loss("huber", prediction, target, mask)


def test_no_mask_means_every_pixel():
    from nn.loss import masked_loss
    torch.manual_seed(0)
    prediction, target = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    every = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    for kind in ("l1_ssim", "l1", "mse"):
        for with_ssim in (False, True):
            unmasked, masked = (masked_loss(kind, prediction, target, mask, with_ssim) for mask in (None, every))
            for a, b in zip(unmasked, masked):
                assert (a is None) == (b is None) and (a is None or torch.allclose(a, b)), (kind, with_ssim)
    torch.testing.assert_close(masked_loss("mse", prediction, target, None)[0],
                               torch.nn.functional.mse_loss(prediction, target))
