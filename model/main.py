"""Train or validate the predictive ViT (Exercise 2).

    python -m model.main -cfg config/vit.json --train
    python -m model.main -cfg config/vit.json --train --resume     # continue from the run's quicksave.ckpt, if any
    python -m model.main -cfg config/vit.json --train --load CKPT  # continue from another checkpoint
    python -m model.main -cfg config/vit.json --validate --load out/vit.device0/best.ckpt
    python -m model.main -cfg config/vit.json --train --num-gpus 4                    # 4 local processes (DDP)
    torchrun --nproc_per_node 4 -m model.main -cfg config/vit.json --train            # the same, via torchrun

Several processes (torchrun's RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT in the
environment, or --num-gpus N, which starts them through torchrun's launcher with --port) train with
DistributedDataParallel: NCCL on GPUs (process k on cuda:device+k), gloo on the CPU. Only rank 0
prints, logs and writes; the checkpoints are those of one process.

A run writes into out/{model_path}.device{N}[.runK]/: cfg.json, metrics.jsonl, quicksave.ckpt,
best.ckpt (from the first validation on). --validate writes validation_{split}.json next to the checkpoint
(or to --output FILE). After its first few steps a run prints how long a step takes and how long the rest
will take; on the CPU, for a run of more than an hour, it points to config/vit_cpu.json.

Ctrl-C, SIGTERM or SIGUSR1 finish the current step, write quicksave.ckpt and exit with 128 + the
signal's number (130, 143, 138), so a job script can tell a stopped run from a finished one (0);
a second Ctrl-C (SIGINT) aborts at once. Exit codes otherwise: 2 for a bad config or bad flags, 1 for an
unreadable video or checkpoint, a non-finite loss or an unwritable output folder.
"""
import os
import shlex
import signal
import subprocess
import sys
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from model.checkpoint import CheckpointError, load_checkpoint
from model.cli import STOP_SIGNALS, CliParser, describe_os_error, fail, pick_device, positive_int, stop_on_signals
from model.config import ConfigError, load_config, with_overrides
from model.data import PART_NAMES, PARTS, DataError, open_video
from model.distributed import Ranks, StopFlag, stop_code
from model.engine import (BEST, FINAL, METRICS, QUICKSAVE, TrainingError, load_model, mixed_precision, run_name,
                          step_flops, train)
from model.evaluate import describe_metrics, evaluate
from model.files import write_json_atomically
from model.progress import SPEED_STEPS
from model.text import plural

CPU_CONFIG = "config/vit_cpu.json"
CPU_ADVICE_SECONDS = 3600  # a CPU run that would take longer than this is pointed to CPU_CONFIG



