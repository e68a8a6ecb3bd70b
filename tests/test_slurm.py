"""The SLURM batch scripts on a real one-node SLURM: train.sbatch trains and completes; the time-limit
warning saves, requeues and resumes at the saved step; scancel saves and stops for good; the tuning
array shares one study, proposes different trials, survives a warning and leaves committed files alone.

scripts/slurm/local_cluster.sh starts munged, slurmctld and slurmd on this machine (Debian's slurm-wlm,
installed when missing; root), with two fake 1080 Ti GPUs and scripts/slurm/singularity_stand_in.sh as
`singularity` (it binds like the container and hides the scratch root except what is bound). The jobs
run the unchanged batch scripts from a copy of the repository, on a tiny config and a 200-frame 32x32
video under another name than the configs' gameplay-data.hdf5. The warning is sent as SLURM sends it
for `--signal=B:USR1@120`: `scancel --signal=USR1 --batch JOB`, to the batch shell only.

It takes a few minutes, so it runs only when asked: SLURM_TEST=1 (skipped when the cluster cannot
start) or SLURM_TEST=required (fails instead; .ci/run). The observed timeline is printed (-s) and, with
SLURM_TEST_TIMELINE=FILE, written there as JSON.
"""
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import h5py
import pytest

from model.checkpoint import load_checkpoint
from tests.test_training import bouncing_square, tiny_setup

REPO = Path(__file__).resolve().parents[1]
MODE = os.environ.get("SLURM_TEST", "")
pytestmark = pytest.mark.skipif(MODE not in ("1", "required"),
                                reason="runs a real SLURM for minutes: SLURM_TEST=1 (.ci/run runs it)")

STEPS = 600  # the train.sbatch runs: about 7 s of training on one core
TRIAL_STEPS, TRIALS = 1500, 2  # the tuning array: 2 tasks x 2 trials of 150-375 steps (the FLOPs of 1500 base steps)
STUDY = "slurm-test"
TIMELINE = {}


ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
         "PREEMPTED"}  # the job states of a job that has ended (and is not coming back by itself)


