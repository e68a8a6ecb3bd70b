"""Exercise 1 training and command line: the loop learns, runs are reproducible, the CLI writes its outputs."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import main
import train
from data import epochs_to_solve, generate_memory_task_data, make_task
from net import build_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train fastest in one thread, as main.py runs them; on a busy machine a second
    thread mostly waits for the first."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TEMPLATE_LINE = re.compile(r"^Final accuracy of (rnn|lstm|tcn) \(\d+ parameters\) on \w+ task: \d\.\d{3}$", re.M)


@pytest.mark.parametrize("model", main.MODELS)
def test_training_learns_the_memory_task(model):
    sequence_length, seed = 10, 0
    train_positions, val_positions = make_task("memory", sequence_length)
    rng = np.random.default_rng(seed)
    train_data, val_data = (
        tuple(map(torch.from_numpy, generate_memory_task_data(256, sequence_length, positions, 3, rng)))
        for positions in (train_positions, val_positions)
    )
    torch.manual_seed(seed)
    net = build_model(model, 3, sequence_length)
    history = train.train(
        net, train_data, val_data, epochs=15, lr=1e-2, batch_size=32, generator=torch.Generator().manual_seed(seed)
    )
    assert len(history["val_loss"]) == 15 and isinstance(history["val_loss"][-1], float)
    assert history["val_accuracy"][-1] > 0.9  # chance: 1/3


def test_a_run_is_reproducible_from_its_seed(tmp_path):
    cfg = train.RunConfig(task="memorygen", model="lstm", seed=7, epochs=2, num_samples=64, figure_dir=str(tmp_path))
    first, second = main.run(cfg), main.run(cfg)
    for key in ("train_loss", "val_loss", "val_accuracy", "final_accuracy", "val_accuracy_by_position"):
        assert first[key] == second[key]
    assert main.run(dataclasses.replace(cfg, seed=8))["train_loss"] != first["train_loss"]


def test_cli_template_run_writes_results_and_figures(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--epochs", "2", "--num-samples", "64", "--out", str(out), "--impl", "torch"]
    assert main.main(argv) == 0

    captured = capsys.readouterr()
    printed = captured.out
    assert len(TEMPLATE_LINE.findall(printed)) == 6  # tasks memory, memorygen x models rnn, lstm, tcn: 0.363, 1.000
    assert captured.err == ""  # not a terminal: no progress bars running into the result lines
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 6
    run = results["runs"][0]
    assert (run["task"], run["model"], run["impl"], run["seed"]) == ("memory", "rnn", "torch", 0)
    assert len(run["train_loss"]) == len(run["val_loss"]) == len(run["val_accuracy"]) == 2
    assert len(run["val_accuracy_by_position"]) == 29 and run["num_params"] > 0 and run["wall_seconds"] > 0
    assert 0 < run["cpu_seconds"] < 60
    memorygen = results["runs"][3]["val_accuracy_by_position"]
    assert memorygen[:15] == [None] * 15 and None not in memorygen[15:]  # validated on the second half only
    counts = results["runs"][3]["val_count_by_position"]  # what the figure shows behind the accuracies
    assert sum(counts) == 64 and counts[:15] == [0] * 15 and min(counts[15:]) > 0
    summary = (out / "summary.md").read_text()
    assert re.search(r"\| memorygen \| tcn \| \d+ \| (\d\.\d{3}) \| \1–\1 \| [01]/1 \| (\d+|–) \| \d+\.\d{3} \| "
                     r"\d+\.\d{3} \| \d+\.\d \|", summary)
    assert "±" not in summary and "; seed 0;" in summary and "2 epochs" in summary  # one seed: no spread
    for task in ("memory", "memorygen"):
        assert (out / f"{task}_accuracy_by_position.png").is_file()
        for model in main.MODELS:  # the template's file names
            assert (out / f"{task}_{model}_losses.png").is_file()
            assert (out / f"{task}_{model}_prediction.png").is_file()


def test_cli_parallel_seeds_match_a_sequential_run(tmp_path, capsys):
    # lstm goes to the workers first (the most expensive runs first); the records still come out in grid order
    common = ["--tasks", "memorygen_reverse", "--models", "rnn", "lstm", "tcn", "--epochs", "1", "--num-samples", "32"]
    assert main.main([*common, "--seeds", "0", "1", "--jobs", "2", "--out", str(tmp_path / "parallel")]) == 0
    assert main.main([*common, "--seeds", "0", "1", "--out", str(tmp_path / "sequential")]) == 0
    assert "(seed 1)" in capsys.readouterr().out

    parallel, sequential = (
        json.loads((tmp_path / name / "results.json").read_text())["runs"] for name in ("parallel", "sequential")
    )
    assert [(r["model"], r["seed"]) for r in parallel] == [
        ("rnn", 0), ("rnn", 1), ("lstm", 0), ("lstm", 1), ("tcn", 0), ("tcn", 1)
    ]
    for p, s in zip(parallel, sequential):
        assert p["val_loss"] == s["val_loss"] and p["train_loss"] == s["train_loss"]
    assert (tmp_path / "parallel" / "seed1" / "memorygen_reverse_tcn_prediction.png").is_file()
    assert (tmp_path / "parallel" / "memorygen_reverse_accuracy_by_position.png").is_file()
    summary = (tmp_path / "parallel" / "summary.md").read_text()
    assert " ± " in summary and "impl own, 1 epoch, 32 training and 32 validation samples" in summary
    assert "mean ± sample std over seeds 0 1;" in summary
    figure = tmp_path / "parallel" / "memorygen_reverse_accuracy_by_position.png"
    losses = tmp_path / "parallel" / "seed1" / "memorygen_reverse_tcn_losses.png"
    figure.unlink()  # --replot draws them again from results.json, without training
    losses.unlink()
    assert main.main(["--replot", "--out", str(tmp_path / "parallel")]) == 0 and figure.is_file() and losses.is_file()
    assert main.main(["--replot", "--out", str(tmp_path / "nowhere")]) == 1


def test_cli_flags_are_spelled_out_and_a_mistyped_one_is_named(capsys):
    """One convention with model.main: no abbreviations, the closest flag suggested."""
    for argv, message in ((["--epoch", "2"], "unrecognized arguments: --epoch; did you mean --epochs?"),
                          (["--sequence", "5"], "unrecognized arguments: --sequence; did you mean --sequence-length?")):
        with pytest.raises(SystemExit) as exit_info:
            main.main(argv)
        assert exit_info.value.code == 2 and capsys.readouterr().err.splitlines()[-1] == f"error: {message}"


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main.main(["--help"])
    assert "(default: 50)" in capsys.readouterr().out


def test_training_does_not_import_matplotlib():
    """Worker processes of --jobs > 1 import main.py and train.py and train: matplotlib (0.3-0.6 s each) stays out."""
    code = (
        "import sys, main, train; "
        "train.train_run(train.RunConfig(task='memory', model='tcn', seed=0, epochs=1, num_samples=32)); "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--seeds", "1", "1"], "--seeds has duplicates"),
        (["--models", "rnn", "rnn"], "--models has duplicates"),
        (["--device", "gpu0"], "not a device name"),
        (["--sequence-length", "2"], "--sequence-length"),
    ],
)
def test_cli_rejects_bad_settings(argv, message, capsys):
    assert main.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_summary_counts_the_seeds_that_solved_and_when():
    """A run is solved at the first epoch with validation accuracy >= 0.99; the table gives the count and
    the median epoch over the seeds that solved it, the mean ± sample std and the range of the final accuracy."""
    import main

    def record(seed, accuracies):
        return {"task": "memory", "model": "rnn", "seed": seed, "num_params": 7, "final_accuracy": accuracies[-1],
                "val_accuracy": accuracies, "val_loss": [1.0, 0.5], "train_loss": [1.0, 0.25], "wall_seconds": 9.0,
                "cpu_seconds": 2.0}

    records = [record(0, [0.5, 0.995]), record(1, [0.995, 1.0]), record(2, [0.4, 0.6])]
    assert [epochs_to_solve(r["val_accuracy"]) for r in records] == [2, 1, None]  # the median of 2 and 1 is 1.5
    row = main.summarize(records).splitlines()[2]
    assert row == "| memory | rnn | 7 | 0.865 ± 0.230 | 0.600–1.000 | 2/3 | 1.5 | 0.500 ± 0.000 | 0.250 ± 0.000 | 2.0 |"


def test_the_analysis_groups_validation_positions_by_the_tcn_paths(tmp_path, capsys):
    from scripts import exercise1_analysis

    accuracy = [None] * 15 + [0.9] * 3 + [0.3] * 9 + [0.4, 0.2]  # memorygen: validation positions 15..28
    runs = [{"task": "memorygen", "model": "tcn", "seed": seed, "val_accuracy_by_position": accuracy,
             "final_accuracy": final, "val_accuracy": [0.5, final], "val_loss": [1.0, 0.5], "train_loss": [1.0, 0.1],
             "cpu_seconds": 2.0} for seed, final in ((0, 0.995), (1, 0.4))]
    (tmp_path / "results.json").write_text(json.dumps({"config": {"sequence_length": 30, "num_tokens": 3}, "runs": runs}))
    assert exercise1_analysis.main(["--results", str(tmp_path)]) == 0
    analysis = json.loads((tmp_path / "analysis.json").read_text())
    assert analysis["summary"]["memorygen"]["tcn"]["solved"] == 1
    assert analysis["summary"]["memorygen"]["tcn"]["final_accuracy_mean"] == pytest.approx(0.6975)
    tcn = analysis["summary"]["memorygen"]["tcn"]
    assert tcn["fitted"] == 2 and tcn["unfitted_train_loss_min"] is None and tcn["solved_at_end"] == 1
    assert tcn["worst_seed"] == {"seed": 1, "final_accuracy": 0.4, "best_accuracy": 0.5, "best_epoch": 1,
                                 "train_loss_at_best": 1.0, "max_train_loss_after_best": 1.0, "final_train_loss": 0.1}
    groups = analysis["tasks"]["memorygen"]["groups"]
    assert [(g["positions"][0], g["positions"][-1], g["slots"]) for g in groups] == [
        (15, 17, [1, 0]), (18, 26, [2, 0]), (27, 28, [0, 1])]
    assert [(g["layer3_slot_on_a_training_path"], g["layer4_slot_on_a_training_path"], g["pair_on_a_training_path"])
            for g in groups] == [(True, True, True), (False, True, False), (True, False, False)]
    assert [g["accuracy"]["tcn"] for g in groups] == pytest.approx([0.9, 0.3, 0.3])
    assert "| memorygen (0-14) | 15-17 | 1, 0 | yes | yes | yes | 0.900 |" in (tmp_path / "analysis.md").read_text()
    assert exercise1_analysis.main(["--results", str(tmp_path / "nowhere")]) == 1


def test_a_second_grid_never_replaces_an_earlier_one_unasked(tmp_path, capsys):
    out = tmp_path / "grid"
    argv = ["--epochs", "1", "--num-samples", "32", "--models", "rnn", "--tasks", "memory", "--out", str(out)]
    assert main.main(argv) == 0
    before = (out / "results.json").read_bytes()
    capsys.readouterr()
    assert main.main(argv) == 2
    assert capsys.readouterr().err.strip() == (f"error: {out} holds an earlier grid (results.json); choose another "
                                               f"--out, or replace it with --overwrite")
    assert (out / "results.json").read_bytes() == before
    (out / "notes.txt").write_text("mine")
    assert main.main([*argv[:-4], "--tasks", "memorygen", "--out", str(out), "--overwrite"]) == 0
    assert not (out / "memory_rnn_losses.png").exists() and (out / "memorygen_rnn_losses.png").exists()
    assert (out / "notes.txt").read_text() == "mine"  # only the grid's own files were replaced


def test_exercise_1_stands_alone():
    """main.py, train.py, net.py and data.py import nothing of Exercise 2 (model/, nn/) but its atomic file writes
    (model/files.py, standard library only)."""
    code = "import sys, main; print(sorted(m for m in sys.modules if m.split('.')[0] in ('model', 'nn', 'scripts')))"
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "['model', 'model.files']", \
        result.stdout + result.stderr


TINY_GRID = ["--epochs", "1", "--num-samples", "32", "--models", "rnn", "tcn"]


TRAIN_RUN = main.train_run


def interrupt_run(monkeypatch, at):
    """Make the run number `at` (1, 2, ...; 0: none) from now on raise KeyboardInterrupt, as Ctrl-C does inside
    it -> the list of the (task, model) of every run started."""
    started, train_run = [], TRAIN_RUN

    def run_or_interrupt(cfg):
        started.append((cfg.task, cfg.model))
        if len(started) == at:
            raise KeyboardInterrupt
        return train_run(cfg)

    monkeypatch.setattr(main, "train_run", run_or_interrupt)
    return started


def interrupted_main(argv):
    """main.main(argv) with a run interrupted: its exit code (a KeyboardInterrupt that escapes it fails the test
    instead of stopping pytest)."""
    try:
        return main.main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C inside a run escaped main.main")


def numbers(folder):
    """(finished, {(task, model, seed): validation losses per epoch}) of the results.json in folder."""
    results = json.loads((folder / "results.json").read_text())
    return results["finished"], {(r["task"], r["model"], r["seed"]): r["val_loss"] for r in results["runs"]}


def test_ctrl_c_mid_grid_keeps_the_finished_runs_and_resume_continues(tmp_path, monkeypatch, capsys):
    reference, out = tmp_path / "reference", tmp_path / "grid"
    assert main.main([*TINY_GRID, "--out", str(reference)]) == 0  # the same grid, uninterrupted
    _, expected = numbers(reference)
    argv = [*TINY_GRID, "--out", str(out)]
    started = interrupt_run(monkeypatch, at=3)
    capsys.readouterr()
    assert interrupted_main(argv) == 130
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"interrupted: 2 of 4 runs of this grid finished, their numbers are kept in {out / 'results.json'}; "
        f"continue with: "
        f"python main.py {' '.join(argv)} --resume")
    finished, kept = numbers(out)
    assert not finished and kept == {key: expected[key] for key in [("memory", "rnn", 0), ("memory", "tcn", 0)]}
    assert (out / "memory_tcn_losses.png").is_file() and not (out / "summary.md").exists()

    assert main.main(argv) == 2  # not continued, not replaced unasked
    assert capsys.readouterr().err.strip() == (f"error: {out} holds an unfinished grid (2 runs in results.json): "
                                               f"continue it with --resume, choose another --out, or replace it with "
                                               f"--overwrite")
    assert main.main([*argv, "--epochs", "2", "--resume"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --resume: {out} holds a grid with other settings (--epochs 1 "
                                               f"there, 2 here); give its settings to continue it, or replace it "
                                               f"with --overwrite")
    started = interrupt_run(monkeypatch, at=0)
    assert main.main([*argv, "--resume"]) == 0
    assert started == [("memorygen", "rnn"), ("memorygen", "tcn")]  # the finished runs are not trained again
    assert f"continuing {out}: 2 of 4 runs finished, 2 to train" in capsys.readouterr().out
    assert numbers(out) == (True, expected)  # as if never stopped
    assert "`python main.py " + " ".join(argv) + "`" in (out / "summary.md").read_text()


def test_overwrite_interrupted_keeps_the_earlier_grid(tmp_path, monkeypatch, capsys):
    out = tmp_path / "grid"
    assert main.main([*TINY_GRID, "--tasks", "memory", "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    argv = [*TINY_GRID, "--tasks", "memorygen", "--epochs", "2", "--out", str(out)]
    interrupt_run(monkeypatch, at=2)
    capsys.readouterr()
    assert interrupted_main([*argv, "--overwrite"]) == 130
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"interrupted: {out} still holds its earlier grid; 1 of 2 runs of the new grid finished, their numbers are "
        f"kept in {out / main.NEW_GRID / 'results.json'}; continue with: python main.py {' '.join(argv)} --resume")
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.name != main.NEW_GRID} == before

    started = interrupt_run(monkeypatch, at=0)  # no interruption
    assert main.main([*argv, "--resume"]) == 0 and started == [("memorygen", "tcn")]
    assert numbers(out)[0] and set(numbers(out)[1]) == {("memorygen", "rnn", 0), ("memorygen", "tcn", 0)}
    assert sorted(path.name for path in out.iterdir()) == [
        "memorygen_accuracy_by_position.png", "memorygen_rnn_losses.png", "memorygen_rnn_prediction.png",
        "memorygen_tcn_losses.png", "memorygen_tcn_prediction.png", "notes.txt", "results.json", "summary.md"]


def test_a_bad_out_is_one_line_before_any_training(tmp_path, monkeypatch, capsys):
    started = interrupt_run(monkeypatch, at=0)
    (tmp_path / "notes.txt").write_text("mine")
    for out, message in ((tmp_path / "notes.txt", "is a file, not a folder"),
                         (tmp_path / "notes.txt" / "grid", "cannot be made: Not a directory")):
        assert main.main([*TINY_GRID, "--out", str(out)]) == 2
        assert capsys.readouterr().err == f"error: --out {out} {message}\n"
    assert started == [] and (tmp_path / "notes.txt").read_text() == "mine"


def test_ctrl_c_stops_parallel_runs_in_one_line(tmp_path):
    """A real Ctrl-C (SIGINT to the terminal's process group) with --jobs 2: one line, no traceback, the
    workers ended, the finished runs kept."""
    out = tmp_path / "grid"
    process = subprocess.Popen([sys.executable, "main.py", "--epochs", "30", "--num-samples", "200", "--seeds", "0",
                                "1", "--jobs", "2", "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (out / "results.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr == "", stderr
    finished, kept = numbers(out)
    assert not finished and 1 <= len(kept) < 12
    assert stdout.splitlines()[-1].startswith(f"interrupted: {len(kept)} of 12 runs of this grid finished")