def parse_args(argv=None):
    parser = CliParser(prog="python -m model.main",
                       description="Train or validate the predictive Vision Transformer.")
    parser.add_argument("--cfg", "-cfg", required=True, metavar="CONFIG", help="config file (.json or .yaml)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--train", "-train", action="store_true", help="train (a stopped run continues with --resume)")
    mode.add_argument("--validate", "-validate", action="store_true",
                      help="evaluate --load CKPT on a part of the video (--split)")
    parser.add_argument("--load", "-load", metavar="CKPT",
                        help="checkpoint to validate, or to continue training from (its own run: --resume)")
    parser.add_argument("--resume", "-resume", action="store_true",
                        help="with --train: resume from the run folder's quicksave.ckpt when there is one "
                             "(for job scripts that are requeued)")
    parser.add_argument("--device", "-device", type=int, default=0, metavar="N",
                        help="CUDA device index, also part of the run's folder name (CPU without CUDA)")
    parser.add_argument("--seed", "-seed", type=int, default=1234, help="seed of weights, data order and masks")
    parser.add_argument("-n", type=int, dest="run_number", metavar="N", help="append .runN to the run's folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="with --train: start over in a run folder that holds a run (its checkpoints are removed)")
    parser.add_argument("--scratch", "-scratch", metavar="DIR",
                        help="folder holding the data file: a leading './' of data.hdf5_file becomes DIR/")
    parser.add_argument("--num-gpus", "-num-gpus", type=int, default=1, metavar="N",
                        help="local processes to train with (DDP; GPUs device..device+N-1, or CPU processes "
                             "without CUDA)")
    parser.add_argument("--port", "-port", type=int, default=29500,
                        help="port of the process group that --num-gpus starts")
    parser.add_argument("--float32-matmul-precision", "-float32-matmul-precision", default="highest",
                        choices=("highest", "high", "medium"), help="torch.set_float32_matmul_precision")
    parser.add_argument("--max-steps", "-max-steps", type=positive_int, metavar="N",
                        help="optimizer steps of the run (overrides training.max_steps)")
    parser.add_argument("--out-dir", "-out-dir", default="out", metavar="DIR", help="where run folders go")
    parser.add_argument("--run-dir", "-run-dir", metavar="DIR",
                        help="the run folder itself (instead of OUT_DIR/{model_path}.device{N}[.runK])")
    parser.add_argument("--split", "-split", choices=PARTS, default="val",
                        help="with --validate: the part of the video to evaluate on (test: final evaluations only)")
    parser.add_argument("--output", "-output", metavar="FILE",
                        help="with --validate: where the metrics go (default: validation_{split}.json next to "
                             "the checkpoint)")
    args = parser.parse_args(argv)
    if args.num_gpus < 1:
        parser.error(f"--num-gpus must be at least 1, got {args.num_gpus}")
    if args.num_gpus > 1 and args.validate:
        parser.error("--validate runs in one process; drop --num-gpus")
    if args.validate and args.load is None:
        parser.error("--validate needs --load CKPT (e.g. out/vit.device0/best.ckpt)")
    if args.resume and (args.load is not None or not args.train):
        parser.error("--resume goes with --train and without --load (it picks the run folder's quicksave.ckpt)")
    if args.overwrite and (args.resume or args.load is not None or not args.train):
        parser.error("--overwrite goes with --train and without --resume or --load (it starts the run over)")
    return args


def main(argv=None):
    """Run the command line; returns the exit code."""
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    if args.num_gpus > 1 and "WORLD_SIZE" not in os.environ:
        return launch(args.num_gpus, args.port, argv)
    if int(os.environ.get("RANK", 0)) > 0:  # only rank 0 speaks; errors still go to stderr
        with open(os.devnull, "w") as silent, redirect_stdout(silent):
            return guarded_run(args, argv)
    return guarded_run(args, argv)


def guarded_run(args, argv):
    """run(), with the project's errors turned into one line on stderr and an exit code."""
    try:
        return run(args, argv)
    except (ConfigError, RunFolderTaken) as error:
        return fail(error, 2)
    except (DataError, CheckpointError, TrainingError) as error:
        return fail(error, 1)
    except OSError as error:  # e.g. an output folder that cannot be written
        return fail(describe_os_error(error), 1)
    except KeyboardInterrupt:
        return fail("interrupted; nothing was saved after the last checkpoint (continue from it with --resume)", 130)


def run(args, argv):
    cfg = load_config(args.cfg)
    if args.max_steps is not None:
        cfg = with_overrides(cfg, {"training.max_steps": args.max_steps})
    torch.set_float32_matmul_precision(args.float32_matmul_precision)
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world_size > 1 and args.validate:
        raise ConfigError("--validate runs in one process; start it without torchrun")
    device = pick_device(args.device + int(os.environ.get("LOCAL_RANK", 0)))
    video = open_video(cfg, args.scratch).to(device)  # a video too short for its split is named here
    run_dir = Path(args.run_dir) if args.run_dir else Path(args.out_dir) / run_name(cfg, args.device, args.run_number)
    if args.validate:
        return validate(cfg, video, args.load, args.split, args.output)

    resume = args.load
    if args.resume and (run_dir / QUICKSAVE).exists():
        resume = run_dir / QUICKSAVE
    elif resume is None and held_run(run_dir):
        if not args.overwrite:
            raise RunFolderTaken(refusal(run_dir, cfg, args))
        print(f"--overwrite: starting {run_dir} over (the earlier run's checkpoints and metrics are removed)")
        for name in held_run(run_dir) + [METRICS, "cfg.json"]:
            (run_dir / name).unlink(missing_ok=True)
    if resume is not None:
        print(f"resuming from {resume} (step {load_checkpoint(resume)['step']})")
    stop = StopFlag()
    with stop_on_signals(stop), process_group(device, world_size):
        summary = train(cfg, video, run_dir, seed=args.seed, resume=resume, ranks=Ranks(rank, world_size, stop),
                        on_speed=lambda seconds, left: tqdm.write(speed_note(seconds, left, device, args.cfg, cfg)))
    if summary["stopped"]:
        print(f"stopped by {summary['stopped']} after step {summary['step']} of {summary['total_steps']}; "
              f"saved {summary['quicksave']}")
        if os.environ.get("SLURM_JOB_ID"):  # its --scratch folder goes with the job: the job script resumes it
            print("resume: submit the job again (sbatch train.sbatch); it continues from there with --resume")
        else:
            print(f"resume with: python -m model.main {resume_command(argv)}")
        code = stop_code(summary["stopped"])
        return 128 + code if code > 1 else 1
    print(f"trained {plural(summary['step'], 'step')} in {summary['seconds']:.0f} s; run folder {run_dir}")
    if summary["val"] is not None:
        print(f"final {describe_metrics(summary['val'])}")
    return 0


class RunFolderTaken(Exception):
    """A training command pointed at a run folder that holds a run, without saying what to do with it."""


def held_run(run_dir):
    """The checkpoints of an earlier run in run_dir (a training command must not destroy them unasked)."""
    return [name for name in (QUICKSAVE, BEST, FINAL) if (run_dir / name).exists()]


def refusal(run_dir, cfg, args):
    """The one line that refuses to start over in a run folder that holds a run, with the three ways on."""
    step = load_checkpoint(run_dir / QUICKSAVE)["step"] if (run_dir / QUICKSAVE).exists() else None
    number = next(k for k in range(2, 10_000)
                  if not (Path(args.out_dir) / run_name(cfg, args.device, k)).exists())
    where = f" (step {step})" if step is not None else ""
    return (f"{run_dir} holds a run{where}: continue it with --resume, start another beside it with -n {number}, "
            f"or start it over with --overwrite")


def validate(cfg, video, checkpoint_path, split="val", output=None):
    """Evaluate a checkpoint on every window of one part of the video (on the video's device); print and write
    the metrics.

    The metrics go to ``output`` (default: validation_{split}.json next to the checkpoint).
    """
    model, payload = load_model(checkpoint_path, cfg.model, video.device)
    autocast, _ = mixed_precision(video.device, cfg.model.mixed_precision)
    metrics = evaluate(model, video.windows(split), batch_size=cfg.model.batch_size, mean_frame=video.mean_frame,
                       autocast=autocast, loss=cfg.training.loss, player_box=video.player_box, progress=True)
    print(f"{checkpoint_path} (step {payload['step']}), {PART_NAMES[split]} part "
          f"({plural(metrics['windows'], 'window')}): {describe_metrics(metrics)}")
    output = Path(output) if output is not None else Path(checkpoint_path).with_name(f"validation_{split}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(output, {"checkpoint": str(checkpoint_path), "step": payload["step"],
                                   "seed": payload.get("seed"), "split": split, **metrics})
    print(f"wrote {output}")
    return 0


