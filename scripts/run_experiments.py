"""Exercise 2 (c)-(e) experiments: ablations x seeds, evaluated against the baselines, with figures.

    python -m scripts.run_experiments --steps 300                         # full / noattention / nopos, seeds 0 1 2
    python -m scripts.run_experiments --set study --steps 300 --seeds 0   # what makes the model beat copy-last
    python -m scripts.run_experiments --set masked --steps 300            # masked reconstruction, 2 (d)
    python -m scripts.run_experiments --runs full nopos --seeds 2 --no-figures   # a share of the runs

Each (variant, seed) trains into its own run folder {--runs-dir}/{variant}.seed{seed}/ through
model.engine.train. A run whose done.json exists is skipped; an unfinished one resumes from its
quicksave.ckpt, so the command can be stopped and started again at any time (or split between
processes with --runs); SIGINT, SIGTERM or SIGUSR1 finish the current step, write quicksave.ckpt and
exit with 128 + the signal's number, without a report. After training every finished run is evaluated
on its evaluation part (test; validation for the short study's configs without one) by the evaluation
protocol of model.protocol (one-step metrics against the baselines, the training part, situations, closed
loop, attention shares, error maps), cached in its eval.json.

Results go to --results/--name (default results/vit/{set}/): results.json, summary.md (mean +- std
over seeds), loss_curves.png, samples_{variant}.png, error_by_situation.png (for videos whose /meta
records situations), error_by_region.png and attention_{variant}.png (scripts/experiment_figures.py).
Budgets (steps, wall-clock seconds) are recorded with every number.
"""
import argparse
import difflib
import json
import sys
import time
from pathlib import Path

import numpy as np

from model.checkpoint import CheckpointError, export_checkpoint
from model.cli import CliParser, fail, positive_int, stop_on_signals
from model.config import ConfigError, config_from_dict
from model.data import DataError, Video, evaluation_part, open_video
from model.distributed import Ranks, StopFlag, stop_code
from model.engine import FINAL, QUICKSAVE, TrainingError, final_weights, load_model, train
from model.baselines import BASELINES, LABELS, ROLLS_OUT
from model.files import write_json_atomically, write_text_atomically
from model.protocol import EVAL_PROTOCOL, evaluate_model
from scripts.experiment_sets import SETS, VARIANT_FOLDERS, VARIANT_LABELS, run_config, variant_file, variant_names


def parse_args(argv=None):
    parser = CliParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=sorted(SETS), default="sheet", help="named list of variants")
    parser.add_argument("--runs", nargs="+", metavar="VARIANT",
                        help="variants to run (instead of --set): config file stems in " + ", ".join(VARIANT_FOLDERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=positive_int,
                        help="optimizer steps per run, with a schedule fitted to them (default: the config file's)")
    parser.add_argument("--runs-dir", default="out/experiments", help="run folders (checkpoints, logs)")
    parser.add_argument("--results", default="results/vit", help="results.json, summary.md, figures")
    parser.add_argument("--name", help="results file stem (default: the --set name, or 'custom')")
    parser.add_threads()
    parser.add_argument("--no-train", action="store_true", help="only evaluate and report finished runs")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--tables-only", action="store_true",
                        help="only summarise the runs stored in the set's results.json again (results.json, "
                             "summary.md, table.md), without their run folders")
    parser.add_argument("--keep-stored", action="store_true",
                        help="keep the runs stored in the set's results.json that this call does not evaluate "
                             "(their run folders may be gone), so that a new seed joins the published ones; "
                             "needs --no-figures")
    parser.add_argument("--config-root", default=".", help=argparse.SUPPRESS)  # tests: where config/ lives
    args = parser.parse_args(argv)
    if args.keep_stored and not args.no_figures:
        parser.error("--keep-stored needs --no-figures (the figures read every run's folder)")
    known = variant_names(args.config_root)
    for variant in args.runs or []:
        if variant not in known:
            close = difflib.get_close_matches(variant, known, n=1)
            parser.error(f"argument --runs: no variant {variant!r} (a config file in {', '.join(VARIANT_FOLDERS)})"
                         + (f"; did you mean {close[0]}?" if close else ""))
    return args


