"""The training loop of the predictive ViT, written once: CPU and GPU run the same code.

One optimizer step = gradient_accumulation_steps batches; the learning rate warms up linearly and
then follows a cosine down to learning_rate * min_lr_ratio. Every log_every steps a record goes to
metrics.jsonl, every validate_every steps the validation part of the video is evaluated (best.ckpt
keeps the lowest validation loss), every quicksave_every steps and at the end quicksave.ckpt is
written. A StopFlag (set by the CLI's signal handlers) ends the run after the current step with a
quicksave; a non-finite loss ends it with TrainingError before anything bad is saved.

Everything a resumed run needs is one TrainState (model, optimizer, schedule, loss scaler, data order,
mask generator, step); its state_dict is the checkpoint (model/checkpoint.py). With several processes
(model.distributed.Ranks; torch.distributed initialised by the caller) the model is wrapped in
DistributedDataParallel, the sampler shards the data, only rank 0 logs, validates and writes files,
always from the unwrapped model, and the ranks agree after every step (model/distributed.py).
"""
import json
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from model.checkpoint import (FORMAT_VERSION, check_model_kwargs, export_checkpoint, load_checkpoint, load_model_state,
                              save_checkpoint)
from model.data import WindowSampler, evaluation_indices
from model.distributed import Ranks
from model.evaluate import baseline_metrics, describe_metrics, evaluate
from model.files import write_json_atomically, write_text_atomically
from model.metrics import psnr
from model.progress import StepBar
from model.vit import VisionTransformer
from nn.attention import written_out_attention
from nn.loss import masked_loss, masked_mean

QUICKSAVE = "quicksave.ckpt"
FINAL = "final.ckpt"  # a finished run's weights without optimizer state (model.checkpoint.export_checkpoint)
BEST = "best.ckpt"
METRICS = "metrics.jsonl"


def run_name(cfg, device, run_number=None):
    """The run folder's name, as in the course template: {model_path}.device{N}[.runK]."""
    return f"{cfg.model_path}.device{device}" + (f".run{run_number}" if run_number is not None else "")


class TrainingError(Exception):
    """Training cannot go on (a non-finite loss); the message is one line."""


