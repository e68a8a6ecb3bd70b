"""Train or validate the predictive ViT (Exercise 2).

    python -m model.main -cfg config/vit.json --train
    python -m model.main -cfg config/vit.json --train --load out/vit.device0/quicksave.ckpt   # resume
    python -m model.main -cfg config/vit.json --train --resume     # resume from the run's quicksave.ckpt, if any
    python -m model.main -cfg config/vit.json --validate --load out/vit.device0/best.ckpt
    python -m model.main -cfg config/vit.json --train --num-gpus 4                    # 4 local processes (DDP)
    torchrun --nproc_per_node 4 -m model.main -cfg config/vit.json --train            # the same, via torchrun

Several processes (torchrun's RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT in the
environment, or --num-gpus N, which starts N local processes itself with --port) train with
DistributedDataParallel: NCCL on GPUs (process k on cuda:device+k), gloo on the CPU. Only rank 0
prints, logs and writes; the checkpoints are those of one process.

A run writes into out/{model_path}.device{N}[.runK]/: cfg.json, metrics.jsonl, quicksave.ckpt,
best.ckpt (and validation.json for --validate).

Ctrl-C, SIGTERM or SIGUSR1 finish the current step, write quicksave.ckpt and exit with 128 + the
signal's number (130, 143, 138), so a job script can tell a stopped run from a finished one (0);
a second Ctrl-C (SIGINT) aborts at once. Exit codes otherwise: 2 for a bad config or bad flags, 1 for an
unreadable video or checkpoint, a non-finite loss or an unwritable output folder.
"""
import argparse
import multiprocessing
import multiprocessing.connection
import os
import shlex
import signal
import sys
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import torch
import torch.distributed as dist

from model.checkpoint import CheckpointError
from model.config import ConfigError, load_config, with_overrides
from model.data import (DataError, FrameWindows, check_frames, load_frames, needs_default_video,
                        resolve_data_path, split_frames)
from model.engine import (QUICKSAVE, StopFlag, TrainingError, describe_metrics, evaluate, load_model,
                          mixed_precision, stop_code, train, write_json_atomically)
from model.metrics import mean_frame_baseline
from model.scripts import positive_int

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1")


class CliParser(argparse.ArgumentParser):
    """argparse, but a usage error ends with the project's one line `error: <message>` (exit 2)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def parse_args(argv=None):
    parser = CliParser(prog="python -m model.main", allow_abbrev=False,
                       description="Train or validate the predictive Vision Transformer.")
    parser.add_argument("-cfg", "--cfg", required=True, metavar="CONFIG", help="config file (.json or .yaml)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("-train", "--train", action="store_true", help="train (resumes with --load)")
    mode.add_argument("-validate", "--validate", action="store_true",
                      help="evaluate --load CKPT on the held-out part of the video")
    parser.add_argument("-load", "--load", metavar="CKPT", help="checkpoint to resume from or to validate")
    parser.add_argument("-resume", "--resume", action="store_true",
                        help="with --train: resume from the run folder's quicksave.ckpt when there is one "
                             "(for job scripts that are requeued)")
    parser.add_argument("-device", "--device", type=int, default=0, metavar="N",
                        help="CUDA device index, also part of the run's folder name (CPU without CUDA)")
    parser.add_argument("-seed", "--seed", type=int, default=1234, help="seed of weights, data order and masks")
    parser.add_argument("-n", type=int, dest="run_number", metavar="N", help="append .runN to the run's folder")
    parser.add_argument("-scratch", "--scratch", metavar="DIR",
                        help="folder holding the data file: a leading './' of data.hdf5_file becomes DIR/")
    parser.add_argument("-num-gpus", "--num-gpus", type=int, default=1, metavar="N",
                        help="local processes to train with (DDP; GPUs device..device+N-1, or CPU processes "
                             "without CUDA)")
    parser.add_argument("-port", "--port", type=int, default=29500,
                        help="port of the process group that --num-gpus starts")
    parser.add_argument("-float32-matmul-precision", "--float32-matmul-precision", default="highest",
                        choices=("highest", "high", "medium"), help="torch.set_float32_matmul_precision")
    parser.add_argument("-max-steps", "--max-steps", type=positive_int, metavar="N",
                        help="optimizer steps of the run (overrides training.max_steps)")
    parser.add_argument("-out-dir", "--out-dir", default="out", metavar="DIR", help="where run folders go")
    args = parser.parse_args(argv)
    if args.num_gpus < 1:
        parser.error(f"--num-gpus must be at least 1, got {args.num_gpus}")
    if args.num_gpus > 1 and args.validate:
        parser.error("--validate runs in one process; drop --num-gpus")
    if args.validate and args.load is None:
        parser.error("--validate needs --load CKPT (e.g. out/vit.device0/best.ckpt)")
    if args.resume and (args.load is not None or not args.train):
        parser.error("--resume goes with --train and without --load (it picks the run folder's quicksave.ckpt)")
    return args


def main(argv=None):
    """Run the command line; returns the exit code."""
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    if args.num_gpus > 1 and "WORLD_SIZE" not in os.environ:
        return spawn(args.num_gpus, args.port, argv)
    if int(os.environ.get("RANK", 0)) > 0:  # only rank 0 speaks; errors still go to stderr
        with open(os.devnull, "w") as silent, redirect_stdout(silent):
            return guarded_run(args, argv)
    return guarded_run(args, argv)


def guarded_run(args, argv):
    """run(), with the project's errors turned into one line on stderr and an exit code."""
    try:
        return run(args, argv)
    except ConfigError as error:
        return _fail(error, 2)
    except (DataError, CheckpointError, TrainingError) as error:
        return _fail(error, 1)
    except OSError as error:  # e.g. an output folder that cannot be written
        return _fail(f"{error.strerror or error}: {error.filename}" if error.filename else error, 1)
    except KeyboardInterrupt:
        return _fail("interrupted; nothing was saved after the last checkpoint", 130)