def main(argv=None):
    args = parse_args(argv)
    variants = args.runs or SETS[args.set]
    name = args.name or (args.set if not args.runs else "custom")
    if args.tables_only:
        return write_tables(Path(args.results) / name)
    try:
        runs = [(variant, seed) for variant in variants for seed in args.seeds]
        cache = {}
        stop = StopFlag()
        with stop_on_signals(stop):  # SIGINT, SIGTERM, SIGUSR1: finish the step, quicksave, exit 128 + N
            for i, (variant, seed) in enumerate(runs):
                cfg = run_config(variant, args.steps, args.config_root)
                run_dir = Path(args.runs_dir) / f"{variant}.seed{seed}"
                if not args.no_train:
                    print(f"[{i + 1}/{len(runs)}] {variant} seed {seed}: ", end="", flush=True)
                    train_run(cfg, run_dir, seed, cache, stop)
                if stop:
                    print(f"stopped by {stop.reason}; {run_dir / QUICKSAVE} saved, the same command resumes")
                    code = stop_code(stop.reason)
                    return 128 + code if code > 1 else 1
        report(args, variants, name, cache)
    except ConfigError as error:
        return fail(error, 2)
    except (DataError, CheckpointError, TrainingError) as error:
        return fail(error, 1)
    return 0


def video_of(cfg, cache):
    """The config's video split by the config (model.data.Video); each file is read once into the cache."""
    key = cfg.data.hdf5_file
    if key not in cache:
        cache[key] = open_video(cfg)
    return Video.of_config(cfg, cache[key].frames, cache[key].meta)


def frames_of(cfg, cache):
    """The config's frames, uint8 (N, H, W), read once per file (scripts.experiment_figures draws from them)."""
    return video_of(cfg, cache).frames


def data_record(cfg, video):
    """What a config trains and is scored on: its video's file, size and parts (frame index ranges)."""
    frames, parts = len(video), video.parts
    return {"file": cfg.data.hdf5_file, "frames": frames, "height": video.frames.shape[1],
            "width": video.frames.shape[2], "parts": {name: [part.start, part.stop] for name, part in parts.items()},
            "fractions": {"train": len(parts["train"]) / frames, "val": cfg.data.validation_fraction,
                          "test": cfg.data.test_fraction}}


def train_run(cfg, run_dir, seed, cache, stop=None):
    """Train one run to its budget: skip when done, resume from its quicksave when started.

    A run folder that holds a run of another config (a changed variant or config file) is an error,
    so that no result mixes two configs.
    """
    saved = run_dir / "cfg.json"
    if saved.exists():
        difference = first_difference(config_from_dict(json.loads(saved.read_text(encoding="utf-8"))).to_dict(),
                                      cfg.to_dict())
        if difference:
            raise ConfigError(f"{run_dir} holds a run of another config ({difference}); move it away or "
                              f"choose another --runs-dir")
    done = run_dir / "done.json"
    quicksave = run_dir / QUICKSAVE
    if done.exists():
        print("done, skipped")
        if not (run_dir / FINAL).exists():  # finished before model.engine.train wrote final.ckpt
            export_checkpoint(quicksave, run_dir / FINAL)
        return
    resume = quicksave if quicksave.exists() else None
    print("resuming from " + str(quicksave) if resume else "training", flush=True)
    result = train(cfg, video_of(cfg, cache), run_dir, seed=seed, resume=resume, ranks=Ranks(requested=stop),
                   log=lambda line: print("  " + line))
    if result["step"] == result["total_steps"]:  # model.engine.train has written final.ckpt
        write_json_atomically(done, {"steps": result["step"], "seconds": result["seconds"], "seed": seed,
                                     "best_val_loss": result["best_val_loss"]})



