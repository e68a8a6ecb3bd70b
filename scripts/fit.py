"""Can a recipe fit one fixed batch? The quickest test that a model and its loss can learn at all.

A model that cannot fit 16 windows it sees over and over will not learn from the whole video. The
batch PSNR it reaches is compared with the copy of the last frame on the same windows: a model that
paints the most common pixel value lowers its loss too, but stays far below that copy. Every step is
training's own (model.engine.train_step on a TrainState).
"""
import torch

from model.config import with_overrides
from model.distributed import Ranks
from model.engine import TrainState, train_step
from model.metrics import copy_last_frame_baseline, psnr


class OneBatch:
    """Windows that are one fixed batch (B, T, H, W): every batch drawn from them is the whole of it, in its order."""

    def __init__(self, frames):
        self.frames = frames

    def __len__(self):
        return len(self.frames)

    def batch(self, starts):
        return self.frames


def fit_one_batch(cfg, batch, steps, seed=0, record_every=None):
    """Train cfg's model and recipe (loss, optimizer, learning rate, warm-up, clipping) on ``batch`` alone.

    batch: float (B, T, H, W) in [0, 1], num_frames > 1. The schedule is cfg's warm-up (at most a tenth of
    ``steps``) and cosine decay over ``steps``; each step is model.engine.train_step on the whole batch. Returns
    {"psnr": [(step, batch PSNR in dB)...], "copy_last_psnr": dB} with a record every ``record_every`` steps
    (default: a tenth of the run) and at the end; the PSNR is that of the clamped prediction of the last frame,
    its MSE averaged over the batch. A non-finite loss raises model.engine.TrainingError.
    """
    cfg = with_overrides(cfg, {"model.batch_size": len(batch), "model.gradient_accumulation_steps": 1,
                               "training.max_steps": steps, "training.warmup_steps": min(cfg.training.warmup_steps,
                                                                                         steps // 10)})
    windows = OneBatch(batch)
    state, ranks = TrainState(cfg, len(windows), batch.device, seed), Ranks()
    record_every = record_every or max(1, steps // 10)
    target = batch[:, -1]
    history = []
    for step in range(1, steps + 1):
        train_step(state, state.model, windows, ranks)
        if step % record_every == 0 or step == steps:
            with torch.no_grad():
                prediction = state.model(batch)["prediction"][:, -1].clamp(0, 1)
            history.append((step, psnr(((prediction - target) ** 2).mean()).item()))
    copy_last = psnr(((copy_last_frame_baseline(batch[:, :-1]) - target) ** 2).mean()).item()
    return {"psnr": history, "copy_last_psnr": copy_last}