def run(args, argv):
    cfg = load_config(args.cfg)
    if args.max_steps is not None:
        cfg = with_overrides(cfg, {"training.max_steps": args.max_steps})
    torch.set_float32_matmul_precision(args.float32_matmul_precision)
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world_size > 1 and args.validate:
        raise ConfigError("--validate runs in one process; start it without torchrun")
    device = pick_device(args.device + int(os.environ.get("LOCAL_RANK", 0)))
    if cfg.model.mixed_precision and device.type != "cuda":
        print("note: model.mixed_precision applies on CUDA only; the CPU trains in float32")
    frames = load_video(cfg, args.scratch)
    run_dir = Path(args.out_dir) / run_name(cfg, args.device, args.run_number)
    if args.validate:
        return validate(cfg, frames, run_dir, args.load, device)

    resume = args.load
    if args.resume and (run_dir / QUICKSAVE).exists():
        resume = run_dir / QUICKSAVE
        print(f"resuming from {resume}")
    elif resume is None and (run_dir / QUICKSAVE).exists():
        print(f"note: {run_dir} holds an earlier run; starting over (continue it with "
              f"--load {run_dir / QUICKSAVE} or --resume)")
    stop = StopFlag()
    with stop_on_signals(stop), process_group(device, world_size):
        summary = train(cfg, frames, run_dir, device=device, seed=args.seed, resume=resume, stop=stop,
                        rank=rank, world_size=world_size)
    if summary["stopped"]:
        print(f"stopped by {summary['stopped']} after step {summary['step']} of {summary['total_steps']}; "
              f"saved {summary['quicksave']}")
        print(f"resume with: python -m model.main {resume_command(argv, summary['quicksave'])}")
        code = stop_code(summary["stopped"])
        return 128 + code if code > 1 else 1
    print(f"trained {summary['step']} steps in {summary['seconds']:.0f} s; run folder {run_dir}")
    if summary["val"] is not None:
        print(f"final {describe_metrics(summary['val'])}")
    return 0


def validate(cfg, frames, run_dir, checkpoint_path, device):
    """Evaluate a checkpoint on the whole held-out part; print and write validation.json."""
    model, payload = load_model(checkpoint_path, cfg.model, device)
    train_frames, val_frames = split_frames(frames, cfg.data.validation_fraction, cfg.model.num_frames)
    if val_frames is None:
        raise ConfigError("config key 'data.validation_fraction': is 0, so no part of the video is held "
                          "out to validate on")
    windows = FrameWindows(val_frames, cfg.model.num_frames, device, first_frame=len(train_frames))
    autocast, _ = mixed_precision(device, cfg.model.mixed_precision)
    metrics = evaluate(model, windows, batch_size=cfg.model.batch_size,
                       mean_frame=mean_frame_baseline(train_frames).to(device), autocast=autocast,
                       loss=cfg.training.loss)
    print(f"{checkpoint_path} (step {payload['step']}): {describe_metrics(metrics)}")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomically(run_dir / "validation.json",
                          {"checkpoint": str(checkpoint_path), "step": payload["step"], **metrics})
    print(f"wrote {run_dir / 'validation.json'}")
    return 0


