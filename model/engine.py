"""The training loop of the predictive ViT, written once: CPU and GPU run the same code.

One optimizer step = gradient_accumulation_steps batches; the learning rate warms up linearly and
then follows a cosine down to learning_rate * min_lr_ratio. Every log_every steps a record goes to
metrics.jsonl, every validate_every steps the validation part of the video is evaluated (best.ckpt
keeps the lowest validation loss), every quicksave_every steps and at the end quicksave.ckpt is
written. A StopFlag (set by the CLI's signal handlers) ends the run after the current step with a
quicksave; a non-finite loss ends it with TrainingError before anything bad is saved.

With several processes (rank, world_size; torch.distributed initialised by the caller) the model is
wrapped in DistributedDataParallel, the sampler shards the data, and only rank 0 logs, validates and
writes files, always from the unwrapped model, so the checkpoint format is that of one process. The
ranks agree after every step: the logged losses are means over all ranks (a non-finite loss on one
stops them all), a stop requested on any rank stops every rank after the same step, and rank 0
shares the best validation loss.
"""
import json
import math
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from model.checkpoint import (FORMAT_VERSION, check_model_kwargs, export_checkpoint, load_checkpoint, load_model_state,
                              save_checkpoint)
from model.data import WindowSampler, config_parts, evaluation_indices, part_windows
from model.files import write_json_atomically, write_text_atomically
from model.evaluate import BASELINES, baseline_predictors, flat_summary, model_predictor, score
from model.metrics import mean_frame_baseline, psnr
from model.vit import VisionTransformer
from nn.loss import DSSIM_WEIGHT, L1_WEIGHT, masked_loss

QUICKSAVE = "quicksave.ckpt"
FINAL = "final.ckpt"  # a finished run's weights without optimizer state (model.checkpoint.export_checkpoint)
BEST = "best.ckpt"
METRICS = "metrics.jsonl"
SPEED_STEPS = 3  # steps timed for train(on_speed=...)


def run_name(cfg, device, run_number=None):
    """The run folder's name, as in the course template: {model_path}.device{N}[.runK]."""
    return f"{cfg.model_path}.device{device}" + (f".run{run_number}" if run_number is not None else "")


class TrainingError(Exception):
    """Training cannot go on (a non-finite loss); the message is one line."""


class StopFlag:
    """Asks the loop to stop after the current step; ``reason`` names who asked (e.g. 'SIGTERM')."""

    def __init__(self):
        self.reason = None

    def request(self, reason):
        self.reason = reason

    def __bool__(self):
        return self.reason is not None


