"""Image quality of predicted frames, and the predictions of the baselines a prediction has to beat (model.baselines
registers them).

All frames are float in [0, 1]. Per-frame metrics return one value per frame (B,); with a pixel
mask (B, H, W) they average over the masked pixels only (masked reconstruction, num_frames == 1).
PSNR uses a data range of 1 and is capped at 100 dB (MSE floor 1e-10), since a baseline can be
exactly right on a static scene.
"""
import torch

from nn.loss import ssim

MSE_FLOOR = 1e-10


def frame_metrics(prediction, target, mask=None):
    """prediction, target (B, H, W); mask (B, H, W) bool or None -> dict of (B,) tensors l1, mse, psnr, ssim."""
    if mask is None:
        mask = torch.ones_like(target, dtype=torch.bool)
    weights = mask.to(target.dtype)
    count = weights.sum(dim=(1, 2))  # (B,)

    def per_frame_mean(values):  # (B, H, W) -> (B,)
        return (values * weights).sum(dim=(1, 2)) / count

    error = prediction - target
    mse = per_frame_mean(error ** 2)
    return {
        "l1": per_frame_mean(error.abs()),
        "mse": mse,
        "psnr": psnr(mse),
        "ssim": per_frame_mean(ssim(prediction[:, None], target[:, None])[:, 0]),
    }


def psnr(mse):
    """Peak signal-to-noise ratio in dB for a data range of 1 (tensor in, tensor out)."""
    return -10 * torch.log10(mse.clamp_min(MSE_FLOOR))


def copy_last_frame_baseline(context):
    """context (B, T-1, H, W) -> (B, H, W): predict that nothing moves."""
    return context[:, -1]


def mean_frame_baseline(train_frames):
    """uint8 or float training frames (N, H, W) -> the mean frame (H, W) in [0, 1]."""
    frames = torch.as_tensor(train_frames)
    scale = 255.0 if frames.dtype == torch.uint8 else 1.0
    return frames.double().mean(dim=0).float() / scale


def shift_frame(frame, dy, dx):
    """frame (..., H, W) moved by (dy, dx) pixels; the uncovered border repeats the edge pixels."""
    pad = max(abs(dy), abs(dx))
    if pad == 0:
        return frame
    height, width = frame.shape[-2:]
    padded = torch.nn.functional.pad(frame.reshape(-1, 1, height, width), (pad,) * 4, mode="replicate")
    moved = padded[..., pad - dy: pad - dy + height, pad - dx: pad - dx + width]
    return moved.reshape(frame.shape)


def continue_motion_baseline(context, max_shift=2):
    """context (B, T-1, H, W), T-1 >= 2 -> (B, H, W): the last frame moved on by the last global shift.

    The integer shift (dy, dx) in [-max_shift, max_shift]^2 that best maps frame T-3 onto frame T-2
    (L1 away from the borders) is applied once more to frame T-2: a camera that scrolls keeps
    scrolling. It knows nothing about objects that move on their own; where nothing moves it is
    the copy of the last frame.
    """
    if context.dim() != 4 or context.shape[1] < 2:
        raise ValueError(f"continue_motion_baseline needs context (B, >=2, H, W), got {tuple(context.shape)}")
    before, last = context[:, -2], context[:, -1]
    m = max_shift
    shifts = [(dy, dx) for dy in range(-m, m + 1) for dx in range(-m, m + 1)]
    errors = torch.stack([(shift_frame(before, dy, dx) - last)[:, m:-m or None, m:-m or None].abs().mean(dim=(1, 2))
                          for dy, dx in shifts])  # (S, B)
    errors[shifts.index((0, 0))] -= 1e-6  # ties go to "nothing moved"
    best = errors.argmin(dim=0)
    return torch.stack([shift_frame(last[i], *shifts[k]) for i, k in enumerate(best.tolist())])


def player_held_baseline(context, player_box, max_shift=2):
    """Continue motion with the player held: context (B, >=2, H, W) -> (B, H, W).

    Where the camera follows the player, the player's sprite stays at one place on the screen while the scenery
    scrolls past it; this is continue motion (continue_motion_baseline) with the block ``player_box`` = (top,
    bottom, left, right) copied from the last frame instead of moved.
    """
    top, bottom, left, right = player_box
    prediction = continue_motion_baseline(context, max_shift).clone()
    prediction[:, top:bottom, left:right] = context[:, -1, top:bottom, left:right]
    return prediction


def median_frame_baseline(train_frames):
    """uint8 or float training frames (N, H, W) -> the per-pixel median frame (H, W) in [0, 1]."""
    frames = torch.as_tensor(train_frames)
    scale = 255.0 if frames.dtype == torch.uint8 else 1.0
    return frames.flatten(1).median(dim=0).values.view(frames.shape[1:]).float() / scale


