"""Where Exercise 2 stands against its targets, read from the committed results of the long runs.

    python -m scripts.targets                 # -> results/vit/targets.json, results/vit/targets.md

Every target is judged per seed on the test part, against the baselines on the same windows:
  - the selected model (best_long) beats continue motion by at least 2 dB in one-step PSNR and with a lower L1,
    on every seed (its configuration at 10 000 steps, ablation10k_full, is listed alongside);
  - the sheet's model (sheet_cpu_long) is above the copy of the last frame by more than its seeds' spread;
  - the selected configuration beats the copy on the test part of Atari Pong and River Raid (10 000 steps);
  - how close the selected model comes to memorising the training part (30 dB), and its 10-step closed loop
    against both baselines (reported, not judged).
A target whose runs are not in the results yet is "not measured", never met.
"""
import json
import sys
from pathlib import Path

import numpy as np

from model.cli import CliParser, fail
from model.files import write_json_atomically, write_text_atomically

MARGIN_DB = 2.0  # over continue motion
MEMORISED_DB = 30.0  # train-part PSNR the sheet's "perfectly memorise" stands for here

# target name -> (results file, variant)
RUNS = {
    "selected model": ("long/results.json", "best_long"),
    "selected configuration at 10 000 steps": ("long_ablation/results.json", "ablation10k_full"),
    "sheet's model": ("long/results.json", "sheet_cpu_long"),
    "Atari Pong": ("long_pong/results.json", "pong10k"),
    "Atari River Raid": ("long_riverraid/results.json", "riverraid10k"),
}


def seed_runs(results_dir, name):
    """{seed: eval} of one target's variant, or {} when its results are not committed yet."""
    file, variant = RUNS[name]
    path = Path(results_dir) / file
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))["runs"].get(variant, {})


def margins(runs, baseline):
    """Per seed: the model's one-step PSNR minus the baseline's (dB) and its L1 minus the baseline's."""
    return ({seed: run["one_step"]["model"]["psnr"] - run["one_step"][baseline]["psnr"] for seed, run in runs.items()},
            {seed: run["one_step"]["model"]["l1"] - run["one_step"][baseline]["l1"] for seed, run in runs.items()})


def beats(runs, baseline, margin_db=0.0):
    """Target: every seed at least margin_db above the baseline in PSNR, and below it in L1."""
    if not runs:
        return {"status": "not measured", "seeds": []}
    psnr, l1 = margins(runs, baseline)
    met = all(psnr[s] >= margin_db and l1[s] < 0 for s in runs)
    status = "not met" if not met else "met" if len(runs) > 1 else "met on its one seed"
    return {"status": status, "seeds": sorted(runs, key=int),
            "psnr_margin": psnr, "l1_margin": l1, "worst_psnr_margin": min(psnr.values())}


def beyond_spread(runs, baseline):
    """Target: above the baseline by more than the seeds' spread (sample std; needs two seeds)."""
    if not runs:
        return {"status": "not measured", "seeds": []}
    psnr, _ = margins(runs, baseline)
    values = np.array(list(psnr.values()))
    spread = float(values.std(ddof=1)) if len(values) > 1 else None
    if values.min() <= 0:
        status = "not met"
    elif spread is None:
        status = "not shown (one seed)"
    else:
        status = "met" if values.mean() > spread else "not met"
    return {"status": status, "seeds": sorted(runs, key=int), "psnr_margin": psnr, "spread": spread}


def assess(results_dir):
    """All targets -> dict."""
    selected = seed_runs(results_dir, "selected model")
    targets = {
        "selected model beats continue motion by 2 dB and in L1, every seed":
            beats(selected, "continue_motion", MARGIN_DB),
        "selected configuration at 10 000 steps, the same":
            beats(seed_runs(results_dir, "selected configuration at 10 000 steps"), "continue_motion", MARGIN_DB),
        "sheet's model above the copy beyond the seed spread":
            beyond_spread(seed_runs(results_dir, "sheet's model"), "copy_last"),
        "Atari Pong: beats the copy": beats(seed_runs(results_dir, "Atari Pong"), "copy_last"),
        "Atari River Raid: beats the copy": beats(seed_runs(results_dir, "Atari River Raid"), "copy_last"),
    }
    reported = {seed: {"train_psnr": run["train_one_step"]["model"]["psnr"],
                       "train_psnr_continue_motion": run["train_one_step"]["continue_motion"]["psnr"],
                       **{f"rollout10_{name}_psnr": run["rollout"][name]["psnr"][-1]
                          for name in ("model", "copy_last", "continue_motion")}}
                for seed, run in selected.items()}
    return {"margin_db": MARGIN_DB, "memorised_db": MEMORISED_DB, "targets": targets, "selected_model": reported}


def markdown(assessment):
    lines = ["# Exercise 2: the targets", "", "`python -m scripts.targets` (test part; per seed: the model minus the "
             "baseline on the same windows).", "", "| target | seeds | measured | status |", "|---|---|---|---|"]
    for name, target in assessment["targets"].items():
        seeds = ", ".join(target["seeds"]) or "–"
        if "psnr_margin" in target:
            measured = ", ".join(f"{value:+.2f} dB" for value in target["psnr_margin"].values())
            if "l1_margin" in target:
                margins = list(target["l1_margin"].values())
                digits = 4 if max(abs(value) for value in margins) >= 0.0005 else 6  # footage that hardly changes
                measured += " (L1 " + ", ".join(f"{value:+.{digits}f}" for value in margins) + ")"
        else:
            measured = "–"
        lines.append(f"| {name} | {seeds} | {measured} | {target['status']} |")
    for seed, run in assessment["selected_model"].items():
        lines += ["", f"Selected model, seed {seed}: training part {run['train_psnr']:.2f} dB (continue motion "
                  f"{run['train_psnr_continue_motion']:.2f}; memorised would be {assessment['memorised_db']:.0f} dB or more); "
                  f"tenth closed-loop step {run['rollout10_model_psnr']:.2f} dB against the copy's "
                  f"{run['rollout10_copy_last_psnr']:.2f} and continue motion's {run['rollout10_continue_motion_psnr']:.2f}."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = CliParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results/vit"), help="the results folder of Exercise 2")
    args = parser.parse_args(argv)
    if not (args.results / RUNS["selected model"][0]).is_file():
        return fail(f"no {args.results / RUNS['selected model'][0]}: run python -m scripts.run_experiments --set long "
                    f"first, or name the folder with --results", 1)
    assessment = assess(args.results)
    write_json_atomically(args.results / "targets.json", assessment)
    write_text_atomically(args.results / "targets.md", markdown(assessment))
    print(markdown(assessment), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
