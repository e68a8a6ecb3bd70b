"""Why the sheet's model (frame output) learned nothing with the template's loss, and what makes it learn.

    python -m scripts.diagnose --threads 1                 # one-batch fits of every recipe, then the tables
    python -m scripts.diagnose --tables-only               # the tables again from what is stored

Every recipe is a config file of the set 'diagnosis' (config/diagnosis/*.json): the sheet's architecture at
the CPU size of config/vit_cpu.json with its output "frame", one change of loss or recipe each. Two tests:

  one batch    the recipe trains on one fixed batch of 16 training windows (the same for every recipe) for
               --steps steps (scripts.fit.fit_one_batch; the warm-up at most a tenth of them); its PSNR on that
               batch against the copy of the last frame on it. A model and loss that cannot fit 16 windows
               will not learn from the video. Also the sheet's size (config/vit.json's architecture)
               with the template's recipe (its loss, lr 3e-4, random positions), the same with MSE, and
               with config/vit_cpu.json's recipe.
  validation   the recipe's run of the whole training part (`python -m scripts.run_experiments --set
               diagnosis --seeds 0 --runs-dir out/diagnosis` trains them, 3000 steps; 1500 at batch 32,
               the same windows seen): its validation PSNR (every window of the validation part) at
               each validation, read from the run folder's metrics.jsonl, next to the baselines.

Writes results/vit/diagnosis/one_batch.json, diagnosis.md (both tables) and learning_curves from the runs
go to the same folder through scripts.learning_curves.
"""
import json
from pathlib import Path

import torch

from model.baselines import DRAWN, LABELS
from model.cli import CliParser, positive_int
from model.config import load_config, with_overrides
from model.data import Video, load_video
from model.engine import METRICS
from model.files import write_json_atomically, write_text_atomically
from scripts.fit import fit_one_batch
from scripts.experiment_sets import SETS, run_config

BATCH = 16
SHEET_CONFIG = "config/vit.json"
CPU_CONFIG = "config/vit_cpu.json"
BATCH_SEED = 0


def fixed_batch(cfg, frames):
    """BATCH training windows drawn once with BATCH_SEED: (B, T, H, W) in [0, 1]."""
    windows = Video.of_config(cfg, frames).windows("train")
    starts = torch.randperm(len(windows), generator=torch.Generator().manual_seed(BATCH_SEED))[:BATCH]
    return windows.batch(starts)


def recipe(cfg):
    """What a diagnosis config sets, in words."""
    m, t = cfg.model, cfg.training
    return (f"{m.channels} channels, {m.layers} layers; loss {t.loss}, lr {cfg.learning_rate:g}, warm-up "
            f"{t.warmup_steps}, batch {m.batch_size}, positions {m.positional_init}")


def one_batch_recipes(variants):
    """name -> Config of every one-batch fit: the diagnosis set's recipes, then the sheet's size (config/vit.json)
    with the template's loss and with MSE, for the question whether the finding holds at that size too."""
    recipes = {variant: run_config(variant) for variant in variants}
    sheet = load_config(SHEET_CONFIG)  # its architecture; the template's recipe pinned here
    template = {"training.loss": "l1_ssim", "learning_rate": 3e-4, "model.positional_init": "normal"}
    recipes[f"{SHEET_CONFIG}'s size, the template's recipe"] = with_overrides(sheet, template)
    recipes[f"{SHEET_CONFIG}'s size, the template's recipe with MSE"] = with_overrides(
        sheet, {**template, "training.loss": "mse"})
    cpu = load_config(CPU_CONFIG)
    recipes[f"{SHEET_CONFIG}'s size, {CPU_CONFIG}'s recipe"] = with_overrides(sheet, {
        "training.loss": cpu.training.loss, "learning_rate": cpu.learning_rate,
        "model.positional_init": cpu.model.positional_init})
    return recipes


def one_batch_table(variants, steps, out):
    results, frames = {}, None
    for variant, cfg in one_batch_recipes(variants).items():
        if frames is None:
            frames = load_video(cfg)
        fit = fit_one_batch(cfg, fixed_batch(cfg, frames), steps)
        results[variant] = {"recipe": recipe(cfg), **fit}
        print(f"{variant}: {fit['psnr'][-1][1]:.2f} dB after {steps} steps (copy-last {fit['copy_last_psnr']:.2f})",
              flush=True)
    write_json_atomically(out / "one_batch.json", {"steps": steps, "batch": BATCH, "batch_seed": BATCH_SEED,
                                                   "runs": results})


