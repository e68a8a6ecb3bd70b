"""Exercise 1 (d): where on the sequence each model generalises, and the TCN's kernel-slot paths behind it.

    python -m scripts.exercise1_analysis                     # results/timeseries/results.json -> analysis.{json,md}
    python -m scripts.exercise1_analysis --results DIR

Reads the runs of `python main.py` (results.json: every run's validation accuracy per token position) and
writes, per task whose training and validation positions differ (memorygen, memorygen_reverse):

    analysis.json   per task and model the final numbers over seeds (summary: those of main.py's table); per
                    model the validation accuracy by position (mean over seeds); the validation positions
                    grouped by the kernel slots of the TCN's last two layers (net.tcn_kernel_slots: with
                    kernel = stride = 3 every input step has one path of slots to the output), with each
                    group's mean accuracy per model and whether a training token used that layer-3 slot, that
                    layer-4 slot, and both on one path
    analysis.md     the same groups as a table

A weight of the TCN is trained on tokens only where a training token's path uses it; a slot that no training
token passes through sees, in training, only the response to empty steps.
"""
import json
import math
import sys
from pathlib import Path

import numpy as np

from data import FITTED, make_task, seed_summary
from model.cli import CliParser, fail
from net import tcn_kernel_slots, tcn_num_layers


def accuracy_by_position(runs):
    """Runs of one task and model -> mean validation accuracy over seeds per position (None where no token)."""
    columns = zip(*(run["val_accuracy_by_position"] for run in runs))
    means = []
    for column in columns:
        values = [value for value in column if value is not None]
        means.append(float(np.mean(values)) if values else None)
    return means


def slot_groups(train_positions, val_positions, sequence_length):
    """Validation positions grouped by the TCN's last two kernel slots, in order of position."""
    layers = tcn_num_layers(sequence_length)
    top = {p: tcn_kernel_slots(p, sequence_length)[-2:] for p in range(sequence_length - 1)}
    trained_pairs = {top[p] for p in train_positions}
    trained_slots = [{top[p][i] for p in train_positions} for i in range(2)]
    groups = []
    for p in val_positions:
        if groups and groups[-1]["slots"] == list(top[p]) and groups[-1]["positions"][-1] == p - 1:
            groups[-1]["positions"].append(p)
            continue
        groups.append({"positions": [p], "slots": list(top[p]),
                       f"layer{layers - 1}_slot_on_a_training_path": top[p][0] in trained_slots[0],
                       f"layer{layers}_slot_on_a_training_path": top[p][1] in trained_slots[1],
                       "pair_on_a_training_path": top[p] in trained_pairs})
    return groups


def fit_summary(runs, num_tokens):
    """data.seed_summary and whether each seed fitted its training set: a final training loss below three
    quarters of chance (ln num_tokens), with the range of the final training loss in each group."""
    summary = seed_summary(runs)
    chance = math.log(num_tokens)
    losses = [run["train_loss"][-1] for run in runs]
    fitted = [loss for loss in losses if loss < FITTED * chance]
    unfitted = [loss for loss in losses if loss >= FITTED * chance]
    summary.update(chance_loss=chance, fitted=len(fitted),
                   fitted_train_loss_min=min(fitted, default=None), fitted_train_loss_max=max(fitted, default=None),
                   unfitted_train_loss_min=min(unfitted, default=None),
                   unfitted_train_loss_max=max(unfitted, default=None),
                   worst_seed=worst_seed(runs))
    return summary


def worst_seed(runs):
    """The seed with the lowest final validation accuracy: its seed, final and best accuracy, the epoch of
    the best (1-based, the first), and the highest training loss from that epoch on (a loss spike after the
    best epoch marks a seed that learned the task and lost it again)."""
    run = min(runs, key=lambda run: (run["final_accuracy"], run["seed"]))
    accuracy, train_loss = run["val_accuracy"], run["train_loss"]
    best_epoch = int(np.argmax(accuracy)) + 1
    return {"seed": run["seed"], "final_accuracy": run["final_accuracy"], "best_accuracy": max(accuracy),
            "best_epoch": best_epoch, "train_loss_at_best": train_loss[best_epoch - 1],
            "max_train_loss_after_best": max(train_loss[best_epoch - 1:]), "final_train_loss": train_loss[-1]}


