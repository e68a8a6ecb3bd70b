"""Smoke test of the experiment runner and the tuner on a tiny 32x32 video (a few steps each)."""
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from model.config import load_config, strip_json_comments, with_overrides
from model import protocol
from model.data import evaluation_part
from scripts import experiment_figures, experiment_sets, run_experiments

TINY_MODEL = {"image_height": 32, "image_width": 32, "patch_size": 8, "channels": 16, "num_heads": 2,
              "layers": 1, "batch_size": 4}


def write_video(path, count=80):
    """A bright square sliding over a noisy background, with the /meta flags the runner reads."""
    rng = np.random.default_rng(0)
    frames = (rng.random((count, 32, 32)) * 60).astype(np.uint8)
    for i in range(count):
        x = (2 * i) % 24
        frames[i, 10:18, x:x + 8] = 230
    with h5py.File(path, "w") as file:
        file["rgb_images"] = frames
        file["meta/camera_dx"] = (np.arange(count) % 3 == 0).astype(np.int16)
        file["meta/camera_dy"] = np.zeros(count, np.int16)
        file["meta/player_moving"] = np.arange(count) % 2 == 0
        file["meta/npc_moving"] = np.zeros(count, bool)


@pytest.fixture
def tiny_configs(tmp_path):
    """config/vit_cpu.json shrunk to the tiny video, with the sheet's variant files under short names (full:
    sheet10k_full, noattention, nopos, masked: sheet_masked10k_full, which starts from config/vit_masked.json)."""
    video = tmp_path / "video.hdf5"
    write_video(video)
    raw = json.loads(strip_json_comments(Path("config/vit_cpu.json").read_text()))
    raw["data"]["hdf5_file"] = str(video)
    raw["data"]["validation_fraction"] = 0.25
    raw["data"]["test_fraction"] = 0.25  # 20 frames: room for the 10-step closed loops
    raw["num_workers"] = 0
    raw["model"].update(TINY_MODEL)
    raw["training"]["validation_batches"] = 2
    (tmp_path / "config" / "long").mkdir(parents=True)
    (tmp_path / "config" / "vit_cpu.json").write_text(json.dumps(raw))
    (tmp_path / "config" / "vit_masked.json").write_text(Path("config/vit_masked.json").read_text())
    names = {"full": "sheet10k_full", "noattention": "sheet10k_noattention", "nopos": "sheet10k_nopos",
             "masked": "sheet_masked10k_full"}
    for name, variant in names.items():
        variant_cfg = json.loads(strip_json_comments(experiment_sets.variant_file(variant).read_text()))
        variant_cfg["model_path"] = name
        (tmp_path / "config" / "long" / f"{name}.json").write_text(json.dumps(variant_cfg))
    return tmp_path


