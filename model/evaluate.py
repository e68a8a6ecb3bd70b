"""The one evaluator of Exercise 2: the model and every baseline are predictors, scored by one function.

A predictor maps a batch of windows to its prediction of each window's last frame:

    predict(frames (B, T, H, W) in [0, 1], token_mask (B, T*h*w) bool or None) -> (B, H, W) in [0, 1]

A next-frame predictor (num_frames > 1) reads only frames[:, :-1]; the masked reconstruction (num_frames
== 1) reads the visible patches of the single frame, the patches of ``token_mask`` hidden. :func:`score`
runs a set of predictors over the same windows and returns per-window metrics (model.metrics.frame_metrics:
L1, MSE, SSIM, and for next-frame prediction the L1 on the pixels that stay as in the last seen frame and on
those that change), from which :func:`summarise` takes means over any subset of windows (a situation, a
part); PSNR is always that of the mean MSE. :func:`evaluate` is the model on a part of the video with the
baselines beside it, as one flat dict (the validation during training, ``--validate``); the evaluation
protocol behind the published numbers (model.protocol) calls :func:`score` itself for per-window splits.

The baselines are predictors too: model.baselines registers them (BASELINES, baseline_predictors).
"""
from contextlib import nullcontext

import numpy as np
import torch
from tqdm import tqdm

from model.baselines import BASELINES, baseline_predictors
from model.data import evaluation_indices
from model.metrics import frame_metrics, psnr
from nn.loss import loss_of_means


def model_predictor(model):
    """The model as a predictor: its clamped prediction of the last frame (masked patches: those given)."""
    def predict(frames, token_mask):
        if model.num_frames > 1:
            return model.predict_next_frame(frames[:, :-1])
        return model(frames, mask=token_mask, last_frame_only=True)["prediction"][:, -1].clamp(0, 1)
    return predict


@torch.no_grad()
def score(predictors, windows, indices=None, *, batch_size=32, masker=None, mask_seed=0, error_maps=(),
          progress=False):
    """Per-window metrics of every predictor on windows[indices] (default: all) -> (per_window, maps).

    progress: a progress bar over the batches (True, or the bar's description), or none (False).

    per_window: {name: {"l1", "mse", "ssim"[, "l1_unchanged", "l1_changed"]: float64 array (W,)}};
    masker: the model whose patch masks (drawn from mask_seed, the same every call) hide the patches of a
    masked reconstruction (num_frames == 1); its metrics are those of the masked pixels only.
    error_maps: names whose mean absolute error per pixel (H, W) is returned in ``maps``.
    """
    indices = torch.arange(len(windows)) if indices is None else indices
    generator = torch.Generator().manual_seed(mask_seed)
    next_frame = windows.num_frames > 1
    keys = ("l1", "mse", "ssim") + (("l1_unchanged", "l1_changed") if next_frame else ())
    per_window = {name: {key: [] for key in keys} for name in predictors}
    maps = {name: 0.0 for name in error_maps}
    bar_name = progress if isinstance(progress, str) else "evaluating"
    for starts in tqdm(indices.split(batch_size), desc=bar_name, leave=False, disable=not progress):
        frames = windows.batch(starts)  # (B, T, H, W)
        target = frames[:, -1]
        token_mask, pixel_mask = None, None
        if masker is not None:
            token_mask = masker.embedding.draw_mask(len(frames), frames.device, generator)
            pixel_mask = masker.embedding.pixel_mask(token_mask)[:, -1]
        for name, predict in predictors.items():
            prediction = predict(frames, token_mask).float()
            for key, value in frame_metrics(prediction, target, pixel_mask).items():
                if key in per_window[name]:
                    per_window[name][key].append(value)
            error = (prediction - target).abs()
            if next_frame:  # L1 = l1_unchanged + l1_changed: on pixels that stay as in the last seen frame, and the rest
                unchanged = target == frames[:, -2]
                per_window[name]["l1_unchanged"].append((error * unchanged).mean(dim=(1, 2)))
                per_window[name]["l1_changed"].append((error * ~unchanged).mean(dim=(1, 2)))
            if name in maps:
                maps[name] = maps[name] + error.sum(0)
    per_window = {name: {key: torch.cat(values).double().cpu().numpy() for key, values in metrics.items()}
                  for name, metrics in per_window.items()}
    return per_window, {name: (total / len(indices)).cpu().numpy() for name, total in maps.items()}


