"""Performance benchmark: the hand-written modules against PyTorch's own kernels and the machine's limit.

    python -m scripts.bench                          # full run (about 20 minutes on 2 cores), prints a Markdown table
    python -m scripts.bench --quick                  # small repetition counts, for a smoke test
    python -m scripts.bench --only attention vit     # some sections only
    python -m scripts.bench --json results/bench/bench.json

Every ratio is measured within one run: the compared variants are warmed up, then their repetitions are
interleaved (A B A B ..., the order alternating) and the medians compared, so a change of load on a shared
machine hits both sides alike. The table gives each ratio beside its target (PASS/MISS).

Sections:
    ex1        training step (forward, backward, Adam step) of the RNN/LSTM/TCN, hand-written vs impl="torch"
               vs the fused nn.RNN/nn.LSTM; wall and CPU time of a `python main.py` grid, --jobs 1 vs --jobs 2
    attention  SelfAttentionLayer hand-written vs scaled_dot_product_attention, forward + backward
    vit        ViT training step (model.engine.train_step, the step training runs): FLOPs
               (model.engine.step_flops), achieved FLOP/s vs a measured fp32 matmul FLOP/s, the data pipeline's
               share of the step, peak memory (max RSS growth of a fresh process)
    train      the training command's own loop (model.engine.train) on config/vit_cpu.json and
               config/vit_best.json: a profile of its steps (matrix products, attention, element-wise work,
               loss, optimizer) and of one validation pass, and side by side the plain fp32 loop, the loop
               with training.compile, two threads in one process against two one-thread processes, and the
               validation pass's share of training at the configs' validate_every
    memorise   the wide model's training step (config/vit_memorise.json, width 256) in fp32 and bf16 autocast,
               eager and compiled (model.engine.train_step); target: the config's path >= 1.5x fp32 eager
    quality    time to quality: config/vit_cpu.json (the sheet's model, its recipe) trained on the built-in
               video until its validation PSNR passes copy-last + 2 dB: as configured (fp32 eager, batch 16),
               with bf16 autocast, and at batch 32 with the learning rate scaled by the square root of the
               batch ratio (warm-up and budget kept in samples)
    predict    frames per second of the closed-loop rollout (model.rollout.rollout)
    gpu        bf16 autocast, fused attention, torch.compile (only when CUDA is available)
"""
import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import torch
import torch.nn.functional as F
from torch import nn as tnn
from torch.profiler import ProfilerActivity, profile

from net import HIDDEN_SIZES, build_model
from model.cli import CliParser
from model.config import load_config, with_overrides
from model.data import FrameWindows, Video, WindowSampler, evaluation_indices
from model.video import gameplay
from model.checkpoint import load_checkpoint
from model.distributed import Ranks, StopFlag
from model.engine import TrainState, step_flops, train, train_step, training_forward
from model.evaluate import baseline_metrics, evaluate
from model.metrics import mean_frame_baseline
from model.rollout import rollout
from model.text import plural
from model.vit import VisionTransformer
from nn.attention import SelfAttentionLayer

SECTIONS = ("ex1", "attention", "vit", "train", "memorise", "subnormals", "quality", "predict", "gpu")
VIT_CONFIGS = {"vit_cpu": ROOT / "config/vit_cpu.json", "vit": ROOT / "config/vit.json"}
NUM_TOKENS, SEQUENCE_LENGTH, EX1_BATCH = 3, 30, 32  # the template's memory task
VIDEO_FRAMES = 6000  # about the built-in video's length; the gather cost does not depend on it


# --- timing ------------------------------------------------------------------------------------------------


def interleaved(variants, reps, warmup=2, sync=None):
    """Median seconds per call of each variant; warm-up first, then repetitions interleaved.

    variants: dict name -> callable. The order alternates between repetitions, so neither side
    always runs right after the other. sync: called before reading the clock (CUDA), or None.
    """
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in variants}
    names = list(variants)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            variants[name]()
            if sync is not None:
                sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


class Table:
    """Rows of (section, measurement, value, target, status) and the raw numbers for --json."""

    def __init__(self):
        self.rows, self.numbers = [], {}

    def add(self, section, name, value, target="", status=""):
        self.rows.append((section, name, value, target, status))
        print(f"  {section:9s} {name}: {value} {target} {status}".rstrip(), file=sys.stderr, flush=True)

    def check(self, section, name, ratio, limit, higher_is_better, unit="x"):
        """A ratio against its target; PASS/MISS."""
        ok = ratio >= limit if higher_is_better else ratio <= limit
        target = f"{'>=' if higher_is_better else '<='} {limit:g}{unit}"
        self.add(section, name, f"{ratio:.2f}{unit}", target, "PASS" if ok else "MISS")
        return ok

    def markdown(self):
        lines = ["| section | measurement | value | target | status |", "|---|---|---|---|---|"]
        lines += [f"| {' | '.join(row)} |" for row in self.rows]
        return "\n".join(lines)


def ms(seconds):
    return f"{seconds * 1e3:.2f} ms"


# --- Exercise 1 --------------------------------------------------------------------------------------------