def test_runner_trains_resumes_evaluates_and_reports(tiny_configs, capsys):
    root = tiny_configs
    args = ["--runs", "full", "nopos", "masked", "--seeds", "0", "1", "--steps", "4",
            "--config-root", str(root), "--runs-dir", str(root / "runs"), "--results", str(root / "results"),
            "--name", "smoke", "--threads", "1"]
    assert run_experiments.main(args) == 0
    out = root / "results" / "smoke"
    results = json.loads((out / "results.json").read_text())
    full = results["runs"]["full"]["0"] if "0" in results["runs"]["full"] else results["runs"]["full"][0]
    assert full["steps"] == 4 and len(full["rollout"]["model"]["psnr"]) == protocol.ROLLOUT_STEPS
    assert full["situations"]["scrolling"]["windows"] > 0
    for name, entry in full["one_step"].items():  # the L1 split into unchanged and changed pixels adds up
        assert entry["l1_unchanged"] + entry["l1_changed"] == pytest.approx(entry["l1"], rel=1e-5), name
    assert full["one_step"]["copy_last"]["l1_unchanged"] == 0
    assert "one_step_mean_frame" in results["summary"]["masked"]
    data = results["configs"]["full"]["data"]  # what the runs saw, for the report to cite
    assert data["file"].endswith("video.hdf5") and data["height"] == data["width"] == 32
    assert data["parts"]["val"][0] == data["parts"]["train"][1] and data["parts"]["test"][1] == data["frames"]
    assert data["fractions"]["val"] == 0.25 and data["fractions"]["train"] == data["parts"]["train"][1] / data["frames"]
    assert "| full | 4 | 2 |" in (out / "summary.md").read_text()
    table = (out / "table.md").read_text().splitlines()
    assert all(line.count("|") == table[0].count("|") for line in table) and table[2].startswith("| full | 4 |")
    assert any(line.startswith("| *copy-last frame* |") for line in table)  # baselines in italics
    # Measured against the strongest baseline on the same windows, with both baselines in the closed loop.
    bar = run_experiments.strongest_baseline(results["summary"]["full"])
    short = {"copy_last": "copy", "continue_motion": "motion", "mean_frame": "mean"}[bar]
    assert f"| Δ\u00a0{short} |" in table[0] and " per\u00a0seed |" in table[0]
    assert set(full["rollout"]) == {"starts", "model", "copy_last", "continue_motion"}
    assert "continue_motion" in full["train_one_step"]
    summary_full = results["summary"]["full"]
    assert len(summary_full["per_seed_psnr"]) == 2 and "beats_continue_motion" in summary_full
    # --tables-only summarises the runs stored in results.json again, without the run folders.
    (out / "table.md").unlink()
    before = (out / "results.json").read_text()
    assert run_experiments.main(args + ["--tables-only", "--runs-dir", str(root / "nowhere")]) == 0
    assert (out / "table.md").read_text().splitlines() == table
    assert (out / "results.json").read_text() == before  # the same numbers in the same order
    for figure in ("loss_curves", "samples_full", "samples_masked", "error_by_situation", "error_by_region",
                   "attention_full"):
        assert (out / f"{figure}.png").stat().st_size > 0
    # The region figure's baselines are those the evaluation stored: the copy's error map is the mean |frame t-1 -
    # frame t| over the predicted frames of the evaluation part, computed here on its own.
    cfg = experiment_sets.run_config("full", 4, root)
    maps = experiment_figures.baseline_error_maps(root / "runs", "full", 0)
    assert set(maps) == {"copy-last frame", "continue motion"}
    split = run_experiments.video_of(cfg, {})
    video, part = split.frames.float() / 255, split.parts[evaluation_part(cfg)]
    expected = (video[part.start - 1:part.stop - 1] - video[part.start:part.stop]).abs().mean(0)
    np.testing.assert_allclose(maps["copy-last frame"], expected.numpy(), rtol=1e-5, atol=1e-6)
    # A second call skips the finished runs (and reuses their evaluations); a run without done.json
    # resumes from its quicksave.
    (root / "runs" / "nopos.seed1" / "done.json").unlink()
    # An evaluation of this protocol is kept, not computed again.
    cached = root / "runs" / "full.seed0" / "eval.json"
    evaluated = json.loads(cached.read_text())
    assert len(evaluated["attention"]["same_place_per_head"][0]) == 2  # a share per head
    evaluated["one_step"]["model"]["psnr"] = -1.0  # a number the second call must keep, not compute again
    cached.write_text(json.dumps(evaluated))
    # A finished run keeps its final weights without optimizer state; its figures need no quicksave.
    final, quicksave = root / "runs" / "full.seed0" / "final.ckpt", root / "runs" / "full.seed0" / "quicksave.ckpt"
    assert final.stat().st_size < quicksave.stat().st_size / 2
    quicksave.unlink()
    (root / "runs" / "masked.seed0" / "final.ckpt").unlink()  # a run finished before there was final.ckpt
    capsys.readouterr()
    assert run_experiments.main(args) == 0
    assert (root / "runs" / "masked.seed0" / "final.ckpt").is_file()  # exported from its quicksave
    printed = capsys.readouterr().out
    assert printed.count("done, skipped") == 5 and "resuming from" in printed
    assert (root / "runs" / "nopos.seed1" / "done.json").exists()
    assert json.loads(cached.read_text())["one_step"]["model"]["psnr"] == -1.0
    # --keep-stored: one seed evaluated again joins the runs stored in results.json, whose folders are gone.
    shutil.rmtree(root / "runs" / "nopos.seed0")
    assert run_experiments.main([*args[:args.index("--seeds")], "--seeds", "1", *args[args.index("--steps"):],
                                 "--no-train", "--no-figures", "--keep-stored"]) == 0
    kept = json.loads((out / "results.json").read_text())
    assert {variant: list(seeds) for variant, seeds in kept["runs"].items()} == {
        "full": ["0", "1"], "nopos": ["0", "1"], "masked": ["0", "1"]}
    assert kept["runs"]["full"]["0"]["one_step"]["model"]["psnr"] == -1.0  # stored, not evaluated again
    assert len(kept["summary"]["nopos"]["per_seed_psnr"]) == 2
    # A run folder of another config is refused instead of being reported under the new one.
    config = root / "config/vit_cpu.json"
    raw = json.loads(config.read_text())
    raw["model"]["layers"] += 1
    config.write_text(json.dumps(raw))
    assert run_experiments.main(args) == 2
    error = capsys.readouterr().err
    assert "full.seed0 holds a run of another config (model.layers: 1 (run folder) vs 2 (now))" in error