def analyse(results):
    sequence_length = results["config"]["sequence_length"]
    layers = tcn_num_layers(sequence_length)
    analysis = {"sequence_length": sequence_length, "tcn_layers": layers, "summary": {}, "tasks": {}}
    for task in dict.fromkeys(run["task"] for run in results["runs"]):
        task_runs = [run for run in results["runs"] if run["task"] == task]
        analysis["summary"][task] = {model: fit_summary([run for run in task_runs if run["model"] == model],
                                                    results["config"]["num_tokens"])
                                     for model in dict.fromkeys(run["model"] for run in task_runs)}
        train_positions, val_positions = make_task(task, sequence_length)
        if list(train_positions) == list(val_positions):
            continue
        models = list(dict.fromkeys(run["model"] for run in results["runs"] if run["task"] == task))
        by_position = {model: accuracy_by_position([run for run in results["runs"]
                                                    if run["task"] == task and run["model"] == model])
                       for model in models}
        groups = slot_groups(train_positions, val_positions, sequence_length)
        for group in groups:
            group["accuracy"] = {model: float(np.mean([by_position[model][p] for p in group["positions"]]))
                                 for model in models}
        analysis["tasks"][task] = {"train_positions": [train_positions.start, train_positions.stop - 1],
                                   "val_positions": [val_positions.start, val_positions.stop - 1],
                                   "seeds": sorted({run["seed"] for run in results["runs"]}),
                                   "accuracy_by_position": by_position, "groups": groups}
    return analysis


def markdown(analysis):
    """One table: per task and group of validation positions the TCN's slots, whether training tokens used
    them, and each model's validation accuracy there."""
    layers = analysis["tcn_layers"]
    models = list(dict.fromkeys(model for entry in analysis["tasks"].values() for model in entry["accuracy_by_position"]))
    # Headings short enough for a page: "trained" = on the path of a training token.
    nbsp = "\u00a0"  # no-break spaces: the headings stay on one line in the report
    lines = [f"| task (trained on) | positions | slots{nbsp}L{layers - 1},{nbsp}L{layers} | L{layers - 1}{nbsp}trained | "
             f"L{layers}{nbsp}trained | pair{nbsp}trained | " + " | ".join(model.upper() for model in models) + " |",
             "|---|---|---|---|---|---|" + "---:|" * len(models)]
    for task, entry in analysis["tasks"].items():
        first, last = entry["train_positions"]
        for group in entry["groups"]:
            positions = group["positions"]
            span = f"{positions[0]}-{positions[-1]}" if len(positions) > 1 else f"{positions[0]}"
            flags = [group[f"layer{layers - 1}_slot_on_a_training_path"],
                     group[f"layer{layers}_slot_on_a_training_path"], group["pair_on_a_training_path"]]
            lines.append(f"| {task} ({first}-{last}) | {span} | {group['slots'][0]}, {group['slots'][1]} | "
                         + " | ".join("yes" if flag else "no" for flag in flags) + " | "
                         + " | ".join(f"{group['accuracy'][model]:.3f}" if model in group["accuracy"] else "–"
                                      for model in models) + " |")
    seeds = sorted({seed for entry in analysis["tasks"].values() for seed in entry["seeds"]})
    return ("\n".join(lines) + f"\n\nValidation accuracy: mean over the positions of a group of the mean over "
            f"{len(seeds)} seeds.\n")


def main(argv=None):
    parser = CliParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results/timeseries", help="folder with results.json of main.py")
    args = parser.parse_args(argv)
    folder = Path(args.results)
    try:
        results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        return fail(f"cannot read {folder / 'results.json'}: {error}; run python main.py --out {folder} first", 1)
    analysis = analyse(results)
    (folder / "analysis.json").write_text(json.dumps(analysis, indent=1) + "\n", encoding="utf-8")
    text = markdown(analysis)
    (folder / "analysis.md").write_text(f"# Exercise 1: accuracy by position and the TCN's paths\n\n"
                                        f"`python -m scripts.exercise1_analysis --results {folder}`\n\n{text}",
                                        encoding="utf-8")
    print(text)
    print(f"wrote {folder / 'analysis.json'}, {folder / 'analysis.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