class FusedRecurrent(tnn.Module):
    """nn.RNN / nn.LSTM (one fused kernel over the sequence) + Linear on the last step, as the models of net.py.

    x (B, T, I) -> logits (B, O).
    """

    def __init__(self, kind, input_size, hidden_size, output_size):
        super().__init__()
        self.recurrent = (tnn.RNN if kind == "rnn" else tnn.LSTM)(input_size, hidden_size, batch_first=True)
        self.head = tnn.Linear(hidden_size, output_size)

    def forward(self, x):
        out, _ = self.recurrent(x)  # (B, T, H)
        return self.head(out[:, -1])


def ex1_step(model, generator):
    """One training step of train.train on a fixed random batch: forward, cross-entropy, backward, Adam step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    tokens = torch.randint(NUM_TOKENS + 2, (EX1_BATCH, SEQUENCE_LENGTH), generator=generator)
    x = F.one_hot(tokens, NUM_TOKENS + 2).float()  # (B, T, I)
    y = torch.randint(NUM_TOKENS, (EX1_BATCH,), generator=generator)

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return step


GRID_MODELS = ("rnn", "tcn")


def grid_args(quick):
    """The `python main.py` grid timed with --jobs 1 and --jobs 2, and its number of runs.

    Full: 24 runs of 50 epochs, about 2.5 s each in one thread (60 s of training against ~3 s of start-up);
    quick: 8 runs of 2 epochs, where start-up dominates (a smoke test of the bench only)."""
    tasks, seeds, epochs = (["memory"], range(4), 2) if quick else (["memory", "memorygen"], range(6), 50)
    args = ["--tasks", *tasks, "--models", *GRID_MODELS, "--seeds", *map(str, seeds), "--epochs", str(epochs)]
    return args, len(tasks) * len(GRID_MODELS) * len(seeds)


def bench_ex1(table, quick):
    # main.py trains every run in one thread (parallelism is over runs), so the step is timed the same way.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reps = 10 if quick else 60
        for name in HIDDEN_SIZES:
            generator = torch.Generator().manual_seed(0)
            variants = {}
            for impl in ("own", "torch"):
                torch.manual_seed(0)
                variants[impl] = ex1_step(build_model(name, NUM_TOKENS, SEQUENCE_LENGTH, impl), generator)
            if name != "tcn":
                variants["fused"] = ex1_step(
                    FusedRecurrent(name, NUM_TOKENS + 2, HIDDEN_SIZES[name], NUM_TOKENS), generator)
            t = interleaved(variants, reps)
            times = ", ".join(f"{impl} {ms(s)}" for impl, s in t.items())
            table.add("ex1", f"{name.upper()} train step, 1 thread ({times})", "")
            table.check("ex1", f"{name.upper()} own / impl=torch", t["own"] / t["torch"], 1.1, False)
            table.numbers[f"ex1.{name}"] = t
            if "fused" in t:
                table.add("ex1", f"{name.upper()} own / fused nn.{name.upper()}", f"{t['own'] / t['fused']:.2f}x",
                          "info")
    finally:
        torch.set_num_threads(threads)

    # The grid as subprocesses: each variant in the same run, alternating. It is sized so that training
    # dominates: each `python main.py` pays a fixed start-up (importing torch, ~1.5 s, and on the first
    # optimizer torch._dynamo, ~1 s) once in the parent with --jobs 1 and once per worker with --jobs 2, which
    # a grid of a few seconds would measure instead of the throughput of the runs.
    grid, runs = grid_args(quick)
    with tempfile.TemporaryDirectory() as out:
        cpu = {"jobs1": [], "jobs2": []}

        def main_py(*args, cpu_times=None):
            def call():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                # a folder per grid: main.py refuses to write a grid over an earlier one
                subprocess.run([sys.executable, "main.py", *args, "--out", tempfile.mkdtemp(dir=out)], cwd=ROOT,
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)  # main.py and its waited-for workers
                if cpu_times is not None:
                    cpu_times.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            return call
        t = interleaved({jobs: main_py(*grid, "--jobs", jobs[-1], cpu_times=cpu[jobs]) for jobs in cpu},
                        reps=1 if quick else 2, warmup=0)
        cpu = {jobs: statistics.median(seconds) for jobs, seconds in cpu.items()}
        table.add("ex1", f"grid `main.py {' '.join(grid)}` ({runs} runs): --jobs 1 {t['jobs1']:.1f} s wall "
                  f"({cpu['jobs1']:.1f} s CPU), --jobs 2 {t['jobs2']:.1f} s wall ({cpu['jobs2']:.1f} s CPU, "
                  f"{cpu['jobs2'] / t['jobs2']:.2f} cores busy on average)", "")
        table.check("ex1", "--jobs 2 speed-up over --jobs 1", t["jobs1"] / t["jobs2"], 1.7, True)
        table.numbers["ex1.grid"] = {**t, "cpu_s": cpu, "args": grid}
        if not quick:
            start = time.perf_counter()
            main_py()()
            wall = time.perf_counter() - start
            table.add("ex1", "default grid `python main.py` (2 tasks x 3 models, 50 epochs), wall time",
                      f"{wall:.1f} s", "info")
            table.numbers["ex1.default_grid_s"] = wall


# --- attention ---------------------------------------------------------------------------------------------


def attention_pair(tokens, batch, width=128, heads=2):
    """Forward + backward of the hand-written and the fused SelfAttentionLayer with the same weights."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, tokens, width, generator=generator, requires_grad=True)
    own = SelfAttentionLayer(width, heads, fused=False)
    fused = SelfAttentionLayer(width, heads, fused=True)
    fused.load_state_dict(own.state_dict())

    def run(layer):
        def call():
            layer.zero_grad(set_to_none=True)
            x.grad = None
            layer(x).sum().backward()
        return call
    return {"hand-written": run(own), "sdpa": run(fused)}