def speed_note(seconds_per_step, steps_left, device, config_path, cfg):
    """The line printed after the first timed steps: the median time of a step and the time of the rest of the
    run at that speed; on the CPU, for a run of more than CPU_ADVICE_SECONDS, also what to run instead and how long that
    would take here (this step's time scaled by the two configs' FLOP per step: an estimate)."""
    line = (f"note: a step takes {seconds_per_step:.2f} s on {device} (median of {SPEED_STEPS} steps): "
            f"about {describe_duration(seconds_per_step * steps_left)} for the {plural(steps_left, 'step')} left")
    is_cpu_config = Path(config_path).resolve() == Path(CPU_CONFIG).resolve()
    if device.type == "cpu" and seconds_per_step * steps_left > CPU_ADVICE_SECONDS and not is_cpu_config:
        cpu_cfg = load_config(CPU_CONFIG)
        estimate = seconds_per_step * step_flops(cpu_cfg) / step_flops(cfg) * cpu_cfg.training.max_steps
        line += (f"; for a CPU use -cfg {CPU_CONFIG} (the same model at CPU size): its "
                 f"{plural(cpu_cfg.training.max_steps, 'step')} would take about {describe_duration(estimate)} here "
                 f"(estimated from the FLOP per step)")
    return line


def describe_duration(seconds):
    """'40 s', '12 min', '3.5 h', '8.7 days'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def resume_command(argv):
    """The flags of this run with --resume, which continues from the run folder's quicksave.ckpt (without --load,
    which --resume replaces, and --overwrite, which would start it over)."""
    return shlex.join(without_flags(argv, ("-load", "--load"), ("-resume", "--resume", "--overwrite")) + ["--resume"])


def without_flags(argv, with_value, alone=()):
    """argv without the flags named in with_value (and the value after each, or after its '=') and those in alone."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in with_value:
            skip = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in with_value)) and arg not in alone:
            kept.append(arg)
    return kept


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


def launch(num_processes, port, argv):
    """Run this command in num_processes local processes through torchrun's own launcher -> an exit code.

    ``python -m torch.distributed.run --nproc-per-node N -m model.main ...`` without --num-gpus and --port.
    A stop signal reaching this process (SIGINT, SIGTERM, SIGUSR1: a cluster's time-limit warning) goes to
    the launcher, which passes it on to every worker (--signals-to-handle): every rank quicksaves after the
    same step, and the exit code is 128 + the signal's number.
    """
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={num_processes}",
               "--master-addr=127.0.0.1", f"--master-port={port}", f"--signals-to-handle={','.join(STOP_SIGNALS)}",
               "-m", "model.main", *without_flags(argv, ("--num-gpus", "-num-gpus", "--port", "-port"))]
    launcher = subprocess.Popen(command, start_new_session=True)  # a Ctrl-C reaches it once, from here
    received = []

    def forward(signum, frame):
        received.append(signum)
        launcher.send_signal(signum)  # torchrun passes it on to every worker

    numbers = [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]
    previous = {number: signal.signal(number, forward) for number in numbers}
    try:
        code = launcher.wait()
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
    return 128 + received[0] if received and code != 0 else code


if __name__ == "__main__":
    sys.exit(main())
