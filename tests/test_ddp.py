"""Scale-out: DDP on the CPU (gloo) with 2 processes, one checkpoint with the weights every rank holds;
the SLURM job scripts parse, ask for a warning signal, forward it to the training and requeue.

The processes are started the way torchrun starts them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT in the environment), each running the real command line. A few lines around it record
the model each rank trained, so the test can compare the weights every rank holds with the checkpoint.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from model import main as train_cli
from model.checkpoint import load_checkpoint
from tests.test_training import records, tiny_setup

REPO = Path(__file__).resolve().parents[1]

# Runs model.main like `python -m model.main ARGS` and then saves the weights this rank trained.
RANK_WITH_WEIGHTS = """
import os, sys, torch
import model.engine as engine
from model import main as cli
built = []
from_config = engine.VisionTransformer.from_config
engine.VisionTransformer.from_config = lambda cfg: built.append(from_config(cfg)) or built[-1]
code = cli.main(sys.argv[2:])
torch.save(built[-1].state_dict(), os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.pt"))
sys.exit(code)
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_ranks(world_size, argv, dump_dir):
    port = free_port()
    processes = []
    for rank in range(world_size):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
               "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1"}
        processes.append(subprocess.Popen([sys.executable, "-c", RANK_WITH_WEIGHTS, str(dump_dir), *map(str, argv)],
                                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
    return processes


def finish(processes, timeout=120):
    return [(process.wait(timeout=timeout), *process.communicate()) for process in processes]


def test_two_ranks_write_one_checkpoint_with_the_weights_both_hold(tmp_path):
    config = tiny_setup(tmp_path, training={"max_steps": 3, "validate_every": 2, "quicksave_every": 2})
    out = tmp_path / "out"
    results = finish(start_ranks(2, ["-cfg", config, "--out-dir", out, "--train"], tmp_path))
    for code, stdout, stderr in results:
        assert code == 0 and "Traceback" not in stderr, stderr
    assert "trained 3 steps" in results[0][1] and results[1][1] == ""  # only rank 0 prints

    run_dir = out / "tiny.device0"
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.ckpt", "cfg.json", "final.ckpt", "metrics.jsonl",
                                                         "quicksave.ckpt"]
    assert [r["step"] for r in records(run_dir)] == [1, 2, 3]
    saved = load_checkpoint(run_dir / "quicksave.ckpt")
    assert saved["step"] == 3 and saved["sampler"]["position"] == 3  # 3 batches per rank
    rank0, rank1 = (torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1))
    assert set(saved["model"]) == set(rank0)  # the unwrapped model's names: no 'module.' prefix
    for name, weight in saved["model"].items():
        assert torch.equal(weight, rank0[name]) and torch.equal(weight, rank1[name]), name
    assert saved["best_val_loss"] == min(r["val_loss"] for r in records(run_dir) if "val_loss" in r)
    final = load_checkpoint(run_dir / "final.ckpt")["model"]  # the final weights alone, from rank 0
    assert all(torch.equal(final[name], rank1[name]) for name in final)


def test_a_signal_to_one_rank_stops_both_after_the_same_step(tmp_path):
    config = tiny_setup(tmp_path, training={"quicksave_every": 100000, "validate_every": 100000})
    out = tmp_path / "out"
    processes = start_ranks(2, ["-cfg", config, "--out-dir", out, "--train", "--max-steps", "100000"], tmp_path)
    metrics = out / "tiny.device0" / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert all(p.poll() is None for p in processes) and time.monotonic() < deadline, finish(processes)
        time.sleep(0.1)
    processes[1].send_signal(signal.SIGUSR1)  # a rank that does not write anything
    (code0, out0, err0), (code1, _, err1) = finish(processes)
    assert (code0, code1) == (128 + signal.SIGUSR1, 128 + signal.SIGUSR1), err0 + err1
    saved = load_checkpoint(out / "tiny.device0" / "quicksave.ckpt")
    assert saved["step"] == records(metrics.parent)[-1]["step"] >= 2
    assert f"stopped by SIGUSR1 after step {saved['step']}" in out0
    rank0, rank1 = (torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1))
    assert all(torch.equal(w, rank0[n]) and torch.equal(w, rank1[n]) for n, w in saved["model"].items())


@pytest.mark.skipif(not hasattr(os, "setpgrp"), reason="POSIX process groups")
def test_num_gpus_starts_the_processes_itself(tmp_path):
    config = tiny_setup(tmp_path, training={"max_steps": 2, "validate_every": 100000})
    result = subprocess.run([sys.executable, "-m", "model.main", "-cfg", str(config), "--train", "--num-gpus", "2",
                             "--port", str(free_port()), "--out-dir", str(tmp_path / "out")],
                            cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert result.stdout.count("trained 2 steps") == 1
    assert load_checkpoint(tmp_path / "out" / "tiny.device0" / "quicksave.ckpt")["sampler"]["position"] == 2


@pytest.mark.skipif(not hasattr(os, "setpgrp"), reason="POSIX process groups")
def test_a_stop_signal_to_the_num_gpus_parent_stops_every_rank_with_a_quicksave(tmp_path):
    config = tiny_setup(tmp_path, training={"max_steps": 100000, "validate_every": 100000})
    out = tmp_path / "out"
    parent = subprocess.Popen([sys.executable, "-m", "model.main", "-cfg", str(config), "--train", "--num-gpus", "2",
                               "--port", str(free_port()), "--out-dir", str(out)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    metrics = out / "tiny.device0" / "metrics.jsonl"
    deadline = time.monotonic() + 90
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.2)
    parent.send_signal(signal.SIGUSR1)  # a cluster's time-limit warning
    code, stdout, stderr = parent.wait(timeout=120), *parent.communicate()
    assert code == 128 + signal.SIGUSR1, stderr
    saved = load_checkpoint(out / "tiny.device0" / "quicksave.ckpt")
    assert saved["step"] >= 2 and f"stopped by SIGUSR1 after step {saved['step']}" in stdout


def test_resume_flag_continues_a_requeued_run(tmp_path, capsys):
    config = tiny_setup(tmp_path)
    argv = ["-cfg", str(config), "--out-dir", str(tmp_path / "out"), "--train", "--resume"]
    assert train_cli.main([*argv, "--max-steps", "2"]) == 0  # the first start: nothing to resume
    assert train_cli.main([*argv, "--max-steps", "3"]) == 0
    assert "resuming from " + str(tmp_path / "out" / "tiny.device0" / "quicksave.ckpt") in capsys.readouterr().out
    assert [r["step"] for r in records(tmp_path / "out" / "tiny.device0")] == [1, 2, 3]


JOB_SCRIPTS = sorted([REPO / "train.sbatch", REPO / "train.sh", *(REPO / "scripts" / "slurm").iterdir()])
BATCH_SCRIPTS = [path for path in JOB_SCRIPTS if path.suffix == ".sbatch"]


@pytest.mark.parametrize("script", JOB_SCRIPTS, ids=lambda path: path.name)
def test_job_script_parses(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", BATCH_SCRIPTS, ids=lambda path: path.name)
def test_batch_script_asks_for_a_warning_and_requeues(script):
    lines = script.read_text().splitlines()
    assert any(line.startswith("#SBATCH --signal=B:USR1@") for line in lines)
    assert "#SBATCH --requeue" in lines and any(line.startswith("#SBATCH --time=") for line in lines)
    assert any(line.startswith("run_and_requeue ") for line in lines)


