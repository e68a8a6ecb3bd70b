"""Where Exercise 2 stands against its targets, read from the committed results of the sheet's model.

    python -m scripts.targets                 # -> results/vit/targets.json, results/vit/targets.md

Every target is judged per seed on the test part, against the baselines on the same windows:
  - the sheet's model (sheet30k) at least 3 dB above the copy of the last frame with a lower L1, on every seed;
    continue motion and the held player (the strongest baseline) are the aims beyond it;
  - 2 (d), (e): the sheet's model against each ablation at 10 000 steps, the gap beyond the seeds' spread;
  - masked reconstruction at least 3 dB above the best of the baselines that take one frame (model.baselines);
  - 2 (f): the search's pick and width 128, trained the FLOPs of the sheet's model's 30 000 steps, above the
    sheet's model by more than its seeds' spread; every model of 2 (f) on the training part against the sheet's
    "perfectly memorise" (30 dB, an aim); the memorising model (config/vit_memorise.json, 2 (f)'s submission)
    above the held player with a lower L1 on every seed (an aim), and above the sheet's model at its own budget.
A target whose runs are not in the results yet is "not measured", never met.
"""
import json
import sys
from pathlib import Path

import numpy as np

from model.baselines import BASELINES
from model.cli import CliParser, fail
from model.files import write_json_atomically, write_text_atomically

COPY_MARGIN_DB = 3.0  # the sheet's model over the copy of the last frame
MASKED_MARGIN_DB = 3.0  # masked reconstruction over the best simple fill
MEMORISED_DB = 30.0  # train-part PSNR the sheet's "perfectly memorise" stands for here
MASKED_BASELINES = tuple(name for name, baseline in BASELINES.items() if baseline.takes_frames(1))

