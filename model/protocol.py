"""The evaluation protocol behind the published numbers: one trained model on its video, against the baselines.

:func:`evaluate_model` scores a loaded model on a part of a model.data.Video (the test part, or validation for
configs without one) -> (result, error maps):

  one_step        every window of the part: L1, MSE, PSNR, SSIM of the predicted last frame, next to every
                  baseline of model.baselines that applies (on the built-in video the held player too; a
                  baseline that needs more frames than the model's windows hold is scored on windows of
                  BASELINE_FRAMES frames with the same predicted frames, its extra frames from before); for
                  next-frame prediction the L1 also split into the pixels that stay as in the last seen frame
                  and those that change (l1_unchanged + l1_changed = l1); for masked reconstruction
                  (num_frames == 1) the masked pixels only
  train_one_step  TRAIN_WINDOWS windows of the training part spread evenly over it (the same predicted frames
                  for every num_frames <= TRAIN_FIRST_TARGET + 1): memorised, or as hard as the evaluation part?
  situations      the one-step means split by what happens in the predicted frame (the video's /meta)
  rollout         ROLLOUT_STEPS-step closed loops from ROLLOUT_STARTS starts spread over the part (the model
                  sees its own 8-bit predictions, as model/scripts/predict.py does), against the baselines that
                  roll out, each on its own predictions
  attention       where the predicted tokens look: the share on the same place and on the whole last seen frame,
                  per block and per head of each block (model.evaluate.attention_to_last_frame)

The error maps are the mean absolute error per pixel (H, W) of the model and of the baselines that roll out.
EVAL_PROTOCOL numbers this protocol: the runner computes an evaluation of another number again.
"""
import numpy as np
import torch

from model.baselines import BASELINES, ROLLS_OUT, baseline_predictors, context_predictors
from model.evaluate import attention_to_last_frame, model_predictor, score, summarise
from model.rollout import closed_loop, per_step_means, rollout, rollout_clips

# 5: attention to the last seen frame (and its shares per head); 6: the baselines that need more frames than a
# model's windows hold, on the same predicted frames (numbers of models with 3 or more frames unchanged)
EVAL_PROTOCOL = 6
EVAL_BATCH = 32
ROLLOUT_STEPS = 10
ROLLOUT_STARTS = 40  # closed-loop starts, spread evenly over the evaluation part
TRAIN_WINDOWS = 600  # one-step metrics on this many training windows: how closely the model memorises
TRAIN_FIRST_TARGET = 8  # the first of them predicts this frame: the same frames for every num_frames <= 9
BASELINE_FRAMES = max(baseline.min_frames for baseline in BASELINES.values())  # the held player: two seen frames
SITUATION_FLAGS = ("camera_dx", "camera_dy", "player_moving", "npc_moving", "overlay", "transition")


@torch.no_grad()
def evaluate_model(model, video, part):
    """A loaded model (eval mode) on the windows of one part of a Video -> (result, error maps {name: (H, W)}).

    result: num_frames, part, windows, one_step, and for next-frame prediction train_one_step, situations,
    rollout, attention (see the module's docstring); error maps only for next-frame prediction.
    """
    T = model.num_frames
    predictors = protocol_predictors(model, video)
    windows = video.windows(part, T)
    result = {"num_frames": T, "part": part, "windows": len(windows)}
    if T == 1:  # masked reconstruction: the masked pixels only
        per_window, _ = score(predictors, windows, batch_size=EVAL_BATCH, masker=model)
        result["one_step"] = summaries(per_window)
        return result, {}
    from_context = [name for name in predictors if name == "model" or name in ROLLS_OUT]
    per_window, maps = score(predictors, windows, batch_size=EVAL_BATCH, error_maps=from_context)
    train_one_step = training_part_scores({name: predictors[name] for name in from_context}, video, T)
    longer = longer_baselines(video, T)
    wide = video.windows(part, BASELINE_FRAMES) if longer else None
    if longer and list(wide.targets) == list(windows.targets):  # the part's first frames have enough before them
        extra, extra_maps = score(longer, wide, batch_size=EVAL_BATCH, error_maps=list(longer))
        per_window, maps = {**per_window, **extra}, {**maps, **extra_maps}
        train_one_step = {**train_one_step, **training_part_scores(longer, video, BASELINE_FRAMES)}
    else:
        longer = {}
    result["one_step"] = summaries(per_window)
    result["train_one_step"] = train_one_step
    result["situations"] = situation_means(per_window, video.meta, windows)
    result["rollout"] = closed_loop_means(model, video, windows, longer)
    result["attention"] = attention_to_last_frame(model, windows, batch_size=EVAL_BATCH)
    return result, maps