class Cluster:
    """The client side of the one-node cluster: its environment (SLURM_CONF, PATH with the stand-in, ...)."""

    def __init__(self, env):
        self.env = env

    def run(self, *command, check=True):
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        assert not check or result.returncode == 0, f"{shlex.join(command)}: {result.stderr}"
        return result.stdout

    def jobs(self, job):
        """Every record `scontrol show job` keeps of job (an array job: one per task) as dicts."""
        lines = self.run("scontrol", "show", "job", "-o", str(job), check=False).splitlines()
        return [dict(field.split("=", 1) for field in line.split() if "=" in field) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("cluster")
    script = REPO / "scripts" / "slurm" / "local_cluster.sh"
    try:
        started = subprocess.run(["bash", str(script), "start", str(state)], capture_output=True, text=True,
                                 timeout=900)
        if started.returncode != 0:
            reason = "the one-node SLURM did not start: " + (started.stderr.strip().splitlines() or ["?"])[-1]
            if MODE == "required":
                pytest.fail(reason)
            pytest.skip(reason)
        dumped = subprocess.run(["bash", "-c", f"source {shlex.quote(str(state / 'env'))} && env -0"],
                                capture_output=True, text=True, check=True).stdout
        env = dict(item.split("=", 1) for item in dumped.split("\0") if "=" in item)
        yield Cluster({**env, "OMP_NUM_THREADS": "1"})
    finally:
        subprocess.run(["bash", str(script), "stop", str(state)], capture_output=True, timeout=300)
        if TIMELINE:
            print("\nSLURM test timeline:\n" + json.dumps(TIMELINE, indent=2))
            if os.environ.get("SLURM_TEST_TIMELINE"):
                Path(os.environ["SLURM_TEST_TIMELINE"]).write_text(json.dumps(TIMELINE, indent=2) + "\n")


@pytest.fixture(scope="module")
def repo(tmp_path_factory, cluster):
    """A copy of the repository to submit from, with tiny configs, the video under another name, an image."""
    root = tmp_path_factory.mktemp("submit")
    copy = root / "repo"
    for name in ("model", "nn", "scripts", "config", "results/vit/tune_sheet"):
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("train.sbatch", "train.sh"):
        shutil.copy2(REPO / name, copy / name)
    base = json.loads(tiny_setup(root, training={"max_steps": STEPS, "quicksave_every": 100000,
                                                 "validate_every": 100}).read_text())
    base["data"]["hdf5_file"] = "./gameplay-data.hdf5"  # read from the job's scratch folder (--scratch)
    for name, max_steps in (("slurm_plain", STEPS), ("slurm_warned", STEPS), ("slurm_cancelled", 10 ** 6),
                            ("slurm_tune", STEPS)):
        config = {**base, "model_path": name, "training": {**base["training"], "max_steps": max_steps}}
        (copy / "config" / f"{name}.json").write_text(json.dumps(config, indent=2))
    data = root / "other-name.hdf5"
    with h5py.File(data, "w") as file:
        file.create_dataset("rgb_images", data=bouncing_square(200))
    (root / "course.sif").write_text("a stand-in image\n")
    cluster.env.update(DATA=str(data), CONTAINER=str(root / "course.sif"))
    return copy


def sbatch(cluster, repo, *arguments, **env):
    out = subprocess.run(["sbatch", "--parsable", *arguments], cwd=repo, env={**cluster.env, **env},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.2)


def records(run_dir):
    """The run's metrics.jsonl records so far (a line still being written is left out)."""
    path = Path(run_dir) / "metrics.jsonl"
    complete = path.read_text().split("\n")[:-1] if path.exists() else []
    return [json.loads(line) for line in complete if line.strip()]


def quicksave_step(run_dir):
    return load_checkpoint(Path(run_dir) / "quicksave.ckpt")["step"]


def ended(cluster, job, tasks=1):
    """The records of job's tasks once all of them have ended, else None."""
    jobs = cluster.jobs(job)
    return jobs if len(jobs) == tasks and all(j["JobState"] in ENDED for j in jobs) else None


def restarts(log_text):
    """The parts of a job's log, one per (re)start, split at the banners of job_banner."""
    return re.split(r"^== .*\(restart \d+\).*$", log_text, flags=re.M)[1:]


def progress_counts(text, total):
    """The step counts of the progress bars in a log (tqdm's 'N/total [')."""
    return [int(n) for n in re.findall(rf"(\d+)/{total} \[", text)]


def logs(repo, job):
    return (repo / f"train_log_{job}.out").read_text(), (repo / f"train_log_{job}.err").read_text()


@pytest.fixture(scope="module")
def plain_run(cluster, repo):
    start = time.monotonic()
    job = sbatch(cluster, repo, "train.sbatch", CONFIG="/mnt/config/slurm_plain.json")
    [info] = wait_until(lambda: ended(cluster, job), 300, f"job {job} to end")
    TIMELINE["plain"] = {"job": job, "seconds": round(time.monotonic() - start, 1)}
    return job, info


def test_a_job_trains_and_completes(cluster, repo, plain_run):
    job, info = plain_run
    out, err = logs(repo, job)
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "0"), (info, out, err)
    run_dir = repo / "out" / "slurm_plain.device0"
    assert f"trained {STEPS} steps" in out, out + err
    assert [r["step"] for r in records(run_dir)] == list(range(1, STEPS + 1))
    assert quicksave_step(run_dir) == STEPS
    # The video was copied as other-name.hdf5 and read as ./gameplay-data.hdf5 from the bound scratch
    # folder (the stand-in hides every other scratch path); the folder is gone after the job.
    assert not (Path(cluster.env["SCRATCH_ROOT"]) / job).exists()
    assert not (repo / "gameplay-data.hdf5").exists()
    TIMELINE["plain"].update(steps=STEPS, restarts=0, state=info["JobState"])


