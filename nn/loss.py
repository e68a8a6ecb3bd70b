"""The training losses of the predictive ViT (LOSSES, each defined once): the course template's masked L1 + SSIM,
L1 and MSE."""
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
    """The course template's loss: 0.15 * L1 + 0.85 * clamp((1 - SSIM) / 2, 0, 1), both averaged over the masked
    pixels only (masked_loss "l1_ssim").

    prediction, target (B, T, H, W); pixel_mask (B, T, H, W) bool, True where the model had to predict.
    Returns scalars (loss, l1, ssim_value); l1 and ssim_value (mean SSIM over the masked pixels) are
    for logging. An all-False mask has nothing to average and gives NaN.
    """
    return masked_loss("l1_ssim", prediction, target, pixel_mask)


# Every training loss, defined once: its weight for each per-pixel term, averaged over the masked pixels.
# Terms: l1 |prediction - target|, mse (prediction - target)^2, dssim clamp((1 - SSIM) / 2, 0, 1).
LOSSES = {
    "l1_ssim": {"l1": L1_WEIGHT, "dssim": DSSIM_WEIGHT},  # the course template's
    "l1": {"l1": 1.0},
    "mse": {"mse": 1.0},
}


def masked_loss(kind, prediction, target, pixel_mask, with_ssim=True):
    """The training loss ``kind`` (LOSSES) on the masked pixels -> scalars (loss, l1, ssim_value).

    prediction, target (B, T, H, W); ``pixel_mask`` (B, T, H, W) bool, or None: every pixel is masked
    (next-frame prediction, where the whole predicted frame is hidden). l1 is returned for logging in every
    case, ssim_value (the mean SSIM over the masked pixels) too unless ``with_ssim`` is false and the loss does
    not need it (then it is None and no SSIM is computed).
    """
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {kind!r}")
    shapes = [prediction.shape, target.shape] + ([] if pixel_mask is None else [pixel_mask.shape])
    if any(shape != target.shape for shape in shapes):
        raise ValueError(f"prediction {tuple(prediction.shape)}, target {tuple(target.shape)} and pixel_mask "
                         f"{None if pixel_mask is None else tuple(pixel_mask.shape)} must have the same shape")
    weights = LOSSES[kind]
    # SSIM subtracts nearly equal squares; half precision would cancel them into noise.
    dtype = torch.promote_types(prediction.dtype, torch.float32)
    prediction, target = prediction.to(dtype), target.to(dtype)
    with_ssim = with_ssim or "dssim" in weights
    if with_ssim:
        pixel_mask = torch.ones_like(target, dtype=torch.bool) if pixel_mask is None else pixel_mask
        # The 3x3 SSIM window reaches one pixel past a patch edge; showing it the target there makes
        # the loss depend on the masked predictions alone.
        prediction = torch.where(pixel_mask, prediction, target)
    error = prediction - target
    terms, ssim_value = {"l1": masked_mean(error.abs(), pixel_mask)}, None
    if "mse" in weights:
        terms["mse"] = masked_mean(error.square(), pixel_mask)
    if with_ssim:
        ssim_map = ssim(prediction, target)
        terms["dssim"] = masked_mean(((1 - ssim_map) / 2).clamp(0, 1), pixel_mask)
        ssim_value = masked_mean(ssim_map, pixel_mask)
    return sum(weight * terms[term] for term, weight in weights.items()), terms["l1"], ssim_value


def loss_of_means(kind, means):
    """The training loss ``kind`` (LOSSES) from means over windows -> float.

    means: dict with l1, mse and ssim; the DSSIM term is taken from the mean SSIM, (1 - ssim) / 2.
    """
    terms = {"l1": means["l1"], "mse": means["mse"], "dssim": (1 - means["ssim"]) / 2}
    return sum(weight * terms[term] for term, weight in LOSSES[kind].items())


def masked_mean(values, pixel_mask):
    """The mean of values over the pixels where pixel_mask is True (None: over all of them).

    A weighted sum instead of boolean indexing: no device sync for the variable-size result.
    """
    if pixel_mask is None:
        return values.mean()
    weights = pixel_mask.to(values.dtype)
    return (values * weights).sum() / weights.sum()