def bench_attention(table, quick):
    for tokens, batch, target in ((270, 32, 1.3), (3000, 2, None)):
        t = interleaved(attention_pair(tokens, batch), reps=5 if quick else (30 if tokens < 1000 else 10))
        ratio = t["hand-written"] / t["sdpa"]
        label = f"{tokens} tokens, width 128, 2 heads, batch {batch}: hand-written / sdpa, fwd+bwd " \
                f"({ms(t['hand-written'])} vs {ms(t['sdpa'])})"
        if target is None:
            table.add("attention", label, f"{ratio:.2f}x", "info")
        else:
            table.check("attention", label, ratio, target, False)
        table.numbers[f"attention.{tokens}"] = t


# --- ViT ---------------------------------------------------------------------------------------------------


def vit_setup(name, batch_size=None, video_frames=VIDEO_FRAMES):
    """-> (the config at batch_size (default: its own), windows over a synthetic uint8 video of its frame size)."""
    cfg = load_config(VIT_CONFIGS[name])
    if batch_size is not None:
        cfg = with_overrides(cfg, {"model.batch_size": batch_size})
    return cfg, FrameWindows(synthetic_video(cfg, video_frames), cfg.model.num_frames)


def project_step(cfg, windows, compile_=False, device="cpu"):
    """The training command's own step (model.engine.train_step on a TrainState), as engine.train calls it."""
    state = TrainState(cfg, len(windows), torch.device(device), seed=0)
    net = training_forward(state.model, with_overrides(cfg, {"training.compile": compile_}), state.device, 1)
    ranks = Ranks()
    return lambda: train_step(state, net, windows, ranks)


MATMUL_SIZE = 2048


def matmul():
    """An fp32 (n, n) @ (n, n) product (2 n^3 FLOPs), the machine's arithmetic reference."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=generator) for _ in range(2))
    return lambda: a @ b


def peak_rss():
    """Peak resident memory (bytes) of this process image.

    /proc/self/status VmHWM starts afresh at exec; getrusage's ru_maxrss does not (Linux carries the
    parent's peak over fork + exec), so it is only the fallback where there is no /proc.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def memory_probe(name, batch_size):
    """In a fresh process: peak RSS growth (bytes) from a built model + data to after three training steps.

    A short video keeps the set-up's own peak (drawing the frames) below the training step's.
    """
    cfg, windows = vit_setup(name, batch_size, video_frames=4 * batch_size)
    before = peak_rss()
    step = project_step(cfg, windows)
    for _ in range(3):
        step()
    print(peak_rss() - before)


def bench_vit(table, quick):
    threads = torch.get_num_threads()
    for name in VIT_CONFIGS:
        cfg = load_config(VIT_CONFIGS[name])
        # vit.json's batch of 32 is the template's GPU batch; on the CPU 8 keeps the bench short (the step
        # is linear in the batch at this size, so FLOP/s and the data share barely depend on it).
        batch_size = cfg.model.batch_size if name == "vit_cpu" else 8
        cfg, windows = vit_setup(name, batch_size)
        step = project_step(cfg, windows)
        sampler = WindowSampler(len(windows), batch_size, seed=0)  # the data pipeline alone
        flops = step_flops(cfg)  # the attention's products included
        # The matmul reference is interleaved with the step: on a shared machine both see the same load.
        t = interleaved({"step": step, "data": lambda: windows.batch(sampler.next_batch()), "matmul": matmul()},
                        reps=3 if quick else 12, warmup=1)
        peak = 2 * MATMUL_SIZE ** 3 / t["matmul"]
        achieved = flops / t["step"]
        label = f"{name}.json, batch {batch_size}"
        table.add("vit", f"{label}: fp32 matmul {MATMUL_SIZE}x{MATMUL_SIZE}, {threads} threads, interleaved",
                  f"{peak / 1e9:.1f} GFLOP/s", "reference")
        table.add("vit", f"{label}: step {ms(t['step'])}, {flops / 1e9:.2f} GFLOP/step",
                  f"{achieved / 1e9:.1f} GFLOP/s")
        table.check("vit", f"{label}: MFU (achieved / matmul FLOP/s)", 100 * achieved / peak, 60, True, unit="%")
        table.check("vit", f"{label}: data pipeline share ({ms(t['data'])} per batch)",
                    100 * t["data"] / t["step"], 2, False, unit="%")
        probe = subprocess.run([sys.executable, "-m", "scripts.bench", "--memory-probe", name, str(batch_size)], cwd=ROOT,
                               check=True, capture_output=True, text=True)
        memory = int(probe.stdout.split()[-1])
        table.add("vit", f"{label}: peak memory of training (VmHWM growth over 3 steps, fresh process)",
                  f"{memory / 2 ** 20:.0f} MiB", "info")
        table.numbers[f"vit.{name}"] = {"batch_size": batch_size, "step_s": t["step"], "data_s": t["data"],
                                        "flops_per_step": flops, "matmul_flops": peak, "mfu": achieved / peak,
                                        "peak_rss_bytes": memory}


# --- the training loop --------------------------------------------------------------------------------------