def neighbour_fill_baseline(frame, hidden):
    """Each hidden pixel from the visible pixels around it: frame (B, H, W), hidden (B, H, W) bool -> (B, H, W).

    Normalised 3x3 averaging, ring after ring: a hidden pixel next to known ones takes their mean, then counts as
    known for the next ring, until every pixel is filled (a frame with nothing visible stays 0).
    """
    known = (~hidden).float()[:, None]  # (B, 1, H, W)
    values = frame[:, None] * known
    pool = torch.nn.functional.avg_pool2d
    while (known == 0).any():
        counts = pool(known, 3, stride=1, padding=1, count_include_pad=False)
        sums = pool(values, 3, stride=1, padding=1, count_include_pad=False)
        reached = (known == 0) & (counts > 0)
        if not reached.any():
            break
        values = torch.where(reached, sums / counts.clamp_min(1e-12), values)
        known = known + reached.float()
    return values[:, 0]


# --- visible artifacts of a predicted frame ----------------------------------------------------------------
# Each measure compares a prediction with the true frame and reads the same for every model and baseline:
ARTIFACTS = {
    "sharpness": "gradient energy of the prediction over that of the true frame (1: as sharp; below 1: blur)",
    "seam_ratio": "error of the differences between neighbouring pixels across a patch border over that inside a "
                  "patch (1: no seams; above 1: the patch grid shows)",
    "streak_share": "share of the error's energy (its frame mean removed) that is constant down each column "
                    "(vertical streaks; about 1/H for error without such structure)",
    "player_l1": "mean absolute error inside the box where the camera keeps the player (ghosted or smeared sprite)",
}


def artifact_sums(prediction, target, patch_size, player_box=None):
    """The per-frame sums behind the artifact measures: prediction, target (B, H, W) -> dict of (B,) tensors.

    Sums, not means, so that the measures of many frames are ratios of totals (artifact_measures).
    """
    height, width = target.shape[-2:]
    pred_dx, pred_dy = prediction.diff(dim=2), prediction.diff(dim=1)  # (B, H, W-1), (B, H-1, W)
    true_dx, true_dy = target.diff(dim=2), target.diff(dim=1)
    # The pair of pixels (j - 1, j) lies across a patch border when j is a multiple of the patch size.
    across_x = torch.arange(1, width, device=target.device) % patch_size == 0
    across_y = torch.arange(1, height, device=target.device) % patch_size == 0
    wrong_dx, wrong_dy = (pred_dx - true_dx).abs(), (pred_dy - true_dy).abs()
    error = prediction - target
    centred = error - error.mean(dim=(1, 2), keepdim=True)
    ones = torch.ones(len(target), device=target.device)
    sums = {
        "gradient_energy": pred_dx.square().sum(dim=(1, 2)) + pred_dy.square().sum(dim=(1, 2)),
        "true_gradient_energy": true_dx.square().sum(dim=(1, 2)) + true_dy.square().sum(dim=(1, 2)),
        "seam_error": wrong_dx[:, :, across_x].sum(dim=(1, 2)) + wrong_dy[:, across_y].sum(dim=(1, 2)),
        "seam_pairs": ones * (across_x.sum() * height + across_y.sum() * width),
        "interior_error": wrong_dx[:, :, ~across_x].sum(dim=(1, 2)) + wrong_dy[:, ~across_y].sum(dim=(1, 2)),
        "interior_pairs": ones * ((~across_x).sum() * height + (~across_y).sum() * width),
        "column_energy": height * centred.mean(dim=1).square().sum(dim=1),
        "error_energy": centred.square().sum(dim=(1, 2)),
    }
    if player_box is not None:
        top, bottom, left, right = player_box
        sums["player_error"] = error[:, top:bottom, left:right].abs().sum(dim=(1, 2))
        sums["player_pixels"] = ones * (bottom - top) * (right - left)
    return sums


def artifact_measures(sums):
    """The artifact measures (ARTIFACTS) from artifact_sums totalled over frames: dict name -> totals -> floats."""
    def ratio(numerator, denominator):
        return float(sums[numerator] / sums[denominator]) if float(sums[denominator]) > 0 else float("nan")

    interior = ratio("interior_error", "interior_pairs")
    measures = {"sharpness": ratio("gradient_energy", "true_gradient_energy"),
                "seam_ratio": ratio("seam_error", "seam_pairs") / interior if interior > 0 else float("nan"),
                "streak_share": ratio("column_energy", "error_energy")}
    if "player_error" in sums:
        measures["player_l1"] = ratio("player_error", "player_pixels")
    return measures