def test_situations_come_only_from_a_video_that_records_them():
    flags = {"camera_dx": np.array([0, 1, 0, 0]), "player_moving": np.array([0, 0, 1, 0])}
    masks = protocol.situations(flags, np.arange(4))
    assert masks["static"].tolist() == [True, False, False, True] and masks["scrolling"].tolist()[1]
    assert not masks["overlay"].any()  # a flag the video lacks: never
    # Imported Atari footage records actions and rewards, not situations: no frame is called static.
    atari = {"action": np.array([1, 2, 3, 0]), "reward": np.zeros(4), "episode": np.zeros(4)}
    assert protocol.situations(atari, np.arange(4)) == {}


def test_train_part_windows_predict_the_same_frames_for_every_context_length():
    from model.data import FrameWindows

    frames = torch.zeros(500, 4, 4, dtype=torch.uint8)
    predicted = []
    for num_frames in (1, 3, 4, 9):
        windows = FrameWindows(frames, num_frames, targets=range(num_frames - 1, 400))
        picked = protocol.spread_windows(windows, 50)
        predicted.append([windows.targets[i] for i in picked])
    assert len(predicted[0]) == 50 and predicted[0][0] == protocol.TRAIN_FIRST_TARGET
    assert predicted[0][-1] == 399 and all(targets == predicted[0] for targets in predicted)


def test_tune_shares_a_journal_study_and_writes_the_best_config(tiny_configs):
    from scripts import tune

    root = tiny_configs
    config = root / "config/vit_cpu.json"
    args = ["--config", str(config), "--study-name", "smoke", "--storage", str(root / "study.journal"),
            "--trials", "2", "--steps-per-trial", "3", "--out", str(root / "tune"),
            "--best-config", str(root / "best.json"), "--runs-dir", str(root / "trials"), "--threads", "1"]
    assert tune.main(args) == 0
    assert tune.main(args[:6] + ["--trials", "1"] + args[8:]) == 0  # a second process adds to the same study
    summary = (root / "tune" / "summary.md").read_text()
    assert "Trials: 3" in summary and (root / "tune" / "trials.csv").exists()
    assert "copy-last frame: " in summary and "continue motion: " in summary  # the strongest baseline too
    assert (root / "tune" / "param_importance.png").exists()
    assert tune.main(args[:6] + ["--until", "3"] + args[8:]) == 0  # complete: nothing added
    facts = json.loads((root / "tune" / "study.json").read_text())
    assert facts["trials"] == 3 and facts["steps_per_trial"] == 3 and facts["best"]["params"]
    best = load_config(root / "best.json")
    params = facts["best"]["params"]
    assert best.model_path == "best" and best.model.channels == params["channels"] in (32, 64, 96, 128)
    assert (best.model.num_frames, best.model.layers, best.learning_rate) == (
        params["num_frames"], params["layers"], params["learning_rate"])
    assert "objective: one-step MSE on the validation part" in summary
    short = (root / "tune" / "table.md").read_text().splitlines()  # the report's table: the best trials
    assert short[0].startswith("| trial | val PSNR | steps |") and short[2].startswith(f"| {facts['best']['number']} |")

    other = root / "config/other.json"  # another base config (another split) may not join the study
    other.write_text(json.dumps({"base": "vit_cpu.json", "data": {"test_fraction": 0.0}}))
    assert tune.main(["--config", str(other)] + args[2:6] + ["--trials", "1"] + args[8:]) == 2
    budget = args.index("--steps-per-trial") + 1  # another budget would change a continued trial's schedule
    assert tune.main(args[:budget] + ["4"] + args[budget + 1:]) == 2


def test_the_search_table_names_skipped_and_continued_trials():
    from optuna.trial import TrialState, create_trial

    from scripts import tune

    trials = [create_trial(state=TrialState.FAIL, user_attrs={"stopped_by": "SIGTERM"}),
              create_trial(state=TrialState.PRUNED, user_attrs={"skipped": "20 steps at equal FLOPs"}),
              create_trial(state=TrialState.COMPLETE, value=0.1, user_attrs={"continues_trial": 0}),
              create_trial(state=TrialState.PRUNED)]
    for number, trial in enumerate(trials):
        trial.number = number
    assert [tune._state(t, trials) for t in trials] == ["stopped, continued by 2", "skipped", "complete", "pruned"]


