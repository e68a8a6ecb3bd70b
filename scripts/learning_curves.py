"""Learning curves of long runs: validation and training PSNR against steps, wall time and compute.

    python -m scripts.learning_curves --seeds 0 1 2                     # the runs of the 'sheet' set
    python -m scripts.learning_curves --set sheet_ablation --seeds 0 1 2 # -> results/vit/sheet_ablation
    python -m scripts.learning_curves --variants sheet30k --seeds 0 --out out/curves
    python -m scripts.learning_curves --set sheet_tuned --redraw     # the figures again from learning_curves.json

Reads each run folder's metrics.jsonl (written by model.engine.train while it trains; an unfinished
run is drawn up to the step it reached) and writes into --out:

    learning_curves.png   one panel per variant, at the report's text width: each seed's validation PSNR
                          (every window of the validation part) and the PSNR of its training batches since
                          the previous record, against steps (log axis), with the baselines figures draw
                          (model.baselines.DRAWN) on the same validation windows
    compute.png           validation PSNR against training compute (steps x FLOP per step, counted by
                          model.engine.step_flops), with the compute of the sheet's budget (config/vit.json:
                          its epochs of the same training part) marked, and the frontier: the final
                          validation PSNR of the finished runs of --frontier (one configuration trained to
                          different budgets, each with its schedule fitted to its budget), a straight line
                          in log compute through them and its value at the sheet's budget (an extrapolation;
                          the JSON says by what factor)
    status.md             where each run stands: steps reached, epochs, hours, last and best validation PSNR
    learning_curves.json  the curves, each run's last step and wall time, FLOP per step, the time to quality
                          (the first validation at copy-last + 1 dB: step and training seconds), the
                          sheet's budget and the frontier

PSNR is that of the mean MSE over the windows scored. The training-batch PSNR is measured on the batches
trained in those steps, before each update: how well the model fits the training part.
"""
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from model.cli import CliParser, fail  # noqa: E402
from model.config import ConfigError, config_from_dict, load_config  # noqa: E402
from model.data import DataError, split_video  # noqa: E402
from model.baselines import BASELINES, DRAWN  # noqa: E402
from model.engine import METRICS, step_flops  # noqa: E402
from model.files import write_json_atomically, write_text_atomically  # noqa: E402
from scripts.experiment_sets import SETS, VARIANT_LABELS  # noqa: E402

SHEET_CONFIG = "config/vit.json"


def read_run(run_dir):
    """A run folder -> (its Config, the records of metrics.jsonl)."""
    cfg = config_from_dict(json.loads((run_dir / "cfg.json").read_text(encoding="utf-8")))
    lines = (run_dir / METRICS).read_text(encoding="utf-8").splitlines()
    return cfg, [json.loads(line) for line in lines if line.strip()]


def curves(records):
    """Records -> {"step": [...], "seconds": [...], "train_psnr": [...]} and the validation records' columns."""
    train = {key: [r[key] for r in records] for key in ("step", "seconds", "train_psnr")}
    validated = [r for r in records if "val_psnr" in r]
    val = {key: [r[key] for r in validated] for key in ("step", "seconds", "val_psnr", "val_l1")}
    for name in DRAWN:  # the same windows at every validation (a run resumed by newer code may add one)
        found = next((r[f"val_{name}_psnr"] for r in validated if f"val_{name}_psnr" in r), None)
        if found is not None:
            val[f"{name}_psnr"] = found
    return train, val


def time_to_quality(val, margin=1.0):
    """The first validation whose PSNR passes copy-last's by margin dB -> {"step", "seconds"} or None."""
    if "copy_last_psnr" not in val:
        return None
    for step, seconds, value in zip(val["step"], val["seconds"], val["val_psnr"]):
        if value >= val["copy_last_psnr"] + margin:
            return {"step": step, "seconds": seconds, "margin_db": margin}
    return None