def train(cfg, frames, run_dir, *, device="cpu", seed=1234, resume=None, stop=None, rank=0, world_size=1,
          log=None, on_record=None, on_speed=None):
    """Train on a video and write cfg.json, metrics.jsonl, quicksave.ckpt and best.ckpt into run_dir.

    cfg: Config; frames: uint8 (N, H, W) of the whole video (checked against the config);
    resume: a checkpoint path to continue from exactly where it stopped; stop: StopFlag (with several
    processes a request on any rank takes effect on all of them after the step they are in);
    log: callable for one-line messages (default: written above the progress bar);
    on_record: called with every metrics.jsonl record (a dict); it may call stop.request(reason),
    e.g. to prune a hyperparameter trial, and the run then ends after this step with a quicksave.
    on_speed: called once on rank 0 as on_speed(seconds_per_step, steps_left) when SPEED_STEPS steps after
    the first (which warms up) have been timed, e.g. to print how long the run will take.
    Returns a summary dict: step, total_steps, best_val_loss, val (last validation or None),
    stopped (the stop reason or None), seconds, quicksave (path).
    """
    device = torch.device(device)
    requested = stop if stop is not None else StopFlag()  # set by signal handlers or on_record, any time
    # With several processes the loop reads an agreed copy, updated for all ranks at once after each step.
    stop = requested if world_size == 1 else StopFlag()
    log = log or tqdm.write
    is_main = rank == 0
    run_dir = Path(run_dir)
    m, t = cfg.model, cfg.training
    torch.manual_seed(seed)

    # Data: the temporal split, windows on the device, a resumable shuffled order.
    parts = config_parts(cfg, len(frames))
    video = torch.as_tensor(frames).to(device)  # (N, H, W) uint8, shared by the parts' windows
    train_windows = part_windows(video, "train", parts, m.num_frames, device)
    val_windows = part_windows(video, "val", parts, m.num_frames, device) if len(parts["val"]) else None
    mean_frame = mean_frame_baseline(video[:len(parts["train"])]).to(device)  # (H, W)
    sampler = WindowSampler(len(train_windows), m.batch_size, seed, rank, world_size)
    val_baselines = None  # computed at the first validation: the same windows every time
    total_steps = t.max_steps or max(1, cfg.epochs * sampler.batches_per_epoch // m.gradient_accumulation_steps)

    # Model and optimisation.
    model = VisionTransformer.from_config(m).to(device)  # the same initial weights on every rank (seed)
    net = model
    if world_size > 1:  # averages the gradients over the ranks during backward()
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:  # the training forward only; evaluation and checkpoints use the plain model
        net = torch.compile(net)
    optimizer = make_optimizer(model, cfg)
    scheduler = LambdaLR(optimizer, warmup_cosine(t.warmup_steps, total_steps, t.min_lr_ratio))
    autocast, scaler = mixed_precision(device, m.mixed_precision)
    mask_generator = torch.Generator().manual_seed(seed)  # random patch masks (num_frames == 1)

    step, best_val_loss, seconds_before = 0, math.inf, 0.0
    if resume is not None:
        step, best_val_loss, seconds_before = _restore(resume, m, device, model, optimizer, scheduler, scaler,
                                                       sampler, mask_generator)

    def checkpoint(seconds):
        payload = {
            "format_version": FORMAT_VERSION, "model": model.state_dict(), "model_kwargs": m.model_kwargs(),
            "config": cfg.to_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "step": step, "epoch": sampler.progress,
            "sampler": sampler.state_dict(), "mask_generator": mask_generator.get_state(),
            "torch_rng": torch.get_rng_state(), "best_val_loss": best_val_loss, "seconds": seconds,
            "seed": seed,
        }
        if device.type == "cuda":
            payload["cuda_rng"] = torch.cuda.get_rng_state(device)
        return payload

    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomically(run_dir / "cfg.json", cfg.to_dict())
        keep_metrics_until(run_dir / METRICS, step)

    progress = tqdm(total=total_steps, initial=step, disable=not is_main, dynamic_ncols=True,
                    mininterval=0.5 if sys.stderr.isatty() else 30, desc=cfg.model_path)
    sums, summed_steps = {}, 0  # train_loss, train_l1, train_mse, grad_norm since the last record
    last_val = None
    start = time.perf_counter()
    first_step, speed_from = step, None  # timing of the steps after the first, for on_speed
    model.train()
    while step < total_steps and not stop:
        lr = scheduler.get_last_lr()[0]
        try:
            step_values = _train_step(cfg, net, model, train_windows, sampler, mask_generator, optimizer, scaler,
                                      autocast, device, world_size, requested, stop)
        except TrainingError as error:
            progress.close()
            raise TrainingError(f"{error} at step {step + 1}; training stopped, {_last_good(run_dir)}") from None
        scheduler.step()
        step += 1
        if step == first_step + 1:
            speed_from = time.perf_counter()
        elif on_speed is not None and is_main and step == first_step + 1 + SPEED_STEPS:
            on_speed((time.perf_counter() - speed_from) / SPEED_STEPS, total_steps - step)

        for key, value in step_values.items():
            sums[key] = sums.get(key, 0.0) + value
        summed_steps += 1
        progress.update(1)
        # The training batch's numbers (before this step's update); the validation lines give the held-out ones.
        progress.set_postfix({"batch loss": f"{step_values['train_loss']:.4f}", "L1": f"{step_values['train_l1']:.4f}",
                              "PSNR": f"{psnr(torch.tensor(step_values['train_mse'])).item():.1f} dB"}, refresh=False)

        last = step == total_steps
        validate = val_windows is not None and (step % t.validate_every == 0 or last) and not stop
        if is_main and (step % t.log_every == 0 or validate or last or stop):
            seconds = seconds_before + time.perf_counter() - start
            record = {"step": step, "epoch": round(sampler.progress, 4), "lr": lr, "seconds": round(seconds, 3),
                      **{key: total / summed_steps for key, total in sums.items()}}
            # The training batches of these steps: their PSNR is that of their mean MSE.
            record["train_psnr"] = psnr(torch.tensor(record["train_mse"])).item()
            sums, summed_steps = {}, 0
            if validate:
                indices = evaluation_indices(len(val_windows), m.batch_size, t.validation_batches)
                if val_baselines is None:
                    val_baselines = baseline_metrics(val_windows, indices, m.batch_size, mean_frame,
                                                     masker=model if m.num_frames == 1 else None)
                eval_start = time.perf_counter()
                # A bar of its own below the training bar, on a terminal (in a log file the pass is one line).
                last_val = evaluate(model, val_windows, batch_size=m.batch_size, max_batches=t.validation_batches,
                                    autocast=autocast, loss=t.loss, baselines=val_baselines,
                                    progress=sys.stderr.isatty())
                record["val_seconds"] = round(time.perf_counter() - eval_start, 3)
                record.update({f"val_{key}": value for key, value in last_val.items()})
                log(f"step {step}: {describe_metrics(last_val)}")
                if last_val["loss"] < best_val_loss:
                    best_val_loss = last_val["loss"]
                    save_checkpoint(run_dir / BEST, checkpoint(seconds))
            with open(run_dir / METRICS, "a", encoding="utf-8") as file:
                file.write(json.dumps(record) + "\n")
            if on_record is not None:
                on_record(record)
        if validate and world_size > 1:
            best_val_loss = share_from_rank_0(best_val_loss, device)
        if is_main and (step % t.quicksave_every == 0 or last or stop):
            save_checkpoint(run_dir / QUICKSAVE, checkpoint(seconds_before + time.perf_counter() - start))
    progress.close()
    if is_main and step == total_steps:  # finished (also when resumed at its last step): the final weights alone
        export_checkpoint(run_dir / QUICKSAVE, run_dir / FINAL)
    return {"step": step, "total_steps": total_steps, "best_val_loss": best_val_loss, "val": last_val,
            "stopped": stop.reason, "seconds": seconds_before + time.perf_counter() - start,
            "quicksave": str(run_dir / QUICKSAVE)}


def _train_step(cfg, net, model, train_windows, sampler, mask_generator, optimizer, scaler, autocast, device,
                world_size, requested, stop):
    """One optimizer step (gradient_accumulation_steps micro-batches) -> its metrics, means over the
    micro-batches (and the ranks): train_loss, train_l1, train_mse, and train_ssim (the template's loss),
    grad_norm (with clipping). Raises TrainingError, without stepping, on a non-finite loss or gradient."""
    m, t = cfg.model, cfg.training
    accumulation = m.gradient_accumulation_steps
    optimizer.zero_grad(set_to_none=True)
    parts = torch.zeros(4, device=device)  # loss, l1, masked mse, ssim (template loss only) of this step
    ssim_value = None
    for micro_step in range(accumulation):
        batch = train_windows.batch(sampler.next_batch())  # (B, T, H, W)
        # DDP averages gradients across ranks once per optimizer step, on the last micro-batch.
        sync = nullcontext() if world_size == 1 or micro_step == accumulation - 1 else net.no_sync()
        with sync:
            with autocast():
                out = net(batch, generator=mask_generator)
            # Only the last frame holds masked pixels (the only frame when T == 1), so the loss
            # of the window is the loss of that frame; computing SSIM on it alone is T times cheaper.
            prediction = out["prediction"][:, -1:].float()  # (B, 1, H, W)
            target, pixel_mask = batch[:, -1:], out["pixel_mask"][:, -1:]
            loss, l1, ssim_value = masked_loss(t.loss, prediction, target, pixel_mask, with_ssim=False)
            scaler.scale(loss / accumulation).backward()
        mse = ((prediction.detach() - target) ** 2 * pixel_mask).sum() / pixel_mask.sum()
        ssim_part = ssim_value.detach() if ssim_value is not None else torch.zeros((), device=device)
        parts += torch.stack([loss.detach(), l1.detach(), mse, ssim_part]) / accumulation
    if world_size > 1:
        parts = agree(parts, requested, stop, world_size)
    loss, l1, mse, ssim_mean = parts.tolist()  # one device sync per step
    if not math.isfinite(loss):
        raise TrainingError(f"the loss became {loss}")
    values = {"train_loss": loss, "train_l1": l1, "train_mse": mse}
    if ssim_value is not None:  # computed by the template's loss only
        values["train_ssim"] = ssim_mean
    if t.grad_clip > 0:
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip).item()
        # With fp16 loss scaling an overflow is expected; the scaler skips that step itself.
        if not math.isfinite(grad_norm) and not scaler.is_enabled():
            raise TrainingError(f"the gradient norm became {grad_norm}")
        values["grad_norm"] = grad_norm
    scaler.step(optimizer)
    scaler.update()
    return values