def test_the_warning_saves_requeues_and_the_job_resumes_at_the_saved_step(cluster, repo, plain_run):
    run_dir = repo / "out" / "slurm_warned.device0"
    start = time.monotonic()
    job = sbatch(cluster, repo, "train.sbatch", CONFIG="/mnt/config/slurm_warned.json")
    wait_until(lambda: len(records(run_dir)) >= 30, 180, "30 steps")
    cluster.run("scancel", "--signal=USR1", "--batch", job)  # what --signal=B:USR1@120 sends
    signalled = time.monotonic() - start
    stopped = wait_until(lambda: re.search(rf"stopped by SIGUSR1 after step (\d+) of {STEPS}", logs(repo, job)[0]),
                         60, "the stop")
    saved = int(stopped.group(1))
    saved_quicksave = quicksave_step(run_dir)  # the run is stopped: quicksave_every is past the end
    [info] = wait_until(lambda: ended(cluster, job), 300, f"job {job} to end after its requeue")
    out, err = logs(repo, job)
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "1"), (info, out, err)
    first, second = restarts(out)
    assert f"got SIGUSR1; the training stopped with status 138; requeueing {job}" in first, out
    assert f"trained {STEPS} steps" not in first and f"trained {STEPS} steps" in second, out
    assert "resuming from out/slurm_warned.device0/quicksave.ckpt" in second, out
    resumed_at = progress_counts(restarts(err)[1], STEPS)[0]  # the requeued run's progress bar starts there
    assert saved_quicksave == saved == resumed_at > 0
    # Inside a job the way on is a resubmission (the job's --scratch folder goes with it), not a command line.
    assert "resume: submit the job again (sbatch train.sbatch); it continues from there with --resume" in first, out
    assert "resume with: python -m model.main" not in first, out
    # Stopped, requeued and resumed, the run equals the uninterrupted one.
    resumed, plain = records(run_dir), records(repo / "out" / "slurm_plain.device0")
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    assert [r.get("val_loss") for r in resumed] == [r.get("val_loss") for r in plain]
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in plain]
    TIMELINE["warning"] = {"job": job, "signalled_at_s": round(signalled, 1), "saved_step": saved,
                           "restarts": int(info["Restarts"]), "resumed_at_step": resumed_at,
                           "final_step": resumed[-1]["step"], "state": info["JobState"],
                           "seconds": round(time.monotonic() - start, 1)}


def test_scancel_saves_and_the_job_stays_cancelled(cluster, repo):
    run_dir = repo / "out" / "slurm_cancelled.device0"
    start = time.monotonic()
    job = sbatch(cluster, repo, "train.sbatch", CONFIG="/mnt/config/slurm_cancelled.json")
    wait_until(lambda: len(records(run_dir)) >= 30, 180, "30 steps")
    cluster.run("scancel", job)
    wait_until(lambda: "not requeueing" in logs(repo, job)[0], 60, "the batch shell to finish")
    wait_until(lambda: ended(cluster, job), 60, "the job to end")
    time.sleep(20)  # twice the requeue delay of this cluster (cred_expire=10): a requeued job would be back
    [info] = cluster.jobs(job)
    out, err = logs(repo, job)
    saved = int(re.search(r"stopped by SIGTERM after step (\d+)", out).group(1))
    assert info["JobState"] == "CANCELLED" and info["Restarts"] == "0", info
    assert len(restarts(out)) == 1 and "requeueing" not in out.replace("not requeueing", ""), out
    assert "got SIGTERM; the training stopped with status 143; not requeueing" in out, out
    assert quicksave_step(run_dir) == saved == records(run_dir)[-1]["step"]
    TIMELINE["cancel"] = {"job": job, "saved_step": saved, "restarts": int(info["Restarts"]),
                          "state_20_s_later": info["JobState"], "seconds": round(time.monotonic() - start, 1)}


def digests(root, paths):
    return {path: hashlib.sha256((root / path).read_bytes()).hexdigest() for path in paths}