# target name -> (results file, variant)
RUNS = {
    "sheet's model": ("sheet/results.json", "sheet30k"),
    "sheet's model at 10 000 steps": ("sheet_ablation/results.json", "sheet10k_full"),
    "without attention": ("sheet_ablation/results.json", "sheet10k_noattention"),
    "without positions": ("sheet_ablation/results.json", "sheet10k_nopos"),
    "masked reconstruction": ("sheet_masked/results.json", "sheet_masked10k_full"),
    "search's pick": ("sheet_tuned/results.json", "tuned"),
    "width 128": ("sheet_tuned/results.json", "sheet_wide"),
    "memorising model": ("memorise/results.json", "vit_memorise"),
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


def beats_best_fill(runs, margin_db):
    """Target: every seed at least margin_db above the best of MASKED_BASELINES on its windows."""
    if not runs:
        return {"status": "not measured", "seeds": []}
    psnr = {seed: run["one_step"]["model"]["psnr"] - max(run["one_step"][name]["psnr"] for name in MASKED_BASELINES)
            for seed, run in runs.items()}
    return {"status": "met" if all(value >= margin_db for value in psnr.values()) else "not met",
            "seeds": sorted(runs, key=int), "psnr_margin": psnr}


def gap_beyond_spread(full, ablation):
    """Target: the full model's one-step PSNR is above the ablation's by more than the two seed spreads together
    (sample std; needs two seeds of each). psnr_margin: per seed of the ablation, the full model's mean minus it."""
    if not full or not ablation:
        return {"status": "not measured", "seeds": sorted(ablation, key=int)}
    ours = np.array([run["one_step"]["model"]["psnr"] for run in full.values()])
    theirs = {seed: run["one_step"]["model"]["psnr"] for seed, run in ablation.items()}
    gap = float(ours.mean() - np.mean(list(theirs.values())))
    if len(ours) < 2 or len(theirs) < 2:
        status = "not shown (one seed)"
    else:
        spread = float(ours.std(ddof=1) + np.std(list(theirs.values()), ddof=1))
        status = "met" if gap > spread else "not met"  # the full model above the ablation, beyond the spread
    return {"status": status, "seeds": sorted(ablation, key=int), "gap": gap,
            "psnr_margin": {seed: float(ours.mean() - value) for seed, value in theirs.items()}}


def above_beyond_spread(candidate, reference):
    """Target: every seed of the candidate above the reference's mean one-step PSNR by more than the reference's
    seed spread (sample std; the candidate may have one seed). psnr_margin: per seed, the candidate minus the mean."""
    if not candidate or len(reference) < 2:
        return {"status": "not measured", "seeds": sorted(candidate, key=int)}
    theirs = np.array([run["one_step"]["model"]["psnr"] for run in reference.values()])
    margin = {seed: run["one_step"]["model"]["psnr"] - float(theirs.mean()) for seed, run in candidate.items()}
    met = all(value > theirs.std(ddof=1) for value in margin.values())
    status = ("met" if met else "not met") + (" (one seed)" if len(candidate) == 1 else "")
    return {"status": status, "seeds": sorted(candidate, key=int), "psnr_margin": margin}


def memorised(runs):
    """Aim: every seed at least MEMORISED_DB on the training part. psnr_margin: per seed, the train-part PSNR
    minus MEMORISED_DB."""
    if not runs:
        return {"status": "not measured", "seeds": []}
    margin = {seed: run["train_one_step"]["model"]["psnr"] - MEMORISED_DB for seed, run in runs.items()}
    return {"status": "met" if all(value >= 0 for value in margin.values()) else "not met",
            "seeds": sorted(runs, key=int), "psnr_margin": margin}


def assess(results_dir):
    """All targets -> dict."""
    sheet = seed_runs(results_dir, "sheet's model")
    full10k = seed_runs(results_dir, "sheet's model at 10 000 steps")
    memorising = seed_runs(results_dir, "memorising model")
    targets = {
        "sheet's model: copy + 3 dB and a lower L1, every seed": beats(sheet, "copy_last", COPY_MARGIN_DB),
        "sheet's model: above continue motion (aim)": beats(sheet, "continue_motion"),
        "sheet's model: above the held player (aim)": beats(sheet, "player_held"),
        "without attention: below the sheet's model beyond the spread":
            gap_beyond_spread(full10k, seed_runs(results_dir, "without attention")),
        "without positions: below the sheet's model beyond the spread":
            gap_beyond_spread(full10k, seed_runs(results_dir, "without positions")),
        "masked reconstruction: 3 dB above the best simple fill":
            beats_best_fill(seed_runs(results_dir, "masked reconstruction"), MASKED_MARGIN_DB),
        **{f"{name}: above the sheet's model beyond its spread, equal FLOPs":
           above_beyond_spread(seed_runs(results_dir, name), sheet) for name in ("search's pick", "width 128")},
        "memorising model: above the held player (aim)": beats(memorising, "player_held"),
        "memorising model: above the sheet's model beyond its spread, its own budget":
            above_beyond_spread(memorising, sheet),
        **{f"{name}: the training part memorised, {MEMORISED_DB:.0f} dB (aim)": memorised(seed_runs(results_dir, name))
           for name in ("sheet's model", "search's pick", "width 128", "memorising model")},
    }
    reported = {seed: {"train_psnr": run["train_one_step"]["model"]["psnr"],
                       **{f"rollout10_{name}_psnr": run["rollout"][name]["psnr"][-1]
                          for name in ("model", "copy_last", "continue_motion", "player_held")}}
                for seed, run in sheet.items()}
    return {"memorised_db": MEMORISED_DB, "targets": targets, "sheet_model": reported}


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
    for seed, run in assessment["sheet_model"].items():
        lines += ["", f"The sheet's model, seed {seed}: training part {run['train_psnr']:.2f} dB (memorised would be "
                  f"{assessment['memorised_db']:.0f} dB or more); tenth closed-loop step {run['rollout10_model_psnr']:.2f} dB "
                  f"against the copy's {run['rollout10_copy_last_psnr']:.2f}, continue motion's "
                  f"{run['rollout10_continue_motion_psnr']:.2f} and the held player's {run['rollout10_player_held_psnr']:.2f}."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = CliParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results/vit"), help="the results folder of Exercise 2")
    args = parser.parse_args(argv)
    headline = args.results / RUNS["sheet's model"][0]
    if not headline.is_file():
        return fail(f"no {headline}: run python -m scripts.run_experiments --set sheet first, or name the folder "
                    f"with --results", 1)
    assessment = assess(args.results)
    write_json_atomically(args.results / "targets.json", assessment)
    write_text_atomically(args.results / "targets.md", markdown(assessment))
    print(markdown(assessment), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
