"""Masked L1 + SSIM loss of the predictive ViT (the course template's definition)."""
import torch
import torch.nn.functional as F

SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2
L1_WEIGHT = 0.15
DSSIM_WEIGHT = 0.85


def ssim(x, y):
    """Local structural similarity map: x, y (B, T, H, W) -> (B, T, H, W).

    Means, variances and the covariance come from 3x3 average pooling over a reflection-padded
    frame (H, W >= 2), each frame on its own; C1 = 0.01**2 and C2 = 0.03**2 assume values in [0, 1].
    """
    def local_mean(z):
        # (B, T, H, W) is pooled as (N, C, H, W): every frame is its own channel.
        return F.avg_pool2d(F.pad(z, (1, 1, 1, 1), mode="reflect"), kernel_size=3, stride=1)

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x * mu_x
    var_y = local_mean(y * y) - mu_y * mu_y
    cov_xy = local_mean(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov_xy + SSIM_C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return numerator / denominator


def masked_l1_ssim_loss(prediction, target, pixel_mask):
    """0.15 * L1 + 0.85 * clamp((1 - SSIM) / 2, 0, 1), both averaged over the masked pixels only.

    prediction, target (B, T, H, W); pixel_mask (B, T, H, W) bool, True where the model had to predict.
    Returns scalars (loss, l1, ssim_value); l1 and ssim_value (mean SSIM over the masked pixels) are
    for logging. An all-False mask has nothing to average and gives NaN.
    """
    if not prediction.shape == target.shape == pixel_mask.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)}, target {tuple(target.shape)} and "
                         f"pixel_mask {tuple(pixel_mask.shape)} must have the same shape")
    # SSIM subtracts nearly equal squares; half precision would cancel them into noise.
    dtype = torch.promote_types(prediction.dtype, torch.float32)
    prediction, target = prediction.to(dtype), target.to(dtype)
    # The 3x3 SSIM window reaches one pixel past a patch edge; showing it the target there makes
    # the loss depend on the masked predictions alone.
    prediction = torch.where(pixel_mask, prediction, target)
    l1 = masked_mean((prediction - target).abs(), pixel_mask)
    ssim_map = ssim(prediction, target)
    dssim = masked_mean(((1 - ssim_map) / 2).clamp(0, 1), pixel_mask)
    loss = L1_WEIGHT * l1 + DSSIM_WEIGHT * dssim
    return loss, l1, masked_mean(ssim_map, pixel_mask)


LOSSES = ("l1_ssim", "l1", "mse")


def masked_loss(kind, prediction, target, pixel_mask, with_ssim=True):
    """The training loss ``kind`` on the masked pixels -> scalars (loss, l1, ssim_value).

    "l1_ssim" is the template's loss (masked_l1_ssim_loss); "l1" and "mse" are the masked mean
    absolute and squared error alone. ``pixel_mask`` None: every pixel is masked (next-frame prediction,
    where the whole predicted frame is hidden), and plain means are taken. l1 is returned for logging in
    every case, ssim_value (the mean SSIM over the masked pixels) too unless ``with_ssim`` is false and the
    loss does not need it (then it is None and no SSIM is computed).
    """
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {kind!r}")
    ssim_value = None
    if kind == "l1_ssim" or with_ssim:
        mask = torch.ones_like(target, dtype=torch.bool) if pixel_mask is None else pixel_mask
        loss, l1, ssim_value = masked_l1_ssim_loss(prediction, target, mask)
        if kind == "l1_ssim":
            return loss, l1, ssim_value
    shapes = [prediction.shape, target.shape] + ([] if pixel_mask is None else [pixel_mask.shape])
    if any(shape != target.shape for shape in shapes):
        raise ValueError(f"prediction {tuple(prediction.shape)}, target {tuple(target.shape)} and pixel_mask "
                         f"{None if pixel_mask is None else tuple(pixel_mask.shape)} must have the same shape")
    dtype = torch.promote_types(prediction.dtype, torch.float32)
    error = prediction.to(dtype) - target.to(dtype)
    if ssim_value is None:  # else masked_l1_ssim_loss has it
        l1 = masked_mean(error.abs(), pixel_mask)
    loss = l1 if kind == "l1" else masked_mean(error.square(), pixel_mask)
    return loss, l1, ssim_value


def masked_mean(values, pixel_mask):
    """The mean of values over the pixels where pixel_mask is True (None: over all of them).

    A weighted sum instead of boolean indexing: no device sync for the variable-size result.
    """
    if pixel_mask is None:
        return values.mean()
    weights = pixel_mask.to(values.dtype)
    return (values * weights).sum() / weights.sum()