def first_difference(saved, wanted, prefix=""):
    """The first key where two config dicts differ, as 'key: saved vs wanted', or None."""
    for key in sorted(set(saved) | set(wanted)):
        a, b = saved.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = first_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}: {a!r} (run folder) vs {b!r} (now)"
    return None


# --- evaluation ---------------------------------------------------------------------------------

def evaluate_run(cfg, run_dir, video):
    """Evaluate the final weights of a run on its evaluation part with the protocol (model.protocol) -> dict,
    cached in eval.json (an eval.json of another protocol is computed again); the error maps go to the run's
    error_map.npz.
    """
    cached = run_dir / "eval.json"
    result = json.loads(cached.read_text(encoding="utf-8")) if cached.exists() else {}
    if result.get("protocol") == EVAL_PROTOCOL:
        return result
    done = json.loads((run_dir / "done.json").read_text(encoding="utf-8"))
    model, _ = load_model(final_weights(run_dir), cfg.model)
    evaluated, maps = evaluate_model(model, video, evaluation_part(cfg))
    result = {"protocol": EVAL_PROTOCOL, "variant": cfg.model_path, "seed": done["seed"], "steps": done["steps"],
              "train_seconds": done["seconds"], **evaluated}
    if maps:
        np.savez_compressed(run_dir / "error_map.npz", **maps)
    write_json_atomically(cached, result)
    return result


# --- report -------------------------------------------------------------------------------------

def mean_std(values):
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def report(args, variants, name, cache):
    """Evaluate the finished runs of the variants, write results.json, summary.md and the figures."""
    out = Path(args.results) / name
    out.mkdir(parents=True, exist_ok=True)
    evaluations, configs = {}, {}
    for variant in variants:
        cfg = run_config(variant, args.steps, args.config_root)
        configs[variant] = cfg
        for seed in args.seeds:
            run_dir = Path(args.runs_dir) / f"{variant}.seed{seed}"
            if not (run_dir / "done.json").exists():
                print(f"{variant} seed {seed}: not finished, left out of the report")
                continue
            start = time.perf_counter()
            evaluations.setdefault(variant, {})[seed] = evaluate_run(cfg, run_dir, video_of(cfg, cache))
            print(f"evaluated {variant} seed {seed} ({time.perf_counter() - start:.0f} s)")
    if args.keep_stored:
        evaluations = with_stored_runs(out / "results.json", evaluations)
        configs.update({v: run_config(v, args.steps, args.config_root) for v in evaluations if v not in configs})
    if not evaluations:
        print("no finished runs to report")
        return
    results = {"set": name, "steps": args.steps, "runs_dir": str(args.runs_dir),
               "configs": {v: {"file": str(variant_file(v, args.config_root).relative_to(args.config_root)),
                               "data": data_record(configs[v], video_of(configs[v], cache))}
                           for v in evaluations},
               "runs": evaluations}
    write_results(out, results)
    print((out / "summary.md").read_text(encoding="utf-8"))
    if not args.no_figures:
        from scripts import experiment_figures
        experiment_figures.make_all(out, evaluations, configs, Path(args.runs_dir), cache, frames_of)
        print(f"figures written to {out}")


def with_stored_runs(path, evaluations):
    """The runs stored in results.json at path (when there is one) with the new evaluations {variant: {seed:
    eval}} over them: a stored run not evaluated again is kept as it is; variants and seeds in order."""
    stored = json.loads(path.read_text(encoding="utf-8"))["runs"] if path.is_file() else {}
    merged = {variant: {int(seed): run for seed, run in seeds.items()} for variant, seeds in stored.items()}
    for variant, seeds in evaluations.items():
        merged.setdefault(variant, {}).update({int(seed): run for seed, run in seeds.items()})
    return {variant: dict(sorted(seeds.items())) for variant, seeds in merged.items()}