TRAIN_CONFIGS = {"vit_cpu": ROOT / "config/vit_cpu.json", "vit_best": ROOT / "config/vit_best.json"}
PROFILE_GROUPS = (  # profiler op name (substring) -> what the time is spent on; the first match counts
    ("attention", ("scaled_dot_product", "_flash_attention", "softmax_backward", "_softmax")),
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::matmul")),
    ("optimizer", ("Optimizer.step", "_foreach", "adamw")),
    ("loss and metrics", ("avg_pool2d", "reflection_pad", "aten::abs", "aten::sgn", "log10")),
    ("copies and layout", ("aten::copy_", "aten::cat", "aten::stack", "aten::clone", "aten::contiguous",
                           "aten::index", "aten::constant_pad", "replication_pad")),
    ("element-wise", ("aten::mul", "aten::add", "aten::sub", "aten::div", "aten::silu", "aten::gelu",
                      "layer_norm", "aten::sum", "aten::mean", "aten::where", "aten::fill_", "aten::zero_",
                      "aten::clamp", "aten::pow", "aten::exp", "aten::sqrt", "aten::rsqrt", "aten::neg")),
)


def synthetic_video(cfg, frames):
    generator = torch.Generator().manual_seed(0)
    return torch.randint(256, (frames, cfg.model.image_height, cfg.model.image_width), generator=generator,
                         dtype=torch.uint8).numpy()


def train_seconds_per_step(cfg, steps, skip, compile_=False, threads=None, bf16=False):
    """Median wall seconds per step of model.engine.train over steps, the first skip (warm-up, compiling) left out.

    No validation (no validation or test part); one metrics.jsonl record per step gives each step's time.
    """
    run_cfg = with_overrides(cfg, {"data.validation_fraction": 0.0, "data.test_fraction": 0.0,
                                   "training.max_steps": steps, "training.log_every": 1,
                                   "training.quicksave_every": steps, "training.compile": compile_,
                                   "model.mixed_precision": bf16})
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory() as folder:
            train(run_cfg, Video.of_config(run_cfg, synthetic_video(cfg, 40 * cfg.model.batch_size)), folder,
                  log=lambda line: None)
            seconds = [json.loads(line)["seconds"] for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]
    finally:
        torch.set_num_threads(previous)
    return statistics.median(b - a for a, b in zip(seconds[skip:], seconds[skip + 1:]))


