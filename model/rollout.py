"""Closed-loop prediction: the model sees its own predictions, step after step.

Each rollout starts from num_frames - 1 real frames, predicts the next frame, quantises it to 8 bit
(what a saved frame holds), appends it to the window and drops the oldest frame. The baselines that roll
out (model.baselines) run the same way on their own predictions: the copy of the last real frame stays as it
is, continue motion moves the last real frame on by its last global shift, step after step.
"""
import torch

from model.baselines import context_predictors
from model.metrics import frame_metrics, psnr


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


@torch.no_grad()
def closed_loop(model, video, starts, steps, player_box=None):
    """Rollouts from the given first context frames of a video -> dict of (S, steps, H, W) tensors.

    video: uint8 or float frames (N, H, W) on the model's device; starts (S,) long. Keys: ``truth``,
    ``model``, and the name of every baseline that rolls out and applies to the model's num_frames
    (model.baselines.context_predictors; ``player_box`` for the one that needs it), each rolled out on its own
    predictions.
    """
    context, truth = rollout_clips(video, starts, model.num_frames - 1, steps)
    result = {"truth": truth, "model": rollout(model.predict_next_frame, context, steps)}
    for name, predict in context_predictors(model.num_frames, player_box).items():
        result[name] = rollout(predict, context, steps)
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
