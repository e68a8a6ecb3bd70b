"""Can a recipe fit one fixed batch? The quickest test that a model and its loss can learn at all.

A model that cannot fit 16 windows it sees over and over will not learn from the whole video. The
batch PSNR it reaches is compared with the copy of the last frame on the same windows: a model that
paints the most common pixel value lowers its loss too, but stays far below that copy.
"""
import torch
from torch.optim.lr_scheduler import LambdaLR

from model.engine import make_optimizer, warmup_cosine
from model.metrics import copy_last_frame_baseline, psnr
from model.vit import VisionTransformer
from nn.loss import masked_loss


def fit_one_batch(cfg, batch, steps, seed=0, record_every=None):
    """Train cfg's model and recipe (loss, optimizer, learning rate, warm-up, clipping) on ``batch`` alone.

    batch: float (B, T, H, W) in [0, 1], num_frames > 1. The schedule is cfg's warm-up and cosine decay over
    ``steps``. Returns {"psnr": [(step, batch PSNR in dB)...], "copy_last_psnr": dB} with a record every
    ``record_every`` steps (default: a tenth of the run) and at the end; the PSNR is that of the clamped
    prediction of the last frame, its MSE averaged over the batch.
    """
    t = cfg.training
    torch.manual_seed(seed)
    model = VisionTransformer.from_config(cfg.model)
    optimizer = make_optimizer(model, cfg)
    scheduler = LambdaLR(optimizer, warmup_cosine(min(t.warmup_steps, steps // 10), steps, t.min_lr_ratio))
    record_every = record_every or max(1, steps // 10)
    target = batch[:, -1]
    history = []
    for step in range(1, steps + 1):
        out = model(batch, last_frame_only=True)  # the whole last frame is hidden: no mask (None) needed
        loss, _, _ = masked_loss(t.loss, out["prediction"], batch[:, -1:], None, with_ssim=False)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        scheduler.step()
        if step % record_every == 0 or step == steps:
            with torch.no_grad():
                prediction = model(batch)["prediction"][:, -1].clamp(0, 1)
            history.append((step, psnr(((prediction - target) ** 2).mean()).item()))
    copy_last = psnr(((copy_last_frame_baseline(batch[:, :-1]) - target) ** 2).mean()).item()
    return {"psnr": history, "copy_last_psnr": copy_last}