@torch.no_grad()
def attention_to_last_frame(model, windows, indices=None, batch_size=32):
    """Where a next-frame model's predicted tokens look, per block: the mean share of their attention (over heads,
    tokens and windows) on the same place in the last seen frame, and on the whole last seen frame; and the same
    per head of each block (over tokens and windows), which tells the head that looks up the same place.

    -> {"same_place": [per block], "last_frame": [per block], "same_place_per_head": [[per head] per block],
    "last_frame_per_head": [[per head] per block]}, or None for a model without attention or with one frame
    (nothing seen before the predicted frame). A block's share is the mean of its heads'.
    """
    if model.num_frames < 2:
        return None
    indices = torch.arange(len(windows)) if indices is None else indices
    per_frame = model.embedding.patches_per_frame
    predicted = slice((model.num_frames - 1) * per_frame, None)
    last_seen = slice((model.num_frames - 2) * per_frame, (model.num_frames - 1) * per_frame)
    same, last, count = 0.0, 0.0, 0
    same_heads, last_heads, count_per_head = 0.0, 0.0, 0
    for starts in indices.split(batch_size):
        weights = model(windows.batch(starts), return_attention=True)["attention"]
        if any(block is None for block in weights):
            return None
        # (blocks, B, heads, predicted tokens, keys of the last seen frame)
        to_last = torch.stack([block[:, :, predicted, last_seen] for block in weights]).float()
        on_same_place = to_last.diagonal(dim1=-2, dim2=-1)  # (blocks, B, heads, predicted tokens)
        on_last_frame = to_last.sum(dim=-1)  # (blocks, B, heads, predicted tokens)
        same = same + on_same_place.sum(dim=(1, 2, 3))
        last = last + on_last_frame.sum(dim=(1, 2, 3))
        count += to_last.shape[1] * to_last.shape[2] * to_last.shape[3]
        same_heads = same_heads + on_same_place.sum(dim=(1, 3))  # (blocks, heads)
        last_heads = last_heads + on_last_frame.sum(dim=(1, 3))
        count_per_head += to_last.shape[1] * to_last.shape[3]
    return {"same_place": (same / count).tolist(), "last_frame": (last / count).tolist(),
            "same_place_per_head": (same_heads / count_per_head).tolist(),
            "last_frame_per_head": (last_heads / count_per_head).tolist()}


def summarise(metrics, select=None):
    """One predictor's per-window metrics (optionally only the windows where ``select`` is True) -> means.

    PSNR is that of the mean MSE over the windows.
    """
    means = {key: float(np.mean(values if select is None else values[select])) for key, values in metrics.items()}
    means["psnr"] = float(psnr(torch.tensor(means["mse"])))
    return means


def flat_summary(per_window, select=None):
    """All predictors' means as one flat dict: the model's keys bare, a baseline's as '{name}_{key}'."""
    flat = {}
    for name, metrics in per_window.items():
        prefix = "" if name == "model" else f"{name}_"
        flat.update({prefix + key: value for key, value in summarise(metrics, select).items()})
    return flat


# --- the model on a part of the video: validation during training and --validate -------------------

def evaluate(model, windows, *, batch_size, max_batches=None, mean_frame=None, autocast=nullcontext, seed=0,
             loss="l1_ssim", baselines=None, player_box=None, progress=False):
    """Mean metrics of the model on windows (all, or max_batches batches spread over them) -> flat dict.

    The one evaluator (model.evaluate) on these windows: num_frames > 1 the predicted last frame (clamped to
    [0, 1]) against the true one; num_frames == 1 the masked pixels of the reconstruction (the masks drawn from
    ``seed``, the same every call). Keys: loss (the training loss ``loss`` of the clamped prediction, from the
    per-window means), l1, mse, psnr, ssim, windows, then the baselines' as '{name}_{key}' on the same windows,
    taken from ``baselines`` when given (they do not change from one validation to the next) and computed
    here otherwise (see baseline_metrics). PSNR is that of the mean MSE over windows. progress: a bar for the
    model's pass and one for the baselines' (which take longer than the model's on a CPU: continue motion
    searches every window's shift).
    """
    was_training = model.training
    model.eval()
    indices = evaluation_indices(len(windows), batch_size, max_batches)
    masker = model if model.num_frames == 1 else None
    with autocast():
        per_window, _ = score({"model": model_predictor(model)}, windows, indices, batch_size=batch_size,
                              masker=masker, mask_seed=seed, progress="model" if progress else False)
    model.train(was_training)
    metrics = flat_summary(per_window)
    metrics = {"loss": loss_of_means(loss, metrics), **metrics, "windows": len(indices)}
    if baselines is None:
        baselines = baseline_metrics(windows, indices, batch_size, mean_frame, generator_seed=seed, masker=masker,
                                     player_box=player_box, progress=progress)
    return {**metrics, **baselines}


def baseline_metrics(windows, indices, batch_size, mean_frame=None, generator_seed=0, masker=None,
                     player_box=None, progress=False):
    """Mean metrics of the baselines (model.baselines.baseline_predictors) on the windows at indices -> flat dict
    copy_last_l1, ..., mean_frame_ssim. For masked reconstruction (num_frames == 1) ``masker`` is the model
    whose patch masks (drawn from generator_seed, as evaluate draws them) select the pixels scored (and the
    neighbour fill's hidden pixels)."""
    predictors = baseline_predictors(windows.num_frames, mean_frame, player_box, masker=masker)
    per_window, _ = score(predictors, windows, indices, batch_size=batch_size, masker=masker,
                          mask_seed=generator_seed, progress="baselines" if progress else False)
    return flat_summary(per_window)


def describe_metrics(metrics):
    """One line: the model's validation metrics and the baselines'."""
    def part(prefix):
        return (f"L1 {metrics[prefix + 'l1']:.4f} MSE {metrics[prefix + 'mse']:.5f} "
                f"PSNR {metrics[prefix + 'psnr']:.2f} dB SSIM {metrics[prefix + 'ssim']:.4f}")

    line = f"loss {metrics['loss']:.4f} | {part('')}"
    for name in BASELINES:
        if f"{name}_l1" in metrics:
            line += f" | {name.replace('_', '-')} {part(name + '_')}"
    return line