def protocol_predictors(model, video):
    """The model and every baseline that applies to its windows, with the video's training frames and player box
    -> {name: predictor}."""
    return {"model": model_predictor(model),
            **baseline_predictors(model.num_frames, video.mean_frame, video.player_box, video.median_frame,
                                  masker=model)}


def longer_baselines(video, num_frames):
    """The baselines that roll out but need more than num_frames frames -> {name: predictor} for windows of
    BASELINE_FRAMES frames: a model that sees fewer frames still meets them, on the same predicted frames."""
    if num_frames >= BASELINE_FRAMES:
        return {}
    wide = baseline_predictors(BASELINE_FRAMES, player_box=video.player_box)
    return {name: predict for name, predict in wide.items()
            if name in ROLLS_OUT and not BASELINES[name].takes_frames(num_frames)}


def summaries(per_window, select=None):
    """Per-window metrics of every predictor -> {name: means} (model.evaluate.summarise)."""
    return {name: summarise(values, select) for name, values in per_window.items()}


def training_part_scores(predictors, video, num_frames, count=TRAIN_WINDOWS):
    """Predictors on count windows of the training part spread evenly over it (spread_windows), or on every window
    (count None) -> {name: means, "windows": how many}."""
    windows = video.windows("train", num_frames)
    picked = None if count is None else spread_windows(windows, count)
    per_window, _ = score(predictors, windows, picked, batch_size=EVAL_BATCH)
    return {**summaries(per_window), "windows": len(windows) if picked is None else len(picked)}


def spread_targets(part, count, first_target=TRAIN_FIRST_TARGET):
    """count predicted frames (video indices) spread evenly over a part (range), from first_target on."""
    lowest, highest = max(first_target, part.start), part.stop - 1
    return torch.linspace(lowest, highest, min(count, highest - lowest + 1)).round().long()


def spread_windows(windows, count, first_target=TRAIN_FIRST_TARGET):
    """Indices of count windows whose predicted frames are spread evenly from first_target to the last one.

    Chosen by predicted frame, so that runs with another num_frames are scored on the same frames.
    """
    return spread_targets(windows.targets, count, first_target) - windows.targets.start


def situations(meta, frame_indices):
    """Boolean masks (W,) per situation for the predicted frames at frame_indices, from /meta.

    {} for a video whose /meta has none of the flags (imported Atari footage records actions and rewards):
    what happens there is not known, so no frame is called static.
    """
    if not any(name in meta for name in SITUATION_FLAGS):
        return {}

    def flag(name):
        values = meta.get(name)
        return np.zeros(len(frame_indices), bool) if values is None else np.asarray(values)[frame_indices] != 0

    scrolling = flag("camera_dx") | flag("camera_dy")
    moving, npc, overlay, transition = (flag("player_moving"), flag("npc_moving"), flag("overlay"),
                                        flag("transition"))
    # The camera follows the player: a walking player scrolls the view unless the camera is held at the map's
    # edge, so "player walking" alone would repeat the scrolling windows.
    return {"static": ~(scrolling | moving | npc | overlay | transition), "scrolling": scrolling,
            "player walking, camera still": moving & ~scrolling, "NPC moving": npc, "overlay": overlay,
            "transition": transition}


def situation_means(per_window, meta, windows):
    """The per-window metrics' means in each situation of the windows' predicted frames -> {situation: {"windows":
    count, name: means...}} (no means for a situation without windows)."""
    result = {}
    for situation, mask in situations(meta, np.asarray(windows.targets)).items():
        entry = {"windows": int(mask.sum())}
        if mask.any():
            entry.update(summaries(per_window, mask))
        result[situation] = entry
    return result


def closed_loop_means(model, video, windows, longer=()):
    """Per-step means of ROLLOUT_STEPS-step closed loops from ROLLOUT_STARTS starts spread over the windows'
    part: the model and the baselines that roll out see their own (8-bit) predictions; the baselines named in
    longer (longer_baselines) start BASELINE_FRAMES - 1 real frames before the same predicted frames."""
    first, last = windows.targets.start, windows.targets.stop - ROLLOUT_STEPS  # predicted frames stay in the part
    targets = torch.linspace(first, last, min(ROLLOUT_STARTS, last - first + 1)).round().long()
    rolled = closed_loop(model, video.frames, targets - (model.num_frames - 1), ROLLOUT_STEPS,
                         player_box=video.player_box)
    truth = rolled.pop("truth")
    if longer:
        context, _ = rollout_clips(video.frames, targets - (BASELINE_FRAMES - 1), BASELINE_FRAMES - 1, ROLLOUT_STEPS)
        for name, predict in context_predictors(BASELINE_FRAMES, video.player_box).items():
            if name in longer:
                rolled[name] = rollout(predict, context, ROLLOUT_STEPS)
    return {"starts": len(targets), **{name: per_step_means(frames, truth) for name, frames in rolled.items()}}
