"""scripts/targets.py judges every target per seed from the results files, and never calls a missing one met."""
import json

from scripts import targets


def run(model_psnr, model_l1, copy=(14.0, 0.05), motion=(22.0, 0.007), held=(24.0, 0.005), train=25.0):
    one_step = {"model": {"psnr": model_psnr, "l1": model_l1}, "copy_last": {"psnr": copy[0], "l1": copy[1]},
                "continue_motion": {"psnr": motion[0], "l1": motion[1]},
                "player_held": {"psnr": held[0], "l1": held[1]}}
    rollout = {name: {"psnr": [20.0, 15.0]} for name in ("model", "copy_last", "continue_motion", "player_held")}
    return {"one_step": one_step, "train_one_step": {"model": {"psnr": train}}, "rollout": rollout}


def masked(model_psnr, fills=(10.2, 10.0, 10.1)):
    return {"one_step": {"model": {"psnr": model_psnr},
                         **{name: {"psnr": value} for name, value in zip(targets.MASKED_BASELINES, fills)}}}


def write(folder, file, variants):
    (folder / file).parent.mkdir(parents=True, exist_ok=True)
    (folder / file).write_text(json.dumps({"runs": variants}))


def test_targets_are_judged_on_every_seed(tmp_path):
    write(tmp_path, "sheet/results.json", {"sheet30k": {"0": run(22.0, 0.03), "1": run(16.5, 0.04)}})
    write(tmp_path, "sheet_ablation/results.json", {
        "sheet10k_full": {"0": run(21.5, 0.03), "1": run(21.6, 0.03), "2": run(21.4, 0.03)},
        "sheet10k_noattention": {"0": run(10.2, 0.27), "1": run(10.3, 0.27)},
        "sheet10k_nopos": {"0": run(21.0, 0.03)}})
    write(tmp_path, "sheet_masked/results.json", {"sheet_masked10k_full": {"0": masked(15.0), "1": masked(13.0)}})
    assert targets.main(["--results", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "targets.json").read_text())["targets"]
    headline = result["sheet's model: copy + 3 dB and a lower L1, every seed"]
    assert headline["status"] == "not met" and headline["worst_psnr_margin"] == 2.5  # seed 1: +2.5 dB only
    assert result["sheet's model: above continue motion (aim)"]["status"] == "not met"
    gap = result["without attention: below the sheet's model beyond the spread"]
    assert gap["status"] == "met" and abs(gap["gap"] - 11.25) < 1e-9
    assert result["without positions: below the sheet's model beyond the spread"]["status"] == "not shown (one seed)"
    fill = result["masked reconstruction: 3 dB above the best simple fill"]
    assert fill["status"] == "not met" and abs(fill["psnr_margin"]["0"] - 4.8) < 1e-9  # seed 1: +2.8 dB
    text = (tmp_path / "targets.md").read_text()
    assert "| sheet's model: copy + 3 dB and a lower L1, every seed | 0, 1 | +8.00 dB, +2.50 dB" in text
    assert "The sheet's model, seed 0: training part 25.00 dB" in text


def test_a_missing_ablation_is_not_measured_never_met(tmp_path):
    write(tmp_path, "sheet/results.json", {"sheet30k": {"0": run(22.0, 0.03)}})
    assert targets.main(["--results", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "targets.json").read_text())["targets"]
    assert result["sheet's model: copy + 3 dB and a lower L1, every seed"]["status"] == "met on its one seed"
    assert result["without positions: below the sheet's model beyond the spread"]["status"] == "not measured"
    assert result["masked reconstruction: 3 dB above the best simple fill"]["status"] == "not measured"


def test_a_gap_within_the_spread_is_not_claimed():
    full = {"0": run(21.0, 0.03), "1": run(22.0, 0.03)}
    close = targets.gap_beyond_spread(full, {"0": run(20.8, 0.03), "1": run(21.6, 0.03)})
    assert close["status"] == "not met"  # 0.3 dB apart, spreads 0.71 + 0.57
    clear = targets.gap_beyond_spread(full, {"0": run(15.0, 0.03), "1": run(15.2, 0.03)})
    assert clear["status"] == "met"
    better = targets.gap_beyond_spread(full, {"0": run(28.0, 0.03), "1": run(28.2, 0.03)})
    assert better["status"] == "not met" and better["gap"] < 0  # an ablation above the full model is no loss


def test_a_missing_results_folder_is_one_line_and_exit_1(tmp_path, capsys):
    assert targets.main(["--results", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "run python -m scripts.run_experiments --set sheet first" in err


def test_a_tuned_model_counts_only_beyond_the_sheet_models_spread():
    sheet = {"0": run(22.0, 0.03), "1": run(22.2, 0.03), "2": run(22.1, 0.03)}  # mean 22.1, std 0.1
    assert targets.above_beyond_spread({"0": run(22.15, 0.03)}, sheet)["status"] == "not met (one seed)"
    clear = targets.above_beyond_spread({"0": run(22.5, 0.03)}, sheet)
    assert clear["status"] == "met (one seed)" and abs(clear["psnr_margin"]["0"] - 0.4) < 1e-9
    assert targets.above_beyond_spread({}, sheet)["status"] == "not measured"
    assert targets.memorised({"0": run(22.0, 0.03, train=31.0)})["status"] == "met"
    assert targets.memorised({"0": run(22.0, 0.03, train=31.0), "1": run(22.0, 0.03, train=29.0)})["status"] == "not met"