def write_tables(out):
    """results.json's summary, summary.md and table.md again from the runs stored in out/results.json.

    For a new summary or table format where the run folders are gone; the per-run numbers are kept as they are.
    """
    source = out / "results.json"
    if not source.is_file():
        return fail(f"no {source}: run the set first (without --tables-only)", 1)
    write_results(out, json.loads(source.read_text(encoding="utf-8")))
    print(f"wrote {source}, {out / 'summary.md'}, {out / 'table.md'}")
    return 0


def write_results(out, results):
    """results (set, steps, runs_dir, configs, runs) -> with its summary over seeds into out/results.json,
    and summary.md and table.md from it."""
    runs = results.pop("runs")
    results.pop("summary", None)
    results.update(summary={variant: summary_of(list(seeds.values())) for variant, seeds in runs.items()}, runs=runs)
    write_json_atomically(out / "results.json", results)
    write_text_atomically(out / "summary.md", markdown(results["set"], results["summary"], results["steps"]))
    write_text_atomically(out / "table.md", compact_table(results["summary"]))


def summary_of(runs):
    """Mean and std over seeds of the headline numbers of one variant."""
    summary = {"seeds": [run["seed"] for run in runs], "steps": runs[0]["steps"],
               "train_seconds": mean_std([run["train_seconds"] for run in runs])}
    for name in runs[0]["one_step"]:
        # l1_unchanged / l1_changed only in evaluations that have them (eval.json of older runs do not).
        keys = [key for key in ("l1", "mse", "psnr", "ssim", "l1_unchanged", "l1_changed")
                if all(key in run["one_step"][name] for run in runs)]
        summary[f"one_step_{name}"] = {key: mean_std([run["one_step"][name][key] for run in runs]) for key in keys}
    if "train_one_step" in runs[0]:
        for name in ("model", *ROLLS_OUT):
            if not all(name in run["train_one_step"] for run in runs):
                continue
            summary[f"train_one_step_{name}"] = {key: mean_std([run["train_one_step"][name][key] for run in runs])
                                                 for key in ("l1", "mse", "psnr", "ssim")}
    if "rollout" in runs[0]:
        for name in ("model", *ROLLS_OUT):
            if all(name in run["rollout"] for run in runs):  # continue motion: 3+ frames, newer evaluations
                summary[f"rollout10_{name}"] = {key: mean_std([run["rollout"][name][key][-1] for run in runs])
                                                for key in ("l1", "mse", "psnr", "ssim")}
        for baseline in BASELINES:
            if not all(baseline in run["one_step"] for run in runs):
                continue
            for key in ("l1", "psnr"):
                summary[f"one_step_minus_{baseline}_{key}"] = mean_std(
                    [run["one_step"]["model"][key] - run["one_step"][baseline][key] for run in runs])
            summary[f"beats_{baseline}"] = sum(
                run["one_step"]["model"]["psnr"] > run["one_step"][baseline]["psnr"]
                and run["one_step"]["model"]["l1"] < run["one_step"][baseline]["l1"] for run in runs)
    summary["per_seed_psnr"] = [run["one_step"]["model"]["psnr"] for run in runs]
    return summary


def strongest_baseline(entry, among=tuple(BASELINES)):
    """The baseline (of ``among``) with the highest one-step PSNR on a variant's windows: the bar a table
    measures against."""
    present = [name for name in among if f"one_step_{name}" in entry]
    return max(present, key=lambda name: entry[f"one_step_{name}"]["psnr"][0])


def l1_digits(summary):
    """Decimals of the L1 columns: 4, or 6 for footage that hardly changes (copy-last L1 below 0.005)."""
    copy_last = next(iter(summary.values())).get("one_step_copy_last")
    return 6 if copy_last and copy_last["l1"][0] < 0.005 else 4