def sheet_budget(num_video_frames, cfg):
    """Steps and FLOP of the sheet's budget: config/vit.json's epochs of the same training part."""
    sheet = load_config(SHEET_CONFIG)
    parts = split_video(num_video_frames, cfg.data.validation_fraction, cfg.data.test_fraction,
                        sheet.model.num_frames)
    windows = len(parts["train"]) - sheet.model.num_frames + 1
    steps = sheet.epochs * (windows // sheet.model.batch_size) // sheet.model.gradient_accumulation_steps
    flops = step_flops(sheet)
    return {"config": SHEET_CONFIG, "epochs": sheet.epochs, "steps": steps, "flop_per_step": flops,
            "flop": steps * flops}


def frontier(finished, budget):
    """Final validation PSNR against compute of finished runs of one configuration -> dict.

    finished: list of (label, flop, final validation PSNR). With at least two distinct budgets, the least-squares
    line PSNR = a + b log10(FLOP) and its value at the sheet's budget (extrapolated by the factor given), and the
    slope between the two largest budgets (mean over their seeds) carried on from the largest: a curve that
    flattens makes the first too hopeful, the second less so.
    """
    points = [{"run": label, "flop": flop, "val_psnr": value} for label, flop, value in sorted(finished, key=lambda x: x[1])]
    budgets = sorted({point["flop"] for point in points})
    # Per budget, smallest first (the index of a budget does not move when a seed finishes).
    result = {"points": points, "budgets": [
        {"flop": flop, "runs": [p["run"] for p in points if p["flop"] == flop],
         "val_psnr": [p["val_psnr"] for p in points if p["flop"] == flop]} for flop in budgets]}
    if len(budgets) >= 2:
        slope, intercept = np.polyfit([math.log10(p["flop"]) for p in points], [p["val_psnr"] for p in points], 1)
        result.update(db_per_decade=float(slope), intercept=float(intercept),
                      sheet_budget_psnr=float(intercept + slope * math.log10(budget["flop"])),
                      extrapolation_factor=budget["flop"] / max(budgets))
        means = {flop: float(np.mean([p["val_psnr"] for p in points if p["flop"] == flop])) for flop in budgets}
        (low, low_psnr), (high, high_psnr) = sorted(means.items())[-2:]
        local = (high_psnr - low_psnr) / (math.log10(high) - math.log10(low))
        result.update(local_db_per_decade=float(local),
                      local_sheet_budget_psnr=float(high_psnr + local * math.log10(budget["flop"] / high)))
    return result


def status_table(runs):
    """Where each run stands: a Markdown table (validation part, every window; the baselines on the same windows)."""
    lines = ["| run | steps reached | epochs | training hours | last validation PSNR | highest validation PSNR (step) "
             "| training-batch PSNR (last record) | " + " | ".join(BASELINES[key].label for key in DRAWN) + " |",
             "|---" * (7 + len(DRAWN)) + "|"]
    for name, run in runs.items():
        val, train = run["val"], run["train"]
        if val["val_psnr"]:
            best = max(range(len(val["val_psnr"])), key=lambda i: val["val_psnr"][i])
            last, best_cell = f"{val['val_psnr'][-1]:.2f} dB", f"{val['val_psnr'][best]:.2f} dB ({val['step'][best]})"
        else:
            last = best_cell = "–"
        baselines = " | ".join(f"{val[f'{key}_psnr']:.2f} dB" if f"{key}_psnr" in val else "–" for key in DRAWN)
        lines.append(f"| {name} | {run['steps_reached']} of {run['max_steps']} | {run['epochs']:.1f} | "
                     f"{run['seconds'] / 3600:.2f} | {last} | {best_cell} | "
                     f"{train['train_psnr'][-1]:.1f} dB | {baselines} |" if train["train_psnr"] else
                     f"| {name} | 0 of {run['max_steps']} | – | – | – | – | – | {baselines} |")
    return "\n".join(lines) + "\n"


# Printed sizes: learning_curves.png fills the report's text width (17 cm), so its fonts are the printed ones.
PRINT_FONTS = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7.5,
               "ytick.labelsize": 7.5, "legend.fontsize": 7.5}
TEXT_WIDTH_INCHES = 6.7


def plot(runs, budget, out, line=None):
    """learning_curves.png (one panel per variant) and compute.png into out/."""
    with plt.rc_context(PRINT_FONTS):
        fig = curves_figure(runs)
        fig.savefig(out / "learning_curves.png", dpi=200)
        plt.close(fig)
    with plt.rc_context({"font.size": 11}):
        fig = compute_figure(runs, budget, line)
        fig.savefig(out / "compute.png", dpi=130)
        plt.close(fig)


def by_variant(runs):
    """{"variant seed S": run} -> {variant: {seed: run}}, in the order the runs come."""
    grouped = {}
    for name, run in runs.items():
        variant, _, seed = name.rpartition(" seed ")
        grouped.setdefault(variant or name, {})[seed] = run
    return grouped


def baseline_lines(runs):
    """{label: (validation PSNR, grey)} of the baselines drawn, from the first run that has each."""
    lines = {}
    for key in DRAWN:
        found = next((run["val"][f"{key}_psnr"] for run in runs.values() if f"{key}_psnr" in run["val"]), None)
        if found is not None:
            lines[BASELINES[key].label] = (found, BASELINES[key].grey)
    return lines