def test_the_search_starts_from_the_base_configs_own_values(tmp_path):
    import optuna

    from scripts import tune

    base = load_config("config/vit_cpu.json")
    study = optuna.create_study(storage=tune.JournalStorage(tune.JournalFileBackend(str(tmp_path / "s.journal"))))
    tune.enqueue_base(study, base, tmp_path / "s.lock")
    tune.enqueue_base(study, base, tmp_path / "s.lock")  # once per study
    trial = study.ask()
    assert tune.sample(trial, base) == {key: tune._value(base, key) for key in tune.SEARCH_SPACE.values()}
    assert trial.user_attrs["base_config"] and len(study.trials) == 1
    study.tell(trial, 1.0)
    assert "base_config" not in study.ask().user_attrs  # the next trial is sampled
    assert not tune.in_space({**study.trials[0].params, "channels": 16}, base)


def test_tune_writes_the_best_config_into_its_runs_dir_unless_told():
    from scripts import tune

    assert tune.parse_args(["--runs-dir", "somewhere"]).best_config == str(Path("somewhere") / "vit_best.json")
    assert tune.parse_args([]).best_config == str(Path("out/tune_sheet") / "vit_best.json")
    assert tune.parse_args(["--best-config", "config/vit_best.json"]).best_config == "config/vit_best.json"


def test_every_choice_of_the_search_is_a_valid_config():
    from scripts import tune

    base = load_config("config/vit_cpu.json")
    for params in ({"num_frames": 2, "channels": 32, "num_heads": 4, "layers": 6, "patch_size": 8, "learning_rate": 1e-2},
                   {"num_frames": 4, "channels": 128, "num_heads": 1, "layers": 2, "patch_size": 16,
                    "learning_rate": 1e-3}):
        cfg = with_overrides(base, tune.overrides_of(params))
        assert (cfg.model.num_frames, cfg.model.channels, cfg.model.patch_size) == (
            params["num_frames"], params["channels"], params["patch_size"])
        assert cfg.model.output == "frame" and cfg.training.loss == "mse"  # the sheet's model and its recipe


def test_the_usage_page_lists_every_set():
    import re

    rows = [line for line in Path("docs/usage.md").read_text(encoding="utf-8").splitlines() if line.startswith("| `")]
    listed = {name for row in rows for name in re.findall(r"`([a-z0-9_]+)`", row.split(" | ")[0])}
    assert set(run_experiments.SETS) <= listed, f"docs/usage.md's --set table lacks {set(run_experiments.SETS) - listed}"


def test_every_variant_and_set_builds_a_valid_config():
    names = experiment_sets.variant_names()
    files = [path.stem for folder in experiment_sets.VARIANT_FOLDERS for path in Path(folder).glob("*.json")]
    assert len(files) == len(set(files)), "a variant name in two folders"
    for variant in names:
        cfg = experiment_sets.run_config(variant)
        assert cfg.model_path == variant and cfg.training.max_steps >= 600  # each file holds its own budget
        assert experiment_sets.run_config(variant, 60).training.max_steps == 60
    assert {v for variants in run_experiments.SETS.values() for v in variants} <= names
    assert experiment_sets.run_config("sheet10k_noattention").model.attention is False
    assert experiment_sets.run_config("sheet10k_nopos").model.positional_embedding is False
    assert experiment_sets.run_config("sheet_masked10k_full").model.num_frames == 1


def test_tables_give_small_l1_values_six_decimals():
    def entry(copy_l1):
        metrics = {"l1": (copy_l1, 0.0), "psnr": (37.0, 0.0), "ssim": (0.99, 0.0)}
        return {"steps": 10, "seeds": [0], "train_seconds": (1.0, 0.0), "one_step_model": metrics,
                "one_step_copy_last": metrics, "one_step_mean_frame": metrics}
    assert "| 0.000615 |" in run_experiments.compact_table({"pong": entry(0.000615)})
    assert "| 0.000615 ± 0.000000 |" in run_experiments.markdown("pong", {"pong": entry(0.000615)}, 10)
    assert "| 0.0519 |" in run_experiments.compact_table({"video": entry(0.0519)})


