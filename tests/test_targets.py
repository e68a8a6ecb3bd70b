"""scripts/targets.py judges every target per seed from the results files, and never calls a missing one met."""
import json

from scripts import targets


def run(model_psnr, model_l1, copy=(14.0, 0.05), motion=(22.0, 0.007), train=25.0):
    one_step = {"model": {"psnr": model_psnr, "l1": model_l1}, "copy_last": {"psnr": copy[0], "l1": copy[1]},
                "continue_motion": {"psnr": motion[0], "l1": motion[1]}}
    rollout = {name: {"psnr": [20.0, 15.0]} for name in ("model", "copy_last", "continue_motion")}
    return {"one_step": one_step, "train_one_step": {"model": {"psnr": train}, "continue_motion": {"psnr": 22.0}},
            "rollout": rollout}


def write(folder, file, variant, runs):
    (folder / file).parent.mkdir(parents=True, exist_ok=True)
    (folder / file).write_text(json.dumps({"runs": {variant: runs}}))


def test_targets_are_judged_on_every_seed(tmp_path, capsys):
    write(tmp_path, "long/results.json", "best_long", {"0": run(24.5, 0.004), "1": run(23.0, 0.005)})
    write(tmp_path, "long_ablation/results.json", "ablation10k_full", {"0": run(24.1, 0.004)})
    write(tmp_path, "long_pong/results.json", "pong10k", {"0": run(14.5, 0.049), "1": run(14.2, 0.051)})
    assert targets.main(["--results", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "targets.json").read_text())["targets"]
    selected = result["selected model beats continue motion by 2 dB and in L1, every seed"]
    assert selected["status"] == "not met" and selected["worst_psnr_margin"] == 1.0  # seed 1: +1.0 dB only
    assert result["selected configuration at 10 000 steps, the same"]["status"] == "met on its one seed"
    assert result["Atari Pong: beats the copy"]["status"] == "not met"  # seed 1 has the higher L1
    assert result["Atari River Raid: beats the copy"]["status"] == "not measured"
    # The sheet's model is not in these results: not measured, never met.
    assert result["sheet's model above the copy beyond the seed spread"]["status"] == "not measured"
    assert "| selected model beats continue motion by 2 dB and in L1, every seed | 0, 1 | +2.50 dB, +1.00 dB" in \
        (tmp_path / "targets.md").read_text()


def test_above_the_copy_beyond_the_spread_needs_two_seeds():
    one = targets.beyond_spread({"0": run(15.0, 0.04)}, "copy_last")
    assert one["status"] == "not shown (one seed)"
    close = targets.beyond_spread({"0": run(14.2, 0.04), "1": run(15.8, 0.04)}, "copy_last")  # +0.2, +1.8
    assert close["status"] == "not met" and abs(close["spread"] - 1.1314) < 1e-3
    clear = targets.beyond_spread({"0": run(16.0, 0.04), "1": run(16.4, 0.04)}, "copy_last")
    assert clear["status"] == "met"


def test_a_missing_results_folder_is_one_line_and_exit_1(tmp_path, capsys):
    assert targets.main(["--results", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "run python -m scripts.run_experiments --set long first" in err


def test_a_tiny_l1_margin_is_printed_with_its_digits(tmp_path):
    # Footage that hardly changes (Atari Pong): an L1 margin of 1e-5 must not print as +0.0000.
    write(tmp_path, "long/results.json", "best_long", {"0": run(24.5, 0.004)})
    write(tmp_path, "long_pong/results.json", "pong10k", {"0": run(37.2, 0.000626, copy=(37.1, 0.000616))})
    assert targets.main(["--results", str(tmp_path)]) == 0
    assert "| Atari Pong: beats the copy | 0 | +0.10 dB (L1 +0.000010) | not met |" in \
        (tmp_path / "targets.md").read_text()
