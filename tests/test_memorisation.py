"""scripts/memorisation.py: the memorisation curve read from a run's metrics.jsonl, and where the aim stands."""
import json
import math

import pytest

from scripts import memorisation


def write_run(run_dir, psnr_of_step, steps=(1000, 2000, 4000, 8000)):
    """A metrics.jsonl with a training record between validations; 0.5 s a step."""
    lines = []
    for step in steps:
        lines.append({"step": step - 100, "seconds": 0.5 * (step - 100), "train_loss": 0.01})
        lines.append({"step": step, "seconds": 0.5 * step, "train_loss": 0.01, "val_psnr": psnr_of_step(step) - 3,
                      "train_part_psnr": psnr_of_step(step), "train_part_l1": 0.01, "train_part_windows": 800})
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run_dir


def test_the_curve_holds_each_validation_with_its_hours_and_the_rate_is_that_of_the_run(tmp_path):
    points, records = memorisation.read_points(write_run(tmp_path / "run", lambda step: 20.0))
    assert [p["step"] for p in points] == [1000, 2000, 4000, 8000]
    assert points[-1]["hours"] == pytest.approx(8000 * 0.5 / 3600)
    assert memorisation.rate(records) == pytest.approx(3600 / 0.5)


def test_an_unreached_aim_is_extrapolated_along_log_steps_with_its_compute():
    points = [{"step": s, "hours": s / 7200, "train_part_psnr": 10 + 4 * math.log10(s)} for s in (1e3, 2e3, 4e3, 8e3)]
    found = memorisation.aim(points, steps_per_hour=7200, flops=1e11)["extrapolation"]
    assert found["db_per_decade"] == pytest.approx(4.0)
    assert found["steps"] == pytest.approx(1e5)  # 10 + 4 * 5 = 30 dB
    assert found["hours_here"] == pytest.approx(1e5 / 7200)
    assert found["pflop"] == pytest.approx(1e5 * 1e11 / 1e15)
    assert found["gpu_hours"][0] < found["gpu_hours"][1]  # at 30 % of the peak, then at 10 %


def test_a_reached_aim_names_its_first_step_and_a_flat_curve_extrapolates_nothing():
    points = [{"step": s, "hours": s / 7200, "train_part_psnr": p} for s, p in ((1000, 25), (2000, 30.5), (4000, 31))]
    assert memorisation.aim(points, 7200, 1e11) == {"reached_at_step": 2000, "reached_after_hours": 2000 / 7200}
    flat = [{"step": s, "hours": 0, "train_part_psnr": 20.0 - s / 1e4} for s in (1000, 2000, 4000)]
    assert memorisation.aim(flat, 7200, 1e11)["extrapolation"]["steps"] is None


def test_a_run_without_training_part_scores_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "seconds": 1.0}) + "\n")
    assert memorisation.main(["--runs", str(run), "--out", str(tmp_path / "out")]) == 1
    assert "no training-part scores" in capsys.readouterr().err
    assert memorisation.main(["--runs", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 1
    assert "train with python -m model.main" in capsys.readouterr().err


def test_several_seeds_are_read_in_seed_order_and_the_aim_stands_on_their_mean_curve(tmp_path):
    later = write_run(tmp_path / "vit_memorise.seed1", lambda step: 20.0)
    (later / "done.json").write_text(json.dumps({"seed": 1}))
    earlier = write_run(tmp_path / "vit_memorise.seed0", lambda step: 24.0, steps=(1000, 2000, 4000))  # unfinished
    runs = sorted((memorisation.read_run(run) for run in (later, earlier)), key=lambda run: run["seed"])
    assert [run["seed"] for run in runs] == [0, 1]  # from done.json, else from the folder's name
    mean = memorisation.mean_curve(runs)
    assert [p["step"] for p in mean] == [1000, 2000, 4000]  # the validations that every run reached
    assert all(p["train_part_psnr"] == pytest.approx(22.0) for p in mean)