def validation_rows(variants, runs_dir):
    """Per variant: its validation records (step, PSNR) and the PSNR of the baselines figures draw (DRAWN) in the last
    one, from metrics.jsonl."""
    rows = {}
    for variant in variants:
        path = Path(runs_dir) / f"{variant}.seed0" / METRICS
        if not path.exists():
            continue
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        val = [r for r in records if "val_psnr" in r]
        if val:
            rows[variant] = {"recipe": recipe(run_config(variant)), "val": [(r["step"], r["val_psnr"]) for r in val],
                             "seconds": records[-1]["seconds"], "max_steps": run_config(variant).training.max_steps,
                             **{b: val[-1][f"val_{b}_psnr"] for b in DRAWN if f"val_{b}_psnr" in val[-1]}}
    return rows


def markdown(one_batch, rows):
    lines = ["# What makes the sheet's model (frame output) learn", ""]
    if one_batch:
        steps = one_batch["steps"]
        marks = [s for s, _ in next(iter(one_batch["runs"].values()))["psnr"]][1::2]
        lines += [f"## One fixed batch ({one_batch['batch']} training windows, {steps} steps, CPU size)", "",
                  "| config | recipe | " + " | ".join(f"step {s}" for s in marks) + " | copy-last |",
                  "|---|---|" + "---:|" * (len(marks) + 1)]
        for variant, run in one_batch["runs"].items():
            at = dict(run["psnr"])
            lines.append(f"| {variant} | {run['recipe']} | " + " | ".join(f"{at[s]:.2f}" for s in marks)
                         + f" | {run['copy_last_psnr']:.2f} |")
        lines += ["", "PSNR in dB on that batch (clamped prediction of the last frame). Every fit trains on the same 16 "
                  "windows, whatever batch size its config names; the warm-up is at most a tenth of the fit.", ""]
    if rows:
        marks = sorted({s for row in rows.values() for s, _ in row["val"]})
        first = next(iter(rows.values()))
        lines += ["## Validation part (every window), seed 0", "",
                  "| config | recipe | " + " | ".join(f"step {s}" for s in marks) + " | minutes |",
                  "|---|---|" + "---:|" * (len(marks) + 1)]
        for variant, row in rows.items():
            at = dict(row["val"])
            lines.append(f"| {variant} | {row['recipe']} | " + " | ".join(f"{at[s]:.2f}" if s in at else "" for s in marks)
                         + f" | {row['seconds'] / 60:.0f} |")
        lines += ["", "Validation PSNR in dB. Baselines on the same windows: "
                  + ", ".join(f"{LABELS[b]} {first[b]:.2f}" for b in DRAWN if b in first)
                  + ". Minutes: training time of the run (one thread, two runs side by side).", ""]
    return "\n".join(lines)


LOSS_NAMES = {"l1_ssim": "template (L1 + SSIM)", "l1": "L1", "mse": "MSE"}


def compact(one_batch, rows):
    """One line per recipe of the set: its loss, learning rate, warm-up, batch and positional initialisation,
    the one-batch PSNR at the last step and the validation PSNR at the last validation (table.md, for the report)."""
    lines = ["| loss | lr | warm-up | batch | positions | one batch | validation |", "|---|---|---|---|---|---|---|"]
    for variant, row in rows.items():
        fields = dict(part.split(" ", 1) for part in row["recipe"].split("; ", 1)[1].split(", "))
        fit = one_batch["runs"].get(variant) if one_batch else None
        fitted = f"{fit['psnr'][-1][1]:.2f}" if fit else "–"
        lines.append(f"| {LOSS_NAMES.get(fields['loss'], fields['loss'])} | {float(fields['lr']):.0e} | "
                     f"{fields['warm-up']} | {fields['batch']} | {fields['positions']} | {fitted} | "
                     f"{row['val'][-1][1]:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = CliParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=positive_int, default=500, help="optimizer steps of each one-batch fit")
    parser.add_argument("--runs-dir", default="out/diagnosis", help="run folders of the validation runs")
    parser.add_argument("--out", default="results/vit/diagnosis")
    parser.add_threads()
    parser.add_argument("--tables-only", action="store_true", help="no fitting: the tables from what is stored")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = SETS["diagnosis"]
    if not args.tables_only:
        one_batch_table(variants, args.steps, out)
    one_batch = json.loads((out / "one_batch.json").read_text()) if (out / "one_batch.json").exists() else None
    rows = validation_rows(variants, args.runs_dir)
    if rows:
        write_json_atomically(out / "validation.json", rows)
    elif (out / "validation.json").exists():  # no run folders here (a fresh clone): the stored table
        rows = json.loads((out / "validation.json").read_text())
    write_text_atomically(out / "diagnosis.md", markdown(one_batch, rows))
    if rows:
        write_text_atomically(out / "table.md", compact(one_batch, rows))
    print(f"wrote {out / 'diagnosis.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