def _restore(path, m, device, model, optimizer, scheduler, scaler, sampler, mask_generator):
    """Load a quicksave into the training state -> (step, best validation loss, training seconds so far)."""
    payload = load_checkpoint(path)  # on the CPU; load_state_dict moves tensors to the device
    check_model_kwargs(payload, m.model_kwargs(), path)
    load_model_state(model, payload, path)
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    if payload["scaler"]:  # empty when saved without fp16 loss scaling (CPU, bf16)
        scaler.load_state_dict(payload["scaler"])
    sampler.load_state_dict(payload["sampler"])
    mask_generator.set_state(payload["mask_generator"])
    torch.set_rng_state(payload["torch_rng"])
    if device.type == "cuda" and "cuda_rng" in payload:
        torch.cuda.set_rng_state(payload["cuda_rng"], device)
    return payload["step"], payload["best_val_loss"], payload["seconds"]


def agree(parts, requested, stop, world_size):
    """Mean of parts (a tensor) over the ranks; a stop requested on any rank is set in stop on all.

    The stop reason travels as a signal number (0: none, 1: a reason that is not a signal).
    """
    parts = parts.clone()
    dist.all_reduce(parts, op=dist.ReduceOp.SUM)
    code = torch.tensor([stop_code(requested.reason)], device=parts.device)
    dist.all_reduce(code, op=dist.ReduceOp.MAX)
    code = int(code.item())
    if code and not stop:
        stop.request(requested.reason if stop_code(requested.reason) == code else stop_reason(code))
    return parts / world_size


