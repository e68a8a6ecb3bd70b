"""scripts/learning_curves.py: curves, time to quality and the sheet's budget from a run folder's metrics.jsonl."""
import json
import math

from model.config import config_from_dict
from scripts import learning_curves


def test_curves_and_the_time_to_quality_come_from_the_run_folder(tmp_path):
    run = tmp_path / "runs" / "tiny.seed0"
    run.mkdir(parents=True)
    cfg = config_from_dict({"model_path": "tiny", "model": {"batch_size": 2, "image_height": 16, "image_width": 16,
                                                             "patch_size": 8, "channels": 8, "layers": 1},
                            "training": {"max_steps": 30}})
    (run / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    records = []
    for step, psnr in ((10, 11.0), (20, 12.5), (30, 14.0)):
        records.append({"step": step - 5, "seconds": step - 5.0, "epoch": 0.1, "train_psnr": psnr - 1})
        records.append({"step": step, "seconds": float(step), "epoch": 0.2, "train_psnr": psnr, "val_psnr": psnr,
                        "val_l1": 0.1, "val_copy_last_psnr": 12.0, "val_continue_motion_psnr": 20.0,
                        "val_mean_frame_psnr": 9.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out"
    assert learning_curves.main(["--variants", "tiny", "--runs-dir", str(tmp_path / "runs"), "--out", str(out),
                                 "--frontier", "tiny", "--frontier-seeds", "0"]) == 0
    result = json.loads((out / "learning_curves.json").read_text())
    assert [point["val_psnr"] for point in result["frontier"]["points"]] == [14.0]  # finished: step 30 of 30
    entry = result["runs"]["tiny seed 0"]
    assert entry["steps_reached"] == 30 and entry["val"]["val_psnr"] == [11.0, 12.5, 14.0]
    assert entry["val"]["copy_last_psnr"] == 12.0 and entry["flop_per_step"] > 0
    assert entry["copy_last_plus_1db"] == {"step": 30, "seconds": 30.0, "margin_db": 1.0}  # 12.5 < 12 + 1 <= 14
    assert result["sheet_budget"]["epochs"] == 1000 and result["sheet_budget"]["flop"] > 0
    assert entry["flop"] == 30 * entry["flop_per_step"]
    assert result["sheet_budget"]["times_largest_run"] == result["sheet_budget"]["flop"] / entry["flop"]
    assert (out / "learning_curves.png").stat().st_size > 0 and (out / "compute.png").stat().st_size > 0
    status = (out / "status.md").read_text().splitlines()
    assert status[0].endswith("| copy-last frame | continue motion | held player | mean frame |")
    assert status[2] == ("| tiny seed 0 | 30 of 30 | 0.2 | 0.01 | 14.00 dB | 14.00 dB (30) | 14.0 dB | 12.00 dB | "
                         "20.00 dB | – | 9.00 dB |")  # the video of this run records no player
    assert learning_curves.main(["--variants", "none", "--runs-dir", str(tmp_path / "runs"), "--out", str(out)]) == 1


def test_the_frontier_fits_a_line_in_log_compute_through_finished_runs():
    budget = {"flop": 1e16}
    line = learning_curves.frontier([("b", 1e14, 22.0), ("a", 1e13, 20.0), ("c", 1e14, 22.0)], budget)
    assert [point["run"] for point in line["points"]] == ["a", "b", "c"]
    # Grouped by budget, smallest first, each with its seeds' runs and values.
    assert line["budgets"] == [{"flop": 1e13, "runs": ["a"], "val_psnr": [20.0]},
                               {"flop": 1e14, "runs": ["b", "c"], "val_psnr": [22.0, 22.0]}]
    assert abs(line["db_per_decade"] - 2.0) < 1e-9 and abs(line["sheet_budget_psnr"] - 26.0) < 1e-9
    # The slope of the two largest budgets (seeds averaged) carried on from the largest one.
    bent = learning_curves.frontier([("a", 1e12, 10.0), ("b", 1e13, 20.0), ("c", 1e14, 22.0), ("d", 1e14, 24.0)],
                                    budget)
    assert abs(bent["local_db_per_decade"] - 3.0) < 1e-9
    assert abs(bent["local_sheet_budget_psnr"] - (23.0 + 3.0 * math.log10(budget["flop"] / 1e14))) < 1e-9
    assert abs(line["extrapolation_factor"] - 100.0) < 1e-9
    assert "db_per_decade" not in learning_curves.frontier([("a", 1e13, 20.0), ("b", 1e13, 21.0)], budget)


def test_a_set_names_the_variants_of_scripts_run_experiments(tmp_path, capsys):
    # No run folders yet: each variant of the set is named as left out, then one line and exit 1.
    assert learning_curves.main(["--set", "sheet_masked", "--runs-dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert all(f"{variant}.seed0: no metrics.jsonl, left out" in captured.out
               for variant in learning_curves.SETS["sheet_masked"])
    assert captured.err.count("\n") == 1