def test_the_table_measures_against_the_strongest_baseline():
    """Δ columns and the beats column use the baseline with the highest one-step PSNR; copy-last is counted too."""
    def metrics(l1, psnr):
        return {"l1": (l1, 0.0), "psnr": (psnr, 0.0), "ssim": (0.9, 0.0)}
    model = metrics(0.005, 24.0)
    entry = {"steps": 100, "seeds": [0, 1], "train_seconds": (1.0, 0.0), "one_step_model": model,
             "one_step_copy_last": metrics(0.05, 14.0), "one_step_continue_motion": metrics(0.006, 22.0),
             "one_step_mean_frame": metrics(0.2, 10.0), "rollout10_model": metrics(0.02, 18.0),
             "rollout10_copy_last": metrics(0.08, 11.0), "rollout10_continue_motion": metrics(0.03, 16.0),
             "one_step_minus_continue_motion_psnr": (2.0, 0.1), "one_step_minus_continue_motion_l1": (-0.001, 1e-4),
             "beats_continue_motion": 2, "beats_copy_last": 2, "per_seed_psnr": [23.9, 24.1]}
    assert run_experiments.strongest_baseline(entry) == "continue_motion"
    table = run_experiments.compact_table({"best": entry}).splitlines()
    assert "| Δ\u00a0motion | beats\u00a0motion | 10-step |" in table[0]  # no-break spaces: headers never wrap
    # PSNR as mean ± std and per seed (one word: it never wraps), the other columns as means.
    assert table[2] == "| best | 100 | 0.0050 | 24.00 ± 0.00 | 0.900 | 23.9/24.1 | +2.00 | 2/2 | 18.00 | – |"
    assert table[4].startswith("| *continue motion* | – | 0.0060 | 22.00 | 0.900 |")
    assert table[4].endswith("| 16.00 | – |") and all(line.count("|") == table[0].count("|") for line in table)


def test_the_runner_stops_on_sigterm_with_a_quicksave(tiny_configs):
    """SIGTERM finishes the step, quicksaves, skips the report and exits 128 + 15 (resuming: the test above)."""
    import signal
    import subprocess
    import sys
    import time

    root = tiny_configs
    args = [sys.executable, "-m", "scripts.run_experiments", "--runs", "full", "--seeds", "0", "--steps", "100000",
            "--config-root", str(root), "--runs-dir", str(root / "runs"), "--results", str(root / "results"),
            "--name", "stop", "--threads", "1", "--no-figures"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = root / "runs" / "full.seed0" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3) and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, out
    assert "stopped by SIGTERM" in out and "the same command resumes" in out
    saved = torch.load(root / "runs" / "full.seed0" / "quicksave.ckpt", weights_only=True)
    assert saved["step"] >= 3 and not (root / "runs" / "full.seed0" / "done.json").exists()
    assert not (root / "results" / "stop").exists()  # no report of an unfinished set


def test_every_trial_of_the_search_trains_the_same_flops():
    """A trial's steps: the FLOPs of --steps-per-trial steps of the base config, at most twice as many; under a
    tenth of them the trial is skipped."""
    from model.engine import step_flops
    from scripts import tune

    base = load_config("config/vit_cpu.json")
    wider = with_overrides(base, {"model.channels": 128, "model.num_heads": 4})
    smaller = with_overrides(base, {"model.layers": 2, "model.num_frames": 2})
    assert tune.trial_steps(base, base, 3000) == 3000
    steps = tune.trial_steps(base, wider, 3000)
    assert 300 <= steps < 3000
    assert steps * step_flops(wider) == pytest.approx(3000 * step_flops(base), rel=1e-3)
    assert 3000 < tune.trial_steps(base, smaller, 3000) <= 6000
    huge = with_overrides(base, {"model.channels": 128, "model.num_heads": 4, "model.layers": 6,
                                 "model.patch_size": 8, "model.num_frames": 4})
    assert tune.too_few_steps(tune.trial_steps(base, huge, 3000), 3000)  # skipped, not given more compute
    assert not tune.too_few_steps(tune.trial_steps(base, wider, 3000), 3000)


def test_the_flop_count_includes_the_attention_products():
    """PyTorch's counter has no formula for the fused CPU attention: both paths must count the same products,
    and four times the tokens (patch 8 instead of 16) must cost more than four times the FLOPs (the
    attention's T^2 products; the linear layers alone scale by four)."""
    from model.engine import step_flops

    base = with_overrides(load_config("config/vit_cpu.json"), {"model.layers": 2, "model.batch_size": 2})
    assert step_flops(base) == step_flops(with_overrides(base, {"model.fused_attention": False}))
    assert step_flops(with_overrides(base, {"model.patch_size": 8})) > 5 * step_flops(base)