def test_the_tuning_array_shares_a_study_and_survives_the_warning(cluster, repo):
    import optuna

    tracked = ["config/vit_best.json", *(f"results/vit/tune_sheet/{p.name}" for p in (repo / "results/vit/tune_sheet").iterdir())]
    before = digests(repo, tracked)
    start = time.monotonic()
    array = sbatch(cluster, repo, "--array=0-1", "scripts/slurm/tune_array.sbatch", CONFIG="config/slurm_tune.json",
                   STUDY=STUDY, TRIALS=str(TRIALS), TRIAL_STEPS=str(TRIAL_STEPS))
    log0 = repo / f"tune_log_{array}_0.out"
    first = wait_until(lambda: log0.exists() and re.search(r"^trial (\d+): \{", log0.read_text(), flags=re.M),
                       180, "task 0's first trial")
    wait_until(lambda: len(records(repo / "out" / "tune" / f"{STUDY}.trial{first.group(1)}")) >= 10, 120,
               "10 steps of that trial")
    cluster.run("scancel", "--signal=USR1", "--batch", f"{array}_0")
    signalled = time.monotonic() - start
    stop = wait_until(lambda: re.search(r"^trial (\d+): stopped by SIGUSR1 after step (\d+)", log0.read_text(),
                                        flags=re.M), 60, "the trial to stop")
    interrupted, saved = map(int, stop.groups())  # the first trial, unless it ended before the signal
    run_dir = repo / "out" / "tune" / f"{STUDY}.trial{interrupted}"
    kept = [r for r in records(run_dir) if r["step"] <= saved]  # what the interrupted trial had written
    infos = wait_until(lambda: ended(cluster, array, tasks=2), 600, "both array tasks to end")
    task_restarts = {j["ArrayTaskId"]: int(j["Restarts"]) for j in infos}
    assert {j["JobState"] for j in infos} == {"COMPLETED"} and task_restarts == {"0": 1, "1": 0}, infos

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(repo / "out" / "tune" / f"{STUDY}.journal")))
    trials = optuna.load_study(study_name=STUDY, storage=storage).trials
    workers = {f"{array}_0", f"{array}_1"}
    # One study, two workers, two finished trials each; nothing left running or waiting.
    assert {t.user_attrs.get("worker") for t in trials} == workers
    assert all(t.state.is_finished() for t in trials), [(t.number, t.state) for t in trials]
    done = [t for t in trials if "stopped_by" not in t.user_attrs]
    assert sorted(t.user_attrs["worker"] for t in done) == sorted([*workers] * TRIALS)
    # Different trials: the two tasks' first new trials differ, and so do all but the continuation (a task that
    # starts late may take up the continuation first).
    fresh = [t for t in trials if "continues_trial" not in t.user_attrs]
    first_trials = [min((t for t in fresh if t.user_attrs["worker"] == w), key=lambda t: t.number) for w in workers]
    assert first_trials[0].params != first_trials[1].params
    assert len({json.dumps(t.params, sort_keys=True) for t in fresh}) == len(fresh)
    # The warning stopped the trial after a quicksave; one trial continued it from that step.
    [stopped] = [t for t in trials if "stopped_by" in t.user_attrs]
    assert (stopped.number, stopped.state.name, stopped.user_attrs["stopped_by"]) == (interrupted, "FAIL", "SIGUSR1")
    assert stopped.user_attrs["stopped_at_step"] == saved > 0
    [continued] = [t for t in trials if "continues_trial" in t.user_attrs]
    assert continued.user_attrs["continues_trial"] == interrupted and continued.params == stopped.params
    assert continued.user_attrs["continues_from_step"] == saved and continued.state.name in ("COMPLETE", "PRUNED")
    assert continued.user_attrs["steps"] > saved
    continuing_log = "".join((repo / f"tune_log_{array}_{task}.out").read_text() for task in (0, 1))
    assert f"trial {continued.number}: continues trial {interrupted} from" in continuing_log
    # The continuation kept the records up to the saved step as they were (a fresh start rewrites them).
    assert records(run_dir)[:len(kept)] == kept and [r["step"] for r in kept] == list(range(1, saved + 1))
    # Reports in the job's own folder; committed results untouched; the data came from scratch.
    for worker in workers:
        assert (repo / "out" / "tune" / STUDY / f"report_{worker}" / "summary.md").exists()
    assert digests(repo, tracked) == before
    assert not (repo / "gameplay-data.hdf5").exists()
    if (REPO / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "-q", f"tune_log_{array}_0.out"], cwd=REPO)
        assert ignored.returncode == 0, "tune_log_* is not ignored by git"
    TIMELINE["array"] = {
        "job": array, "signalled_task_0_at_s": round(signalled, 1), "restarts": task_restarts,
        "seconds": round(time.monotonic() - start, 1),
        "trials": [{"number": t.number, "state": t.state.name, "worker": t.user_attrs.get("worker"),
                    "value": t.value, "steps": t.user_attrs.get("steps"),
                    **{key: t.user_attrs[key] for key in ("stopped_by", "stopped_at_step", "continues_trial",
                                                          "continues_from_step") if key in t.user_attrs},
                    "params": t.params} for t in trials]}
