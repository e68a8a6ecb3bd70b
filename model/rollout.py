"""Closed-loop prediction: the model sees its own predictions, step after step.

Each rollout starts from num_frames - 1 real frames, predicts the next frame, quantises it to 8 bit
(what a saved frame holds), appends it to the window and drops the oldest frame. The baselines it is
compared with: the copy of the last real frame, held still, and continue motion rolled out the same
way (on its own predictions: the last real frame moved on by its last global shift, step after step).
"""
import torch

from model.metrics import continue_motion_baseline, frame_metrics, player_held_baseline, psnr


def rollout(predict, context, steps):
    """Closed loop of a predictor: context (B, T-1, H, W) in [0, 1] -> predicted frames (B, steps, H, W).

    predict: window (B, T-1, H, W) -> next frame (B, H, W), e.g. a model's predict_next_frame.
    """
    window, predicted = context, []
    for _ in range(steps):
        frame = torch.round(predict(window) * 255) / 255  # (B, H, W)
        predicted.append(frame)
        window = torch.cat([window[:, 1:], frame[:, None]], dim=1)
    return torch.stack(predicted, dim=1)


def continue_motion_rollout(context, steps):
    """The continue-motion baseline in closed loop: context (B, >=2, H, W) -> (B, steps, H, W)."""
    return rollout(continue_motion_baseline, context, steps)


@torch.no_grad()
def closed_loop(model, video, starts, steps, player_box=None):
    """Rollouts from the given first context frames of a video -> dict of (S, steps, H, W) tensors.

    video: uint8 or float frames (N, H, W) on the model's device; starts (S,) long. Keys: ``truth``,
    ``model``, ``copy_last`` (the last real frame of each context, held still) and, with at least two
    context frames, ``continue_motion`` and, given ``player_box``, ``player_held`` (each rolled out on its
    own predictions).
    """
    context, truth = rollout_clips(video, starts, model.num_frames - 1, steps)
    result = {"truth": truth, "model": rollout(model.predict_next_frame, context, steps),
              "copy_last": context[:, -1:].expand_as(truth)}
    if context.shape[1] >= 2:
        result["continue_motion"] = continue_motion_rollout(context, steps)
        if player_box is not None:
            result["player_held"] = rollout(lambda window: player_held_baseline(window, player_box), context, steps)
    return result


def rollout_clips(video, starts, context_frames, steps):
    """The context (S, context_frames, H, W) and the true next frames (S, steps, H, W) of each start, in [0, 1]."""
    video = video.float() / 255 if video.dtype == torch.uint8 else video
    clips = video[starts.to(video.device)[:, None] + torch.arange(context_frames + steps, device=video.device)]
    return clips[:, :context_frames], clips[:, context_frames:]


def per_step_means(prediction, truth):
    """prediction, truth (S, steps, H, W) -> per step means over the samples: lists l1, mse, psnr, ssim.

    PSNR is that of the mean MSE over the samples (as everywhere in the project).
    """
    samples, steps = truth.shape[:2]
    metrics = {key: value.view(samples, steps) for key, value in
               frame_metrics(prediction.flatten(0, 1), truth.flatten(0, 1)).items()}
    mse = metrics["mse"].mean(0)
    return {"l1": metrics["l1"].mean(0).tolist(), "mse": mse.tolist(), "psnr": psnr(mse).tolist(),
            "ssim": metrics["ssim"].mean(0).tolist()}