def stop_code(reason):
    """A stop reason as a number: 0 for none, the signal's number for a signal's name, else 1."""
    if reason is None:
        return 0
    return signal.Signals[reason].value if reason in signal.Signals.__members__ else 1


def stop_reason(code):
    """The reason a rank reports for a stop asked for elsewhere: the signal's name, else 'another rank'."""
    return signal.Signals(code).name if code > 1 else "another rank"


def share_from_rank_0(value, device):
    """A float that rank 0 knows, for every rank."""
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return tensor.item()


def evaluate(model, windows, *, batch_size, max_batches=None, mean_frame=None, autocast=nullcontext, seed=0,
             loss="l1_ssim", baselines=None, player_box=None, progress=False):
    """Mean metrics of the model on windows (all, or max_batches batches spread over them) -> flat dict.

    The one evaluator (model.evaluate) on these windows: num_frames > 1 the predicted last frame (clamped to
    [0, 1]) against the true one; num_frames == 1 the masked pixels of the reconstruction (the masks drawn from
    ``seed``, the same every call). Keys: loss (the training loss ``loss`` of the clamped prediction, from the
    per-window means), l1, mse, psnr, ssim, windows, then the baselines' as '{name}_{key}' on the same windows,
    taken from ``baselines`` when given (they do not change from one validation to the next) and computed
    here otherwise (see baseline_metrics). PSNR is that of the mean MSE over windows.
    """
    was_training = model.training
    model.eval()
    indices = evaluation_indices(len(windows), batch_size, max_batches)
    masker = model if model.num_frames == 1 else None
    with autocast():
        per_window, _ = score({"model": model_predictor(model)}, windows, indices, batch_size=batch_size,
                              masker=masker, mask_seed=seed, progress=progress)
    model.train(was_training)
    metrics = flat_summary(per_window)
    metrics = {"loss": loss_of_means(loss, metrics), **metrics, "windows": len(indices)}
    if baselines is None:
        baselines = baseline_metrics(windows, indices, batch_size, mean_frame, generator_seed=seed, masker=masker,
                                     player_box=player_box)
    return {**metrics, **baselines}


def loss_of_means(kind, metrics):
    """The training loss ``kind`` from mean metrics l1, mse, ssim (the template's DSSIM from the mean SSIM)."""
    if kind == "mse":
        return metrics["mse"]
    if kind == "l1":
        return metrics["l1"]
    return L1_WEIGHT * metrics["l1"] + DSSIM_WEIGHT * (1 - metrics["ssim"]) / 2