def markdown(name, summary, steps):
    """The summary table (mean +- std over seeds)."""
    digits_l1 = l1_digits(summary)

    def cell(entry, key, digits):
        mean, std = entry[key]
        return f"{mean:.{digits}f} ± {std:.{digits}f}"

    def delta(entry, key, spec):
        if f"one_step_minus_copy_last_{key}" not in entry:
            return "–"
        mean, std = entry[f"one_step_minus_copy_last_{key}"]
        return f"{mean:+{spec}} ± {std:{spec}}"

    budget = (f"{steps} optimizer steps per run" if steps else "the steps column gives each run's optimizer steps")
    if steps and any(entry["steps"] != steps for entry in summary.values()):
        budget += " unless the steps column says otherwise"
    lines = [f"# Experiments: {name}", "",
             f"Budget: {budget}; mean ± std over seeds; train s: wall-clock training seconds per run (2 shared "
             "CPU cores, 1 thread per run); evaluated on the test part (the last 10% of the video), or for "
             "configs without one (the short study) on the validation part (then the last 10%).",
             "One-step: every window of the evaluation part. 10-step: closed loop, metrics of the 10th predicted frame.",
             "Masked variants (1 frame): the masked pixels only, against the mean and median training frame and "
             "the neighbour fill.",
             "Continue-motion baseline (3+ frames): the last frame moved on by the global shift between the two "
             "frames before (model/metrics.py), a hand-made predictor of camera scrolling; with the player held: "
             "the same with the block where the camera keeps the player copied from the last frame.", "",
             "ΔL1, ΔPSNR: the model's one-step value minus copy-last's on the same windows, per run.", "",
             "| variant | steps | seeds | train s | 1-step L1 | 1-step PSNR dB | 1-step SSIM | 10-step L1 | 10-step PSNR dB "
             "| ΔL1 | ΔPSNR dB | beats copy-last | train-part 1-step PSNR dB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    baselines, train_copy_last = {}, None
    for variant, entry in summary.items():
        model = entry["one_step_model"]
        rolled = entry.get("rollout10_model")
        beats = f"{entry['beats_copy_last']}/{len(entry['seeds'])}" if "beats_copy_last" in entry else "–"
        lines.append(f"| {variant} | {entry['steps']} | {len(entry['seeds'])} | {entry['train_seconds'][0]:.0f} | {cell(model, 'l1', digits_l1)} | "
                     f"{cell(model, 'psnr', 2)} | {cell(model, 'ssim', 4)} | "
                     f"{cell(rolled, 'l1', digits_l1) if rolled else '–'} | {cell(rolled, 'psnr', 2) if rolled else '–'} | "
                     f"{delta(entry, 'l1', '.1e')} | {delta(entry, 'psnr', '.4f')} | {beats} | "
                     f"{cell(entry['train_one_step_model'], 'psnr', 2) if 'train_one_step_model' in entry else '–'} |")
        kind = "masked" if "rollout10_model" not in entry else "next"
        for name in BASELINES:
            if f"one_step_{name}" in entry:
                baselines.setdefault((kind, LABELS[name]), (entry[f"one_step_{name}"], entry.get(f"rollout10_{name}")))
        if kind == "next":
            train_copy_last = entry.get("train_one_step_copy_last", train_copy_last)
    for (kind, baseline), (one, rolled) in baselines.items():
        label = f"{baseline} baseline" + (" (masked pixels)" if kind == "masked" else "")
        rolled_cells = f"{rolled['l1'][0]:.{digits_l1}f} | {rolled['psnr'][0]:.2f}" if rolled else "– | –"
        train = f"{train_copy_last['psnr'][0]:.2f}" if baseline == LABELS["copy_last"] and train_copy_last else "–"
        lines.append(f"| {label} | – | – | – | {one['l1'][0]:.{digits_l1}f} | {one['psnr'][0]:.2f} | {one['ssim'][0]:.4f} | "
                     f"{rolled_cells} | – | – | – | {train} |")
    return "\n".join(lines) + "\n"


def compact_table(summary):
    """The headline columns of summary.md, narrow enough for a page of the report.

    Next-frame variants are measured against one bar, the strongest baseline (highest one-step PSNR on the
    first variant's windows, usually the held player) among those every variant was compared with: ΔPSNR
    against it, and how many seeds beat it in PSNR and L1 together (ΔL1 and copy-last are in summary.md); PSNR
    as mean ± std over seeds, the other columns as means (summary.md has every std); the per-seed PSNR
    beside the mean ± std (when a variant has several seeds). The baselines' rows, in italics, are those of
    the first variant's windows.
    """
    def cell(values, digits, seeds):  # mean ± std over seeds
        mean, std = values
        return f"{mean:.{digits}f} ± {std:.{digits}f}" if seeds > 1 else f"{mean:.{digits}f}"

    def mean(values, digits):  # the other columns: the mean alone, to keep the table one line a row
        return f"{values[0]:.{digits}f}"

    digits_l1 = l1_digits(summary)
    reference = next(iter(summary.values()))  # baselines on the first variant's windows (num_frames shifts them a little)
    next_frame = [entry for entry in summary.values() if "rollout10_model" in entry]
    # One bar for the whole table: the strongest baseline among those every next-frame variant has.
    common = [name for name in BASELINES if all(f"one_step_minus_{name}_psnr" in entry for entry in next_frame)]
    bar = strongest_baseline(next_frame[0], among=common) if next_frame else None
    header = "| model | steps | L1 | PSNR | SSIM |"  # PSNR in dB (the report's captions say so)
    several = any(len(entry["seeds"]) > 1 for entry in next_frame)  # a PSNR per seed column only then
    if next_frame:
        short = BASELINES[bar].short
        nbsp = "\u00a0"  # no-break spaces: a header cell never wraps in the report
        header += ((f" per{nbsp}seed |" if several else "") + f" Δ{nbsp}{short} | beats{nbsp}{short} |"
                   + " 10-step | train |")
    lines = [header, "|" + "---|" * header.count(" |")]
    for variant, entry in summary.items():
        seeds, model = len(entry["seeds"]), entry["one_step_model"]
        row = (f"| {VARIANT_LABELS.get(variant, variant)} | {entry['steps']} | {mean(model['l1'], digits_l1)} | "
               f"{cell(model['psnr'], 2, seeds)} | {mean(model['ssim'], 3)} |")
        if next_frame and "rollout10_model" not in entry:  # a masked variant next to next-frame ones
            row += " – |" * (header.count(" |") - 5)
        elif next_frame:
            train = entry.get("train_one_step_model")
            per_seed = "/".join(f"{value:.1f}" for value in entry["per_seed_psnr"])  # one word: never wraps
            row += ((f" {per_seed} |" if several else "") +
                    f" {entry[f'one_step_minus_{bar}_psnr'][0]:+.2f} | "  # its std is the PSNR's: the same bar
                    f"{entry[f'beats_{bar}']}/{seeds} |"
                    + f" {mean(entry['rollout10_model']['psnr'], 2)} | "
                    f"{mean(train['psnr'], 2) if train else '–'} |")
        lines.append(row)
    lines += baseline_rows(reference, digits_l1, header.count(" |") - 7 if next_frame else None)
    return "\n".join(lines) + "\n"


def baseline_rows(reference, digits_l1, empty_cells=None):
    """The compact table's baseline rows (in italics) from one variant's summary entry; with next-frame columns
    (empty_cells: how many of them stay empty) also their 10-step and train-part PSNR."""
    def number(value, digits):
        return "–" if value is None else f"{value:.{digits}f}"

    rows = []
    for key in BASELINES:
        one = reference.get(f"one_step_{key}")
        if one is None:
            continue
        row = (f"| *{LABELS[key]}* | – | {one['l1'][0]:.{digits_l1}f} | {one['psnr'][0]:.2f} | "
               f"{one['ssim'][0]:.3f} |")
        if empty_cells is not None:
            rolled, train = reference.get(f"rollout10_{key}"), reference.get(f"train_one_step_{key}")
            row += " – |" * empty_cells + (f" {number(rolled['psnr'][0] if rolled else None, 2)} | "
                                           f"{number(train['psnr'][0] if train else None, 2)} |")
        rows.append(row)
    return rows


if __name__ == "__main__":
    sys.exit(main())