def spread_labels(values, low, high, gap):
    """Label heights for values (sorted as given) moved apart to at least gap, kept inside [low, high]."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    placed = [0.0] * len(values)
    previous = -math.inf
    for i in order:
        placed[i] = max(values[i], previous + gap)
        previous = placed[i]
    overflow = max(0.0, previous - high)
    return [min(max(y - overflow, low), high) for y in placed]


def curves_figure(runs):
    """One panel per variant: each seed's validation PSNR (line with dots) and the PSNR of its training batches
    (the same colour, thin and light) against steps; the baselines grey, named once at the right."""
    grouped = by_variant(runs)
    fig, axes = plt.subplots(1, len(grouped), figsize=(TEXT_WIDTH_INCHES, 2.55), sharey=True, squeeze=False,
                             layout="constrained")
    axes = axes[0]
    baselines = baseline_lines(runs)
    for ax, (variant, seeds) in zip(axes, grouped.items()):
        for i, (seed, run) in enumerate(seeds.items()):
            colour = f"C{i}"
            train, val = run["train"], run["val"]
            ax.plot(train["step"], train["train_psnr"], color=colour, lw=0.8, alpha=0.35)
            ax.plot(val["step"], val["val_psnr"], color=colour, marker=".", ms=3, lw=1.2, label=f"seed {seed}")
        for value, grey in baselines.values():
            ax.axhline(value, color=grey, ls="--", lw=0.8)
        hours = [run["seconds"] / 3600 for run in seeds.values()]
        span = f"{min(hours):.1f} h" if max(hours) - min(hours) < 0.05 else f"{min(hours):.1f}-{max(hours):.1f} h"
        label = VARIANT_LABELS.get(variant)
        ax.set_title(f"{label} ({variant})\n{span} a seed (1 CPU thread)" if label else f"{variant}\n{span} a seed")
        ax.set(xscale="log", xlabel="optimizer step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("PSNR (dB)")
    seeds = max((ax.get_legend_handles_labels()[0] for ax in axes), key=len)  # a colour is a seed in every panel
    fig.legend(handles=[*seeds, plt.Line2D([], [], color="0.4", lw=0.8, alpha=0.5, label="its training batches")],
               loc="outside lower center", ncol=len(seeds) + 1, frameon=False)
    if baselines:  # named in the margin of the last panel, moved apart where two lie close
        last = axes[-1]
        fig.canvas.draw()  # the final limits and the panel's height
        low, high = last.get_ylim()
        height_pt = last.get_window_extent().height * 72 / fig.dpi
        gap = (high - low) * 9 / height_pt  # 9 pt between label centres
        values = [value for value, _ in baselines.values()]
        for (label, (value, grey)), y in zip(baselines.items(), spread_labels(values, low, high, gap)):
            last.annotate(label, (1.02, y), xycoords=("axes fraction", "data"), va="center", color="0.25",
                          annotation_clip=False)
    return fig


def compute_figure(runs, budget, line):
    """Validation PSNR against training compute, every run a line, with the sheet's budget and the frontier."""
    fig, ax = plt.subplots(figsize=(9, 6.2))
    for i, (name, run) in enumerate(runs.items()):
        ax.plot([s * run["flop_per_step"] for s in run["val"]["step"]], run["val"]["val_psnr"], color=f"C{i % 10}",
                marker=".", label=name)
    for label, (value, grey) in baseline_lines(runs).items():
        ax.axhline(value, color=grey, ls="--", lw=1, label=f"{label} (validation)")
    ax.axvline(budget["flop"], color="k", ls="-.", lw=1,
               label=f"the template's budget ({budget['epochs']} epochs of vit.json)")
    if line and line["points"]:
        flops = [point["flop"] for point in line["points"]]
        ax.plot(flops, [point["val_psnr"] for point in line["points"]], "k*", ms=9,
                label="end of a finished run (frontier)")
        if "db_per_decade" in line:
            xs = np.geomspace(min(flops), budget["flop"], 20)
            ax.plot(xs, line["intercept"] + line["db_per_decade"] * np.log10(xs), "k:", lw=1,
                    label=f"fit {line['db_per_decade']:+.1f} dB per decade, extrapolated")
            top = max(flops)
            xs = np.geomspace(top, budget["flop"], 20)
            top_psnr = line["local_sheet_budget_psnr"] - line["local_db_per_decade"] * math.log10(budget["flop"] / top)
            ax.plot(xs, top_psnr + line["local_db_per_decade"] * np.log10(xs / top), color="0.5", ls="--",
                    lw=1, label=f"slope of the two largest budgets, {line['local_db_per_decade']:+.1f} dB per decade")
    ax.set(xscale="log", xlabel="training compute (FLOP: steps x FLOP per step)", ylabel="validation PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def read_runs(variants, seeds, runs_dir):
    """The run folders of the variants and seeds that have metrics -> ({"variant seed S": curves and totals},
    the Config of the last one read)."""
    runs, flops, cfg = {}, {}, None
    for variant in variants:
        for seed in seeds:
            run_dir = runs_dir / f"{variant}.seed{seed}"
            if not (run_dir / METRICS).exists():
                print(f"{run_dir}: no {METRICS}, left out")
                continue
            cfg, records = read_run(run_dir)
            if variant not in flops:
                flops[variant] = step_flops(cfg)
            train, val = curves(records)
            steps = records[-1]["step"] if records else 0
            runs[f"{variant} seed {seed}"] = {
                "run_dir": str(run_dir), "steps_reached": steps, "max_steps": cfg.training.max_steps,
                "seconds": records[-1]["seconds"] if records else 0.0,
                "epochs": records[-1]["epoch"] if records else 0.0, "flop_per_step": flops[variant],
                "flop": steps * flops[variant], "copy_last_plus_1db": time_to_quality(val), "train": train, "val": val}
    return runs, cfg


def finished_runs(variants, seeds, runs_dir):
    """(name, training FLOP, final validation PSNR) of every run of the variants whose schedule finished."""
    finished = []
    for variant in variants:
        for seed in seeds:
            run_dir = runs_dir / f"{variant}.seed{seed}"
            if not (run_dir / METRICS).exists():
                continue
            run_cfg, records = read_run(run_dir)
            validated = [r for r in records if "val_psnr" in r]
            if validated and validated[-1]["step"] == run_cfg.training.max_steps:  # a finished schedule
                finished.append((f"{variant} seed {seed}", validated[-1]["step"] * step_flops(run_cfg),
                                 validated[-1]["val_psnr"]))
    return finished


def main(argv=None):
    parser = CliParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=sorted(SETS), default="sheet", help="the variants of a set of scripts.run_experiments")
    parser.add_argument("--variants", nargs="+", help="these variants instead of --set's")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--runs-dir", default="out/experiments", help="run folders {variant}.seed{S}/")
    parser.add_argument("--out", help="where the figures and the JSON go (default: results/vit/{set})")
    parser.add_argument("--video-frames", type=int, default=6000, help="frames of the video the runs trained on")
    parser.add_argument("--frontier", nargs="*", default=["sheet10k_full", "sheet30k"],
                        help="variants of one configuration at different budgets: their finished runs form the frontier")
    parser.add_argument("--frontier-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--redraw", action="store_true",
                        help="only draw the figures again from --out's learning_curves.json (no run folders)")
    args = parser.parse_args(argv)
    args.variants = args.variants or SETS[args.set]
    out = Path(args.out or f"results/vit/{args.set}")
    if args.redraw:
        source = out / "learning_curves.json"
        if not source.is_file():
            return fail(f"no {source}; run without --redraw first", 1)
        stored = json.loads(source.read_text(encoding="utf-8"))
        plot(stored["runs"], stored["sheet_budget"], out, stored["frontier"])
        print(f"wrote {out / 'learning_curves.png'}, {out / 'compute.png'} from {source}")
        return 0
    try:
        runs, cfg = read_runs(args.variants, args.seeds, Path(args.runs_dir))
        if not runs:
            return fail(f"no run folder with {METRICS} under {args.runs_dir}", 1)
        budget = sheet_budget(args.video_frames, cfg)
        budget["times_largest_run"] = budget["flop"] / max(max(run["flop"] for run in runs.values()), 1)
        finished = finished_runs(args.frontier, args.frontier_seeds, Path(args.runs_dir))
        line = frontier(finished, budget)
        out.mkdir(parents=True, exist_ok=True)
        plot(runs, budget, out, line)
        write_json_atomically(out / "learning_curves.json", {"runs": runs, "sheet_budget": budget, "frontier": line})
        write_text_atomically(out / "status.md", status_table(runs))
    except (ConfigError, DataError) as error:
        return fail(error, 2 if isinstance(error, ConfigError) else 1)
    for name, run in runs.items():
        last = run["val"]["val_psnr"][-1] if run["val"]["val_psnr"] else float("nan")
        reached = run["copy_last_plus_1db"]
        quality = (f"copy-last + 1 dB at step {reached['step']} ({reached['seconds']:.0f} s)" if reached
                   else "not yet copy-last + 1 dB")
        print(f"{name}: step {run['steps_reached']} of {run['max_steps']} ({run['seconds'] / 3600:.2f} h), "
              f"validation PSNR {last:.2f} dB, {quality}, {run['flop_per_step'] / 1e9:.1f} GFLOP per step")
    if "sheet_budget_psnr" in line:
        print(f"frontier: {len(line['points'])} finished runs, {line['db_per_decade']:+.2f} dB per decade of compute; "
              f"at the sheet's budget ({line['extrapolation_factor']:.0f}x the largest) it predicts "
              f"{line['sheet_budget_psnr']:.2f} dB (an extrapolation)")
    else:
        print(f"frontier: {len(line['points'])} finished runs of --frontier at distinct budgets: "
              f"{len({p['flop'] for p in line['points']})}, no fit (needs 2)")
    print(f"wrote {out / 'learning_curves.png'}, {out / 'compute.png'}, {out / 'learning_curves.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