def profile_shares(cfg, steps):
    """Shares of the self CPU time of model.engine.train's steps by PROFILE_GROUPS -> (dict, seconds per step)."""
    run_cfg = with_overrides(cfg, {"data.validation_fraction": 0.0, "data.test_fraction": 0.0,
                                   "training.max_steps": steps, "training.quicksave_every": steps})
    video = Video.of_config(run_cfg, synthetic_video(cfg, 40 * cfg.model.batch_size))
    with tempfile.TemporaryDirectory() as folder:
        train(with_overrides(run_cfg, {"training.max_steps": 2}), video, folder, log=lambda line: None)  # warm-up
    with tempfile.TemporaryDirectory() as folder, profile(activities=[ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        train(run_cfg, video, folder, log=lambda line: None)
        wall = time.perf_counter() - start
    return group_profile(profiler.key_averages(), wall), wall / steps


def group_profile(events, wall):
    """Profiler key averages -> share of the wall time per PROFILE_GROUPS group, 'other ops' and 'Python and
    framework' (the wall time no op accounts for: the loop, the data order, checkpoints, dispatch)."""
    totals = {name: 0.0 for name, _ in PROFILE_GROUPS}
    other = 0.0
    threads = torch.get_num_threads()
    for event in events:
        seconds = event.self_cpu_time_total / 1e6
        group = next((name for name, keys in PROFILE_GROUPS if any(key in event.key for key in keys)), None)
        if group is None:
            other += seconds
        else:
            totals[group] += seconds
    shares = {name: seconds / wall for name, seconds in totals.items()}
    shares["other ops"] = other / wall
    shares["Python and framework"] = max(0.0, 1 - sum(shares.values()))
    shares["threads"] = threads
    return shares


def validation_seconds(cfg):
    """One validation pass as the training loop runs it (validation_batches of the val part), the baselines
    computed once before (as train does) -> (wall seconds, windows, profile shares of the pass and the baselines).

    The profile covers one more pass and the baselines' computation, so the share of the baselines shows
    what computing them at every pass would cost.
    """
    m, t = cfg.model, cfg.training
    torch.manual_seed(0)
    model = VisionTransformer.from_config(m)
    video = torch.as_tensor(synthetic_video(cfg, 700))
    windows = FrameWindows(video, m.num_frames)
    indices = evaluation_indices(len(windows), m.batch_size, t.validation_batches)

    def baselines():
        return baseline_metrics(windows, indices, m.batch_size, mean_frame_baseline(video))

    def one_pass(fixed):
        return evaluate(model, windows, batch_size=m.batch_size, max_batches=t.validation_batches,
                        baselines=fixed, loss=t.loss)

    fixed = baselines()
    times = interleaved({"val": lambda: one_pass(fixed)}, reps=2, warmup=1)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        with torch.profiler.record_function("baselines"):
            baselines()
        baseline_wall = time.perf_counter() - start
        one_pass(fixed)
        wall = time.perf_counter() - start
    shares = group_profile(profiler.key_averages(), wall)
    shares["baselines (once per run)"] = baseline_wall / wall
    return times["val"], len(indices), shares


def one_thread_pair(name, steps):
    """Steps per second of two one-thread processes training at once (each its own model.engine.train)."""
    command = [sys.executable, "-m", "scripts.bench", "--train-probe", name, str(steps)]
    processes = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"}) for _ in range(2)]
    per_step = [float(process.communicate()[0].split()[-1]) for process in processes]
    return sum(1 / seconds for seconds in per_step)


class PlainViT(tnn.Module):
    """A plain eager fp32 ViT of a config's sizes, written here as the reference the training step is held to.

    Linear patches, learned positions, the last frame's tokens zeroed, pre-norm blocks with
    scaled_dot_product_attention and a SiLU MLP, a final norm and a linear un-patching of the predicted
    frame's tokens: frames (B, T, H, W) -> the last frame (B, H, W).
    """

    def __init__(self, m):
        super().__init__()
        self.p, self.h, self.w, self.heads = m.patch_size, m.image_height // m.patch_size, m.image_width // m.patch_size, m.num_heads
        width, tokens = m.channels, m.num_frames * self.h * self.w
        self.embed = tnn.Linear(self.p ** 2, width)
        self.positions = tnn.Parameter(0.02 * torch.randn(1, tokens, width))
        self.blocks = tnn.ModuleList(tnn.ModuleDict({
            "norm1": tnn.LayerNorm(width), "qkv": tnn.Linear(width, 3 * width), "proj": tnn.Linear(width, width),
            "norm2": tnn.LayerNorm(width), "mlp": tnn.Sequential(tnn.Linear(width, 4 * width), tnn.SiLU(),
                                                                 tnn.Linear(4 * width, width))})
            for _ in range(m.layers))
        self.norm = tnn.LayerNorm(width)
        self.unpatch = tnn.Linear(width, self.p ** 2)

    def forward(self, frames):
        b, t, p, h, w = frames.shape[0], frames.shape[1], self.p, self.h, self.w
        x = self.embed(frames.reshape(b, t, h, p, w, p).permute(0, 1, 2, 4, 3, 5).reshape(b, t * h * w, p * p))
        x = torch.cat([x[:, :-h * w], torch.zeros_like(x[:, -h * w:])], dim=1) + self.positions
        for block in self.blocks:
            q, k, v = block["qkv"](block["norm1"](x)).view(b, -1, 3, self.heads, x.shape[-1] // self.heads).unbind(2)
            attended = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
            x = x + block["proj"](attended.transpose(1, 2).reshape(x.shape))
            x = x + block["mlp"](block["norm2"](x))
        pixels = self.unpatch(self.norm(x[:, -h * w:]))  # (B, h*w, p*p)
        return pixels.view(b, h, w, p, p).permute(0, 1, 3, 2, 4).reshape(b, h * p, w * p)


def plain_step(cfg, windows, sampler):
    """One training step of PlainViT: gather, forward, MSE on the predicted frame, backward, clip, AdamW."""
    torch.manual_seed(0)
    model = PlainViT(cfg.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

    def step():
        batch = windows.batch(sampler.next_batch())
        loss = F.mse_loss(model(batch), batch[:, -1])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.training.grad_clip)
        optimizer.step()
    return step


def bench_plain(table, quick):
    """The real training step of config/vit_cpu.json against a plain eager fp32 ViT of the same sizes."""
    cfg = load_config(ROOT / "config/vit_cpu.json")
    threads, reps = torch.get_num_threads(), (6 if quick else 40)
    windows = FrameWindows(synthetic_video(cfg, 40 * cfg.model.batch_size), cfg.model.num_frames)
    label = f"vit_cpu.json, batch {cfg.model.batch_size}, {threads} threads"
    times = interleaved({"plain": plain_step(cfg, windows, WindowSampler(len(windows), cfg.model.batch_size, 0)),
                         "project": project_step(cfg, windows)}, reps, warmup=3)
    table.add("train", f"{label}: plain eager fp32 ViT written in the bench, one training step", ms(times["plain"]),
              "reference")
    table.check("train", f"{label}: the training command's step (model.engine.train_step, {ms(times['project'])}) "
                "over the plain ViT", times["plain"] / times["project"], 1.0, True)
    fast = interleaved({"plain": plain_step(cfg, windows, WindowSampler(len(windows), cfg.model.batch_size, 0)),
                        "compiled": project_step(cfg, windows, compile_=True),
                        "bf16": project_step(with_overrides(cfg, {"model.mixed_precision": True}), windows)},
                       reps, warmup=5)
    for name, what in (("compiled", "training.compile"), ("bf16", "model.mixed_precision (bf16 autocast)")):
        table.check("train", f"{label}: the step with {what} ({ms(fast[name])}) over the plain ViT "
                    f"({ms(fast['plain'])})", fast["plain"] / fast[name], 1.5, True)
    table.numbers["train.plain"] = {"plain_step_s": times["plain"], "project_step_s": times["project"],
                                    "fast_plain_step_s": fast["plain"], "compiled_step_s": fast["compiled"],
                                    "bf16_step_s": fast["bf16"], "threads": threads}


MEMORISE_CONFIG = ROOT / "config/vit_memorise.json"  # width 256: where bf16 (AMX) and compiling pay
MEMORISE_TARGET = 1.5  # the fast path's step over the fp32 eager step (moonshot 2x)


def bench_memorise(table, quick):
    """The wide model's training step (model.engine.train_step) on its four paths, interleaved: fp32 or bf16
    autocast, eager or torch.compile; the config trains on the fastest."""
    cfg = load_config(MEMORISE_CONFIG)
    threads, reps = torch.get_num_threads(), (4 if quick else 20)
    windows = FrameWindows(synthetic_video(cfg, 40 * cfg.model.batch_size), cfg.model.num_frames)
    m = cfg.model
    label = (f"vit_memorise.json (width {m.channels}, {m.layers} layers, {m.num_frames} frames), batch {m.batch_size}, "
             f"{plural(threads, 'thread')}")
    paths = {"fp32 eager": (False, False), "bf16 eager": (True, False), "fp32 compiled": (False, True),
             "bf16 compiled": (True, True)}
    torch.set_flush_denormal(True)  # as model.engine.train sets it on the CPU
    times = interleaved({name: project_step(with_overrides(cfg, {"model.mixed_precision": bf16}), windows,
                                            compile_=compiled) for name, (bf16, compiled) in paths.items()},
                        reps, warmup=4)
    torch.set_flush_denormal(False)  # the other sections time fresh models, as a process starts
    table.add("memorise", f"{label}: training step, fp32 eager", ms(times["fp32 eager"]), "reference")
    for name in ("bf16 eager", "fp32 compiled"):
        table.add("memorise", f"{label}: {name} ({ms(times[name])}) over fp32 eager",
                  f"{times['fp32 eager'] / times[name]:.2f}x", "info")
    configured = f"{'bf16' if m.mixed_precision else 'fp32'} {'compiled' if cfg.training.compile else 'eager'}"
    table.check("memorise", f"{label}: the config's path, {configured} ({ms(times[configured])}), over fp32 eager",
                times["fp32 eager"] / times[configured], MEMORISE_TARGET, True)
    table.numbers["memorise"] = {f"{name.replace(' ', '_')}_step_s": value for name, value in times.items()}
    table.numbers["memorise"].update(threads=threads, configured=configured)


TRAINED_CHECKPOINT = ROOT / "results/vit/vit_cpu.ckpt"  # the published sheet model (config/vit_cpu.json)


def trained_step(cfg, windows, flush):
    """The training step on the published model's weights, with subnormal floats flushed to zero or kept.

    The learning rate is 0, so every timed step sees the trained weights (the fresh AdamW state would move them).
    """
    state = TrainState(cfg, len(windows), torch.device("cpu"), seed=0)
    state.model.load_state_dict(load_checkpoint(TRAINED_CHECKPOINT)["model"])
    state.scheduler.base_lrs = [0.0] * len(state.scheduler.base_lrs)
    net, ranks = training_forward(state.model, cfg, state.device, 1), Ranks()

    def step():
        torch.set_flush_denormal(flush)
        train_step(state, net, windows, ranks)
    return step


def bench_subnormals(table, quick):
    """What flushing subnormal floats (set by model.engine.train on the CPU) saves on a trained model's step."""
    cfg = load_config(ROOT / "config/vit_cpu.json")
    label = f"vit_cpu.json, batch {cfg.model.batch_size}, {plural(torch.get_num_threads(), 'thread')}"
    if not TRAINED_CHECKPOINT.exists():
        table.add("subnormals", f"{label}: subnormals flushed on a trained model", "skipped",
                  f"no {TRAINED_CHECKPOINT.name}")
        return
    frames, _ = gameplay.render_gameplay(40 * cfg.model.batch_size, gameplay.DEFAULT_SEED)
    windows = FrameWindows(torch.as_tensor(frames), cfg.model.num_frames)
    times = interleaved({"kept": trained_step(cfg, windows, False), "flushed": trained_step(cfg, windows, True)},
                        6 if quick else 30, warmup=3)
    torch.set_flush_denormal(False)  # the other sections time fresh models, as a process starts
    table.add("subnormals", f"{label}: the step of the trained model ({TRAINED_CHECKPOINT.name}) with subnormal floats "
              f"flushed to zero ({ms(times['flushed'])}) over kept ({ms(times['kept'])})",
              f"{times['kept'] / times['flushed']:.2f}x", "info")
    table.numbers["train.subnormals"] = {"kept_step_s": times["kept"], "flushed_step_s": times["flushed"]}


def bench_train(table, quick):
    bench_plain(table, quick)
    threads = torch.get_num_threads()
    steps, skip = (8, 3) if quick else (40, 10)
    for name, path in TRAIN_CONFIGS.items():
        cfg = load_config(path)
        label = f"{name}.json, batch {cfg.model.batch_size}"
        shares, profiled = profile_shares(cfg, 4 if quick else 12)
        table.add("train", f"{label}: profile of the training loop ({threads} threads, {ms(profiled)} per step "
                  "under the profiler)", ", ".join(f"{key} {100 * value:.0f}%" for key, value in shares.items()
                                                  if key != "threads"), "info")
        plain = train_seconds_per_step(cfg, steps, skip)
        compiled = train_seconds_per_step(cfg, steps + (10 if quick else 20), skip + (10 if quick else 20),
                                          compile_=True)
        table.add("train", f"{label}: training step, fp32 eager, {threads} threads", ms(plain), "reference")
        table.check("train", f"{label}: training.compile ({ms(compiled)} per step) over fp32 eager",
                    plain / compiled, 2, True)
        bf16 = train_seconds_per_step(cfg, steps, skip, bf16=True)
        table.add("train", f"{label}: model.mixed_precision (bf16 autocast, {ms(bf16)} per step) over fp32 eager",
                  f"{plain / bf16:.2f}x", "info")
        one_thread = {variant: train_seconds_per_step(cfg, steps + extra, skip + extra, compile_=variant, threads=1)
                      for variant, extra in ((False, 0), (True, 10 if quick else 20))}
        table.add("train", f"{label}: training.compile over fp32 eager at 1 thread ({ms(one_thread[False])} vs "
                  f"{ms(one_thread[True])} per step)", f"{one_thread[False] / one_thread[True]:.2f}x", "info")
        pair = one_thread_pair(name, steps)
        table.add("train", f"{label}: two 1-thread processes ({pair:.2f} steps/s together) over one "
                  f"{threads}-thread process", f"{pair * plain:.2f}x", "info")
        val, windows, val_shares = validation_seconds(cfg)
        table.add("train", f"{label}: profile of the baselines' computation (once per run) and one validation pass "
                  f"({windows} windows)", ", ".join(f"{key} {100 * value:.0f}%" for key, value in val_shares.items()
                                                   if key != "threads"), "info")
        share = val / (val + cfg.training.validate_every * plain)
        table.check("train", f"{label}: validation pass ({windows} windows, {ms(val)}) share of training at "
                    f"validate_every {cfg.training.validate_every}", 100 * share, 5, False, unit="%")
        table.numbers[f"train.{name}"] = {"profile": shares, "eager_step_s": plain, "compiled_step_s": compiled,
                                          "bf16_step_s": bf16, "one_thread_eager_step_s": one_thread[False],
                                          "one_thread_compiled_step_s": one_thread[True],
                                          "one_thread_pair_steps_per_s": pair, "validation_s": val,
                                          "validation_profile": val_shares,
                                          "validation_windows": windows, "validation_share": share}


# --- quality ------------------------------------------------------------------------------------------------

QUALITY_CONFIG = ROOT / "config/vit_cpu.json"  # the sheet's model and its selected recipe
QUALITY_MARGIN_DB = 2.0  # the bar: copy-last + this, on the same validation windows
# (batch size, bf16 autocast): the config's batch in fp32 first (the reference), then the fast paths.
QUALITY_VARIANTS = ((16, False), (16, True), (32, False))


def time_to_quality(cfg, frames, batch_size, validate_every, validation_batches, max_samples, compile_=False,
                    bf16=False):
    """Train cfg at batch_size (learning rate scaled by sqrt(batch_size / configured batch), warm-up and
    budget kept in samples) until the validation PSNR reaches copy-last + QUALITY_MARGIN_DB.

    Returns a dict: reached (bool), step, samples, train_seconds (wall time from the start to that step, the
    validation passes left out; compiling, the baselines' first computation and best.ckpt saves included),
    seconds (with the validation passes), psnr, bar (the threshold).
    """
    ratio = batch_size / cfg.model.batch_size
    run_cfg = with_overrides(cfg, {
        "model.batch_size": batch_size, "learning_rate": cfg.learning_rate * ratio ** 0.5,
        "training.warmup_steps": max(1, round(cfg.training.warmup_steps / ratio)),
        "training.max_steps": max(1, max_samples // batch_size), "training.compile": compile_,
        "model.mixed_precision": bf16,
        "training.validate_every": max(1, round(validate_every / ratio)),
        "training.validation_batches": max(1, round(validation_batches / ratio)),  # the same windows
        "training.log_every": 10 ** 9, "training.quicksave_every": 10 ** 9})
    found = {}

    def on_record(record):
        if "val_psnr" in record and record["val_psnr"] >= record["val_copy_last_psnr"] + QUALITY_MARGIN_DB:
            found.update(record)
            stop.request("quality reached")

    stop = StopFlag()
    with tempfile.TemporaryDirectory() as folder:
        summary = train(run_cfg, Video.of_config(run_cfg, frames), folder, ranks=Ranks(requested=stop),
                        log=lambda line: None, on_record=on_record)
        records = [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]
    last = found or records[-1]
    # A record's seconds are taken before its own validation pass: the passes of the records before it count.
    validation = sum(record.get("val_seconds", 0.0) for record in records if record["step"] < last["step"])
    return {"reached": bool(found), "step": last["step"], "samples": last["step"] * batch_size,
            "seconds": last["seconds"], "train_seconds": last["seconds"] - validation,
            "psnr": last.get("val_psnr"), "bar": last.get("val_copy_last_psnr", math.nan) + QUALITY_MARGIN_DB,
            "learning_rate": run_cfg.learning_rate, "steps_budget": summary["total_steps"]}


def bench_quality(table, quick):
    cfg = load_config(QUALITY_CONFIG)
    threads = torch.get_num_threads()
    frames, _ = gameplay.render_gameplay(1200 if quick else 6000, gameplay.DEFAULT_SEED)
    if quick:
        settings = dict(validate_every=4, validation_batches=2, max_samples=8 * cfg.model.batch_size)
    else:  # 160 validation windows every 800 samples (the bar is seen at most 800 samples late); at most
        # 64 000 samples (4000 steps of 16)
        settings = dict(validate_every=50, validation_batches=10, max_samples=4000 * cfg.model.batch_size)
    results = {}
    for batch_size, bf16 in QUALITY_VARIANTS[:2] if quick else QUALITY_VARIANTS:
        name = f"batch {batch_size}{', bf16 autocast' if bf16 else ''}"
        result = results[name] = time_to_quality(cfg, frames, batch_size, bf16=bf16, **settings)
        what = (f"passed {result['bar']:.2f} dB at step {result['step']} ({result['samples']} windows, "
                f"{result['psnr']:.2f} dB)" if result["reached"] else
                f"did not pass {result['bar']:.2f} dB in {result['step']} steps")
        table.add("quality", f"vit_cpu.json at {name}, learning rate {result['learning_rate']:.2e}, eager, {threads} "
                  f"threads: {what}; wall seconds of training (+ validation passes "
                  f"{result['seconds'] - result['train_seconds']:.0f} s)",
                  f"{result['train_seconds']:.0f} s" if result["reached"] else "not reached", "info")
    reference = next(iter(results.values()))
    for name, result in list(results.items())[1:]:
        if result["reached"] and reference["reached"] and min(result["train_seconds"], reference["train_seconds"]) > 0:
            table.add("quality", f"speed-up in time to quality of {name} over the reference (its seconds / these)",
                      f"{reference['train_seconds'] / result['train_seconds']:.2f}x", "info")
    table.numbers["quality"] = results


# --- predict -----------------------------------------------------------------------------------------------


def bench_predict(table, quick):
    cfg = load_config(VIT_CONFIGS["vit_cpu"])
    torch.manual_seed(0)
    model = VisionTransformer.from_config(cfg.model).eval()
    generator = torch.Generator().manual_seed(0)
    context = torch.rand(1, cfg.model.num_frames - 1, cfg.model.image_height, cfg.model.image_width,
                         generator=generator)
    steps = 10 if quick else 50
    with torch.no_grad():
        seconds = interleaved({"rollout": lambda: rollout(model.predict_next_frame, context, steps)},
                              reps=3 if quick else 5, warmup=1)
    fps = steps / seconds["rollout"]
    table.add("predict", f"closed-loop rollout vit_cpu, 1 sample, {steps} steps", f"{fps:.0f} frames/s", "info")
    table.numbers["predict.fps"] = fps


# --- GPU ---------------------------------------------------------------------------------------------------


def bench_gpu(table, quick):
    if not torch.cuda.is_available():
        table.add("gpu", "CUDA not available on this machine: bf16 autocast, fused attention, "
                  "torch.compile not measured", "skipped")
        return
    device = torch.device("cuda")
    sync = torch.cuda.synchronize
    results = {}
    for variant in ("fp32 hand-written", "bf16 sdpa", "bf16 sdpa compiled"):
        cfg = with_overrides(load_config(VIT_CONFIGS["vit"]), {"model.fused_attention": variant != "fp32 hand-written",
                                                               "model.mixed_precision": "bf16" in variant})
        windows = FrameWindows(synthetic_video(cfg, VIDEO_FRAMES), cfg.model.num_frames, device=device)
        step = project_step(cfg, windows, compile_="compiled" in variant, device=device)
        results[variant] = interleaved({variant: step}, reps=10 if quick else 50, warmup=3, sync=sync)[variant]
        table.add("gpu", f"vit.json step, batch {cfg.model.batch_size}, {variant}", ms(results[variant]))
    base = results["fp32 hand-written"]
    for variant in ("bf16 sdpa", "bf16 sdpa compiled"):
        table.add("gpu", f"speed-up {variant} over fp32 hand-written", f"{base / results[variant]:.2f}x", "info")
    table.numbers["gpu"] = results


# --- main --------------------------------------------------------------------------------------------------


def machine():
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    # With autogroup scheduling, CPU time is shared between busy sessions, not processes: on a shared machine
    # the processes of `main.py --jobs 2` together get one session's share (see docs/bench.md).
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "cuda": torch.cuda.is_available(),
            "autogroup": autogroup.exists() and autogroup.read_text().strip() == "1"}


def parse_args(argv=None):
    parser = CliParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small repetition counts (seconds, not minutes)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    parser.add_argument("--memory-probe", nargs=2, metavar=("CONFIG", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--train-probe", nargs=2, metavar=("CONFIG", "STEPS"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.memory_probe:
        memory_probe(args.memory_probe[0], int(args.memory_probe[1]))
        return 0
    if args.train_probe:  # one of one_thread_pair's processes: its seconds per step
        steps = int(args.train_probe[1])
        print(train_seconds_per_step(load_config(TRAIN_CONFIGS[args.train_probe[0]]), steps, steps // 4))
        return 0
    info = machine()
    load_before = os.getloadavg()
    table = Table()
    start = time.perf_counter()
    for section in args.only:
        globals()[f"bench_{section}"](table, args.quick)
    load_after = os.getloadavg()
    info.update(load_before=load_before, load_after=load_after, seconds=time.perf_counter() - start,
                quick=args.quick)
    print(f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, {info['threads']} threads "
          f"(Exercise 1 steps: 1 thread, as main.py). Load average (1/5/15 min) before "
          f"{'/'.join(f'{x:.2f}' for x in load_before)}, after {'/'.join(f'{x:.2f}' for x in load_after)}. "
          f"{'Kernel autogroup scheduling on. ' if info['autogroup'] else ''}"
          f"{'Quick run' if args.quick else 'Full run'}, {info['seconds']:.0f} s.\n")
    print(table.markdown())
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"machine": info, "rows": table.rows, "numbers": table.numbers}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