def load_video(cfg, scratch=None):
    """The config's video as uint8 (N, H, W), checked against the model section.

    The built-in gameplay video is rendered on first use when the config names the default file.
    """
    path = resolve_data_path(cfg.data.hdf5_file, scratch)
    if needs_default_video(cfg.data.hdf5_file, path):
        from model import gameplay
        print(f"{path} not found: rendering the built-in gameplay video ({gameplay.DEFAULT_NUM_FRAMES} frames, "
              f"seed {gameplay.DEFAULT_SEED}) into it")
        gameplay.ensure_default_video(path)
    frames = load_frames(path, num_workers=cfg.num_workers)
    check_frames(frames, path, cfg.model)
    return frames


def pick_device(index):
    """cuda:index when CUDA is available, else the CPU."""
    if not torch.cuda.is_available():
        print("note: CUDA is not available; running on the CPU")
        return torch.device("cpu")
    if not 0 <= index < torch.cuda.device_count():
        raise ConfigError(f"--device {index}: there are {torch.cuda.device_count()} CUDA devices")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def run_name(cfg, device, run_number=None):
    """{model_path}.device{N}[.runK], as in the course template."""
    return f"{cfg.model_path}.device{device}" + (f".run{run_number}" if run_number is not None else "")


def resume_command(argv, checkpoint):
    """The flags of this run with --load pointing at checkpoint."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-load", "--load"):
            skip = True
        elif not arg.startswith(("-load=", "--load=")):
            kept.append(arg)
    return shlex.join(kept + ["--load", str(checkpoint)])


@contextmanager
def process_group(device, world_size):
    """torch.distributed for world_size > 1 (NCCL on CUDA, gloo on the CPU; rendezvous from the environment)."""
    if world_size == 1:
        yield
        return
    try:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    except (RuntimeError, ValueError) as error:  # e.g. the port is taken, or a bad MASTER_ADDR
        detail = " ".join(str(error).split())[:200]
        raise TrainingError(f"the process group on {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} "
                            f"could not start ({detail}); is the port in use? (--port)") from None
    try:
        yield
    finally:
        dist.destroy_process_group()


def spawn(num_processes, port, argv):
    """Run this command in num_processes local processes, as torchrun would -> rank 0's exit code.

    The processes get their own process group, so a Ctrl-C reaches them once, forwarded from here;
    SIGTERM and SIGUSR1 are forwarded too, so every rank quicksaves-and-stops together.
    """
    context = multiprocessing.get_context("spawn")
    shared = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(num_processes),
              "LOCAL_WORLD_SIZE": str(num_processes)}
    processes = [context.Process(target=_spawned, args=(argv, {**shared, "RANK": str(rank), "LOCAL_RANK": str(rank)}))
                 for rank in range(num_processes)]
    for process in processes:
        process.start()

    def forward(signum, frame):
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signum)

    signals = [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]
    previous = {number: signal.signal(number, forward) for number in signals}
    try:
        running = list(processes)
        while running:
            multiprocessing.connection.wait([process.sentinel for process in running])
            running = [process for process in running if process.is_alive()]
            # A rank that failed (not one that stopped on a signal, 128 + N) leaves the others waiting
            # in a collective for ever; only rank 0 writes, and its last quicksave is on disk.
            failed = any(process.exitcode not in (None, 0) and not 128 < process.exitcode < 160
                         for process in processes)
            if failed:
                for process in running:
                    process.kill()
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
    codes = [process.exitcode for process in processes]
    if codes[0] != 0:
        return codes[0] if codes[0] > 0 else 128 - codes[0]  # a negative exit code: killed by that signal
    return 0 if all(code == 0 for code in codes) else 1


def _spawned(argv, environment):
    os.setpgrp()
    os.environ.update(environment)
    sys.exit(main(argv))


@contextmanager
def stop_on_signals(stop):
    """While active, SIGINT/SIGTERM/SIGUSR1 ask the loop to stop after its step; a second Ctrl-C aborts.

    A repeated SIGTERM or SIGUSR1 (a cluster may send one to every process and the job script forward
    another) keeps the request to quicksave.
    """
    def handler(signum, frame):
        if stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not stop:
            stop.request(signal.Signals(signum).name)

    signals = [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]
    previous = {number: signal.signal(number, handler) for number in signals}
    try:
        yield stop
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def _fail(message, code):
    print(f"error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
