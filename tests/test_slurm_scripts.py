"""scripts/slurm/common.sh without SLURM: which stop signal requeues, and the data copied to scratch.

A stand-in `scontrol` records its arguments; a stand-in training takes a moment to "save" on a signal and
exits with 128 + its number, as model.main does. (tests/test_slurm.py runs the scripts on a real SLURM.)
"""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMON = REPO / "scripts" / "slurm" / "common.sh"


def run_job(tmp_path, *signals, forward_as=""):
    """run_and_requeue FORWARD_AS <training> in a batch shell that gets the signals
    -> (what the training got, status line, scontrol's arguments or None)."""
    (tmp_path / "bin").mkdir()
    scontrol = tmp_path / "bin" / "scontrol"
    scontrol.write_text(f'#!/bin/bash\necho "$@" >> {tmp_path}/scontrol.args\n')
    scontrol.chmod(0o755)
    training = tmp_path / "training.sh"  # the first signal "saves" (0.5 s) and exits; later ones are ignored
    training.write_text(f"""save() {{ trap '' USR1 TERM; echo $1 >> {tmp_path}/got; sleep 0.5; exit $2; }}
trap 'save USR1 138' USR1
trap 'save TERM 143' TERM
touch {tmp_path}/started
sleep 10 & wait $!
""")
    job = f"source {COMMON}; run_and_requeue '{forward_as}' bash {training}; echo status $? > {tmp_path}/status"
    process = subprocess.Popen(["bash", "-c", job], env={**os.environ, "SLURM_JOB_ID": "42",
                                                          "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"})
    deadline = time.monotonic() + 10
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for number in signals:
        process.send_signal(number)
        time.sleep(0.1)
    process.wait(timeout=20)
    requeued = (tmp_path / "scontrol.args").read_text().strip() if (tmp_path / "scontrol.args").exists() else None
    return (tmp_path / "got").read_text().split()[0], (tmp_path / "status").read_text().strip(), requeued


@pytest.mark.parametrize("signals, child_gets, status, requeued", [
    ([signal.SIGUSR1], "USR1", "status 138", "requeue 42"),  # the time-limit warning: save and requeue
    ([signal.SIGTERM], "TERM", "status 143", None),  # scancel: save and stay stopped
    ([signal.SIGUSR1, signal.SIGTERM], "USR1", "status 138", None),  # a cancel while saving for a requeue
], ids=["warning", "cancel", "warning-then-cancel"])
def test_only_the_warning_requeues(tmp_path, signals, child_gets, status, requeued):
    assert run_job(tmp_path, *signals) == (child_gets, status, requeued)


def test_the_warning_can_reach_the_training_as_another_signal(tmp_path):
    """multinode.sbatch forwards the warning as SIGTERM (what srun passes on to every task); it still requeues."""
    assert run_job(tmp_path, signal.SIGUSR1, forward_as="TERM") == ("TERM", "status 143", "requeue 42")


def copy_data(tmp_path, data):
    scratch = tmp_path / "scratch" / "7"
    subprocess.run(["bash", "-c", f"source {COMMON} && copy_data_to_scratch {data}"], check=True,
                   env={**os.environ, "SCRATCH": str(scratch)})
    return scratch


def test_data_of_another_name_is_read_as_gameplay_data(tmp_path):
    data = tmp_path / "my-video.hdf5"
    data.write_bytes(b"frames")
    scratch = copy_data(tmp_path, data)
    assert (scratch / "my-video.hdf5").read_bytes() == b"frames"
    assert (scratch / "gameplay-data.hdf5").read_bytes() == b"frames"  # what the configs read
    assert sorted(p.name for p in scratch.iterdir()) == ["gameplay-data.hdf5", "my-video.hdf5"]


def test_data_called_gameplay_data_is_copied_once(tmp_path):
    data = tmp_path / "gameplay-data.hdf5"
    data.write_bytes(b"frames")
    scratch = copy_data(tmp_path, data)
    data.write_bytes(b"changed")
    copy_data(tmp_path, data)  # a second copy_to_scratch on the node keeps the first one
    assert [p.name for p in scratch.iterdir()] == ["gameplay-data.hdf5"]
    assert (scratch / "gameplay-data.hdf5").read_bytes() == b"frames"