def baseline_metrics(windows, indices, batch_size, mean_frame=None, generator_seed=0, masker=None,
                     player_box=None):
    """Mean metrics of the baselines (model.evaluate.baseline_predictors) on the windows at indices -> flat dict
    copy_last_l1, ..., mean_frame_ssim. For masked reconstruction (num_frames == 1) ``masker`` is the model
    whose patch masks (drawn from generator_seed, as evaluate draws them) select the pixels scored (and the
    neighbour fill's hidden pixels)."""
    predictors = baseline_predictors(windows.num_frames, mean_frame, player_box, masker=masker)
    per_window, _ = score(predictors, windows, indices, batch_size=batch_size, masker=masker,
                          mask_seed=generator_seed)
    return flat_summary(per_window)


def final_weights(run_dir):
    """A finished run's final weights: its final.ckpt, else (finished before there was one) its quicksave."""
    run_dir = Path(run_dir)
    return run_dir / FINAL if (run_dir / FINAL).exists() else run_dir / QUICKSAVE


def load_model(checkpoint_path, model_cfg, device="cpu"):
    """A VisionTransformer in eval mode with a checkpoint's weights -> (model, payload).

    The checkpoint's architecture must match model_cfg (CheckpointError names the differences).
    """
    payload = load_checkpoint(checkpoint_path)
    check_model_kwargs(payload, model_cfg.model_kwargs(), checkpoint_path)
    model = VisionTransformer.from_config(model_cfg)
    load_model_state(model, payload, checkpoint_path)
    return model.to(device).eval(), payload


def step_flops(cfg):
    """Floating-point operations of one training step of cfg's model (forward, loss, backward) at its batch size.

    Counted by torch.utils.flop_counter (matrix products and attention; element-wise work is not counted),
    on a random batch on the CPU; the optimizer's update is not counted either.
    """
    from torch.utils.flop_counter import FlopCounterMode

    m = cfg.model
    torch.manual_seed(0)
    model = VisionTransformer.from_config(m)
    frames = torch.rand(m.batch_size * m.gradient_accumulation_steps, m.num_frames, m.image_height, m.image_width)
    with FlopCounterMode(display=False) as counter:
        out = model(frames, generator=torch.Generator().manual_seed(0))
        loss, _, _ = masked_loss(cfg.training.loss, out["prediction"][:, -1:], frames[:, -1:],
                                 out["pixel_mask"][:, -1:], with_ssim=False)
        loss.backward()
    return counter.get_total_flops()


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


def make_optimizer(model, cfg):
    """AdamW or RAdam; weight decay only on matrices (weights, positional embedding), not on biases or norms."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.training.optimizer == "radam":
        return torch.optim.RAdam(groups, lr=cfg.learning_rate, decoupled_weight_decay=True)
    return torch.optim.AdamW(groups, lr=cfg.learning_rate)


def warmup_cosine(warmup_steps, total_steps, min_lr_ratio):
    """Learning-rate factor per step: linear warm-up to 1, then cosine down to min_lr_ratio at total_steps."""
    def factor(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def mixed_precision(device, enabled):
    """-> (autocast context factory, GradScaler) for the device.

    With mixed precision: on CUDA bf16 where supported, else fp16 with loss scaling; on the CPU bf16
    autocast (the bench's train section measures it against float32: slower for these models on this
    machine's CPU, so every config keeps it off). Without: float32.
    """
    kind = device.type if device.type in ("cuda", "cpu") else "cpu"
    dtype = torch.bfloat16 if kind == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=enabled and kind == "cuda" and dtype == torch.float16)

    def autocast():
        return torch.autocast(kind, dtype=dtype) if enabled else nullcontext()

    return autocast, scaler


def keep_metrics_until(path, step):
    """Start metrics.jsonl afresh (step 0) or, when resuming, drop the records after the resumed step."""
    path = Path(path)
    kept = []
    if step > 0 and path.exists():
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
    write_text_atomically(path, "".join(line + "\n" for line in kept))


def _last_good(run_dir):
    quicksave = Path(run_dir) / QUICKSAVE
    if quicksave.exists():
        return f"the last good checkpoint is {quicksave}"
    return "no checkpoint was written yet"