class TrainState:
    """Everything a run needs to go on exactly where it stopped; ``state_dict()`` is its checkpoint.

    The model is built after torch.manual_seed(seed), so every rank starts from the same weights.
    """

    def __init__(self, cfg, num_windows, device, seed, rank=0, world_size=1):
        m, t = cfg.model, cfg.training
        self.cfg, self.device, self.seed = cfg, device, seed
        self.sampler = WindowSampler(num_windows, m.batch_size, seed, rank, world_size)
        self.total_steps = t.max_steps or max(1, cfg.epochs * self.sampler.batches_per_epoch
                                              // m.gradient_accumulation_steps)
        torch.manual_seed(seed)
        self.model = VisionTransformer.from_config(m).to(device)
        self.optimizer = make_optimizer(self.model, cfg)
        self.scheduler = LambdaLR(self.optimizer, warmup_cosine(t.warmup_steps, self.total_steps, t.min_lr_ratio))
        self.autocast, self.scaler = mixed_precision(device, m.mixed_precision)
        self.mask_generator = torch.Generator().manual_seed(seed)  # random patch masks (num_frames == 1)
        self.step, self.best_val_loss, self.seconds_before = 0, math.inf, 0.0
        self.started = time.perf_counter()

    def seconds(self):
        """Training time so far, this process's part included."""
        return self.seconds_before + time.perf_counter() - self.started

    def state_dict(self):
        payload = {
            "format_version": FORMAT_VERSION, "model": self.model.state_dict(),
            "model_kwargs": self.cfg.model.model_kwargs(), "config": self.cfg.to_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "step": self.step, "epoch": self.sampler.progress,
            "sampler": self.sampler.state_dict(), "mask_generator": self.mask_generator.get_state(),
            "torch_rng": torch.get_rng_state(), "best_val_loss": self.best_val_loss, "seconds": self.seconds(),
            "seed": self.seed,
        }
        if self.device.type == "cuda":
            payload["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return payload

    def load_state_dict(self, payload, path):
        """Continue from a quicksave's payload (read from ``path``, named in errors)."""
        check_model_kwargs(payload, self.cfg.model.model_kwargs(), path)
        load_model_state(self.model, payload, path)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if payload["scaler"]:  # empty when saved without fp16 loss scaling (CPU, bf16)
            self.scaler.load_state_dict(payload["scaler"])
        self.sampler.load_state_dict(payload["sampler"])
        self.mask_generator.set_state(payload["mask_generator"])
        torch.set_rng_state(payload["torch_rng"])
        if self.device.type == "cuda" and "cuda_rng" in payload:
            torch.cuda.set_rng_state(payload["cuda_rng"], self.device)
        self.step, self.best_val_loss, self.seconds_before = payload["step"], payload["best_val_loss"], payload["seconds"]
        self.started = time.perf_counter()


def train(cfg, video, run_dir, *, seed=1234, resume=None, ranks=None, log=None, on_record=None, on_speed=None):
    """Train on a video and write cfg.json, metrics.jsonl, quicksave.ckpt and best.ckpt into run_dir.

    cfg: Config; video: model.data.Video split by the config (open_video, Video.of_config), on the device to
    train on; resume: a checkpoint path to continue from exactly where it stopped; ranks: this process among
    the ranks and the StopFlag they share (model.distributed.Ranks; default one process, no stop flag; with
    several processes a stop request on any rank takes effect on all of them after the step they are in);
    log: callable for one-line messages (default: written above the progress bar);
    on_record: called with every metrics.jsonl record (a dict); it may call ranks.requested.request(reason),
    e.g. to prune a hyperparameter trial, and the run then ends after this step with a quicksave.
    on_speed: called once on rank 0 as on_speed(seconds_per_step, steps_left) when the median time of
    model.progress.SPEED_STEPS steps after the first (which warms up) is known, e.g. to print how long the run
    will take.
    Returns a summary dict: step, total_steps, best_val_loss, val (last validation or None),
    stopped (the stop reason or None), seconds, quicksave (path).
    """
    device, run_dir, log, ranks = video.device, Path(run_dir), log or tqdm.write, ranks or Ranks()
    if device.type == "cpu":
        # A trained model's activations and gradients hold subnormal floats, which the CPU computes ~100x
        # slower: flushed to zero, a step of a trained vit_cpu model is ~20 % faster (docs/bench.md).
        torch.set_flush_denormal(True)
    t = cfg.training
    train_windows = video.windows("train")
    validation = Validation(cfg, video, train_windows) if len(video.parts["val"]) else None
    state = TrainState(cfg, len(train_windows), device, seed, ranks.rank, ranks.world_size)
    if resume is not None:
        state.load_state_dict(load_checkpoint(resume), resume)  # on the CPU; load_state_dict moves to the device
    net = training_forward(state.model, cfg, device, ranks.world_size)
    if ranks.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomically(run_dir / "cfg.json", cfg.to_dict())
        keep_metrics_until(run_dir / METRICS, state.step)
    # its rate and time left: the median of the recent steps' times (model.progress)
    progress = StepBar(total=state.total_steps, initial=state.step, disable=not ranks.is_main, dynamic_ncols=True,
                       mininterval=0.5 if sys.stderr.isatty() else 30, desc=cfg.model_path,
                       on_speed=on_speed if ranks.is_main else None)
    logged, last_val = StepMeans(), None
    state.started = time.perf_counter()  # the training time counts from here
    state.model.train()
    while state.step < state.total_steps and not ranks.stop:
        lr = state.scheduler.get_last_lr()[0]
        try:
            values = train_step(state, net, train_windows, ranks)
        except TrainingError as error:
            progress.close()
            raise TrainingError(f"{error} at step {state.step + 1}; training stopped, {_last_good(run_dir)}") from None
        logged.add(values)
        progress.update(1)
        # The training batch's numbers (before this step's update); the validation lines give the held-out ones.
        progress.set_postfix({"batch loss": f"{values['train_loss']:.4f}", "L1": f"{values['train_l1']:.4f}",
                              "PSNR": f"{psnr(torch.tensor(values['train_mse'])).item():.1f} dB"}, refresh=False)
        last = state.step == state.total_steps
        validate = validation is not None and (state.step % t.validate_every == 0 or last) and not ranks.stop
        if ranks.is_main and (state.step % t.log_every == 0 or validate or last or ranks.stop):
            record = {"step": state.step, "epoch": round(state.sampler.progress, 4), "lr": lr,
                      "seconds": round(state.seconds(), 3), **logged.pop()}
            if validate:
                last_val = validation.run(state, run_dir, record, log)
            with open(run_dir / METRICS, "a", encoding="utf-8") as file:
                file.write(json.dumps(record) + "\n")
            if on_record is not None:
                on_record(record)
        if validate:
            state.best_val_loss = ranks.from_rank_0(state.best_val_loss, device)
        if ranks.is_main and (state.step % t.quicksave_every == 0 or last or ranks.stop):
            save_checkpoint(run_dir / QUICKSAVE, state.state_dict())
    progress.close()
    if ranks.is_main and state.step == state.total_steps:  # finished (also when resumed at its last step)
        export_checkpoint(run_dir / QUICKSAVE, run_dir / FINAL)  # the final weights alone
    return {"step": state.step, "total_steps": state.total_steps, "best_val_loss": state.best_val_loss,
            "val": last_val, "stopped": ranks.stop.reason, "seconds": state.seconds(),
            "quicksave": str(run_dir / QUICKSAVE)}


def train_step(state, net, windows, ranks):
    """One optimizer step (gradient_accumulation_steps micro-batches) of the training state -> its metrics,
    means over the micro-batches (and the ranks): train_loss, train_l1, train_mse, and train_ssim (the
    template's loss), grad_norm (with clipping). Raises TrainingError, without stepping, on a non-finite
    loss or gradient. ``net`` is the model as trained (compiled, DDP-wrapped) or the model itself."""
    m, t = state.cfg.model, state.cfg.training
    accumulation = m.gradient_accumulation_steps
    state.optimizer.zero_grad(set_to_none=True)
    parts = torch.zeros(4, device=state.device)  # loss, l1, masked mse, ssim (template loss only) of this step
    ssim_value = None
    for micro_step in range(accumulation):
        batch = windows.batch(state.sampler.next_batch())  # (B, T, H, W)
        # DDP averages gradients across ranks once per optimizer step, on the last micro-batch.
        sync = nullcontext() if ranks.world_size == 1 or micro_step == accumulation - 1 else net.no_sync()
        with sync:
            with state.autocast():
                # Only the last frame holds masked pixels (the only frame when T == 1), so the loss of the
                # window is the loss of that frame, and the model outputs that frame alone.
                out = net(batch, generator=state.mask_generator, last_frame_only=True)
            prediction = out["prediction"].float()  # (B, 1, H, W)
            # With several frames the whole last frame is hidden: plain means over it (None).
            target, pixel_mask = batch[:, -1:], out["pixel_mask"] if m.num_frames == 1 else None
            loss, l1, ssim_value = masked_loss(t.loss, prediction, target, pixel_mask, with_ssim=False)
            state.scaler.scale(loss / accumulation).backward()
        mse = masked_mean((prediction.detach() - target).square(), pixel_mask)  # logged whatever the loss
        ssim_part = ssim_value.detach() if ssim_value is not None else torch.zeros((), device=state.device)
        parts += torch.stack([loss.detach(), l1.detach(), mse, ssim_part]) / accumulation
    loss, l1, mse, ssim_mean = ranks.mean(parts).tolist()  # one device sync per step
    if not math.isfinite(loss):
        raise TrainingError(f"the loss became {loss}")
    values = {"train_loss": loss, "train_l1": l1, "train_mse": mse}
    if ssim_value is not None:  # computed by the template's loss only
        values["train_ssim"] = ssim_mean
    if t.grad_clip > 0:
        state.scaler.unscale_(state.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), t.grad_clip).item()
        # With fp16 loss scaling an overflow is expected; the scaler skips that step itself.
        if not math.isfinite(grad_norm) and not state.scaler.is_enabled():
            raise TrainingError(f"the gradient norm became {grad_norm}")
        values["grad_norm"] = grad_norm
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    state.step += 1
    return values


def training_forward(model, cfg, device, world_size):
    """The model as the training steps call it: DDP-wrapped with several processes, compiled with
    training.compile; evaluation and checkpoints use the plain model."""
    net = model
    if world_size > 1:  # averages the gradients over the ranks during backward()
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.training.compile:
        net = torch.compile(net)
    return net


class Validation:
    """The validation part of a run: its windows, the mean training frame, and the baselines' metrics
    (computed at the first validation and kept: the windows do not change). With training.train_part_batches
    the same pass scores that many batches of the training part as well (train_part_* in the record)."""

    def __init__(self, cfg, video, train_windows=None):
        self.cfg, self.player_box = cfg, video.player_box
        self.windows = video.windows("val")
        self.train_windows = train_windows if cfg.training.train_part_batches != 0 else None
        self.mean_frame = video.mean_frame  # (H, W)
        self.baselines = None

    def run(self, state, run_dir, record, log):
        """Evaluate the model, add val_* to the record, log a line, write best.ckpt on a new best -> metrics."""
        m, t = self.cfg.model, self.cfg.training
        if self.baselines is None:
            indices = evaluation_indices(len(self.windows), m.batch_size, t.validation_batches)
            self.baselines = baseline_metrics(self.windows, indices, m.batch_size, self.mean_frame,
                                              masker=state.model if m.num_frames == 1 else None,
                                              player_box=self.player_box)
        start = time.perf_counter()
        # A bar of its own below the training bar, on a terminal (in a log file the pass is one line).
        metrics = evaluate(state.model, self.windows, batch_size=m.batch_size, max_batches=t.validation_batches,
                           autocast=state.autocast, loss=t.loss, baselines=self.baselines,
                           progress=sys.stderr.isatty())
        record["val_seconds"] = round(time.perf_counter() - start, 3)
        record.update({f"val_{key}": value for key, value in metrics.items()})
        log(f"step {state.step}: {describe_metrics(metrics)}")
        if self.train_windows is not None:
            train_part = evaluate(state.model, self.train_windows, batch_size=m.batch_size,
                                  max_batches=t.train_part_batches, autocast=state.autocast, loss=t.loss, baselines={})
            record.update({f"train_part_{key}": value for key, value in train_part.items()})
            log(f"step {state.step}, training part: PSNR {train_part['psnr']:.2f} dB, L1 {train_part['l1']:.4f} "
                f"({train_part['windows']} windows)")
        if metrics["loss"] < state.best_val_loss:
            state.best_val_loss = metrics["loss"]
            save_checkpoint(run_dir / BEST, state.state_dict())
        return metrics


class StepMeans:
    """The training numbers of the steps since the last metrics.jsonl record, as means."""

    def __init__(self):
        self.sums, self.count = {}, 0

    def add(self, values):
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1

    def pop(self):
        """The means (and train_psnr, the PSNR of the batches' mean MSE), starting afresh."""
        means = {key: total / self.count for key, total in self.sums.items()}
        means["train_psnr"] = psnr(torch.tensor(means["train_mse"])).item()
        self.sums, self.count = {}, 0
        return means


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
    on a random batch on the CPU; the optimizer's update is not counted either. The attention runs written out
    (nn.attention.written_out_attention), whose products the counter sees.
    """
    from torch.utils.flop_counter import FlopCounterMode

    m = cfg.model
    torch.manual_seed(0)
    model = VisionTransformer.from_config(m)
    frames = torch.rand(m.batch_size * m.gradient_accumulation_steps, m.num_frames, m.image_height, m.image_width)
    with written_out_attention(model), FlopCounterMode(display=False) as counter:
        out = model(frames, generator=torch.Generator().manual_seed(0), last_frame_only=True)
        loss, _, _ = masked_loss(cfg.training.loss, out["prediction"], frames[:, -1:],
                                 out["pixel_mask"] if m.num_frames == 1 else None, with_ssim=False)
        loss.backward()
    return counter.get_total_flops()


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
    autocast (scripts/bench.py times it against float32). Without: float32.
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
