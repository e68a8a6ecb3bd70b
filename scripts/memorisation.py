"""The memorisation curve of report 2 (f): how far a model has memorised the training part, against steps and hours.

    python -m scripts.memorisation                                  # out/vit_memorise.device0 -> results/vit/memorise/
    python -m scripts.memorisation --run out/other.device0 --config config/other.json --out out/curve

Reads the run's metrics.jsonl (model.engine.train with training.train_part_batches: the training part scored at
every validation; an unfinished run is drawn up to the step it reached) and writes into --out:

    curve.json   per validation: step, training hours, PSNR and L1 on the training part's windows scored, validation
                 PSNR; the rate (steps per hour of training), the step's FLOPs (model.engine.step_flops), the
                 baselines on the whole training part, and where the 30 dB aim stands: the first step that reached
                 it, or an extrapolation (a straight line in log steps through the second half of the curve) with
                 the compute it asks for and that compute's hours here and on one GTX 1080 Ti
    curve.png    training-part and validation PSNR against steps (hours on the top axis), the aim and the held
                 player on the training part
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from model.baselines import LABELS, ROLLS_OUT
from model.cli import CliParser, fail
from model.config import ConfigError, load_config
from model.data import DataError, config_parts, load_metadata, load_video, part_windows, player_box, resolve_data_path
from model.engine import METRICS, step_flops
from model.evaluate import baseline_metrics
from model.files import write_json_atomically

AIM_DB = 30.0  # the training-part PSNR the memorisation aims at (report 2 (f))
BASELINE_FRAMES = 3  # the held player needs two seen frames
REFERENCE_GPU = ("GTX 1080 Ti", 11.3e12)  # the course cluster's card and its fp32 peak FLOP/s
GPU_UTILISATION = (0.1, 0.3)  # the share of that peak a model of this size usually reaches (docs/cluster.md)


def read_points(run_dir):
    """The validations of a run -> (points, records): one dict per validation with the training part's numbers."""
    path = Path(run_dir) / METRICS
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    points = [{"step": r["step"], "hours": r["seconds"] / 3600, "train_part_psnr": r["train_part_psnr"],
               "train_part_l1": r["train_part_l1"], "train_part_windows": r["train_part_windows"],
               "val_psnr": r["val_psnr"]} for r in records if "train_part_psnr" in r]
    return points, records


def rate(records):
    """Training steps per hour over the run (validation time included, as the run spent it)."""
    first, last = records[0], records[-1]
    return (last["step"] - first["step"]) / max(1e-9, (last["seconds"] - first["seconds"]) / 3600)


def aim(points, steps_per_hour, flops):
    """Where the aim stands: reached at a step, or extrapolated from the second half of the curve."""
    reached = [p for p in points if p["train_part_psnr"] >= AIM_DB]
    if reached:
        return {"reached_at_step": reached[0]["step"], "reached_after_hours": reached[0]["hours"]}
    tail = points[len(points) // 2:]
    if len(tail) < 2:
        return {"reached_at_step": None, "extrapolation": None}
    slope, intercept = np.polyfit(np.log10([p["step"] for p in tail]), [p["train_part_psnr"] for p in tail], 1)
    if slope <= 0:
        return {"reached_at_step": None, "extrapolation": {"db_per_decade": float(slope), "steps": None}}
    steps = 10 ** ((AIM_DB - intercept) / slope)
    name, peak = REFERENCE_GPU
    return {"reached_at_step": None, "extrapolation": {
        "fitted_on_steps": [tail[0]["step"], tail[-1]["step"]], "db_per_decade": float(slope),
        "steps": float(steps), "pflop": float(steps * flops / 1e15), "hours_here": float(steps / steps_per_hour),
        "gpu": name, "gpu_hours": [float(steps * flops / (peak * share) / 3600) for share in reversed(GPU_UTILISATION)],
        "gpu_utilisation": list(GPU_UTILISATION)}}


def training_part_baselines(cfg):
    """The next-frame baselines' PSNR on the whole training part (windows of BASELINE_FRAMES frames)."""
    video = torch.as_tensor(load_video(cfg))
    windows = part_windows(video, "train", config_parts(cfg, len(video), BASELINE_FRAMES), BASELINE_FRAMES)
    box = player_box(load_metadata(resolve_data_path(cfg.data.hdf5_file)))
    metrics = baseline_metrics(windows, torch.arange(len(windows)), 32, player_box=box)
    names = [name for name in ROLLS_OUT if f"{name}_psnr" in metrics]
    return {name: {"psnr": metrics[f"{name}_psnr"], "l1": metrics[f"{name}_l1"]} for name in names}


def plot(result, path):
    points = result["points"]
    steps = [p["step"] for p in points]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    ax.plot(steps, [p["train_part_psnr"] for p in points], "o-", color="tab:blue",
            label=f"training part ({points[0]['train_part_windows']} windows)")
    ax.plot(steps, [p["val_psnr"] for p in points], "s--", color="tab:orange", label="validation part")
    ax.axhline(AIM_DB, color="black", linewidth=1, linestyle=":", label=f"aim, {AIM_DB:.0f} dB")
    held = result["baselines"].get("player_held")
    if held:
        ax.axhline(held["psnr"], color="tab:green", linewidth=1, label=f"{LABELS['player_held']} (training part)")
    ax.set_xlabel("optimizer step (batch 16)")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    top = ax.secondary_xaxis("top", functions=(lambda s: s / result["steps_per_hour"],
                                               lambda h: h * result["steps_per_hour"]))
    top.set_xlabel("hours of training here (1 CPU thread)")
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv=None):
    parser = CliParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("out/vit_memorise.device0"), help="the run folder")
    parser.add_argument("--config", default="config/vit_memorise.json", help="the run's config")
    parser.add_argument("--out", type=Path, default=Path("results/vit/memorise"), help="where the results go")
    args = parser.parse_args(argv)
    if not (args.run / METRICS).is_file():
        return fail(f"no {args.run / METRICS}: train with python -m model.main -cfg {args.config} --train first, "
                    f"or name the run folder with --run", 1)
    try:
        cfg = load_config(args.config)
        points, records = read_points(args.run)
        if not points:
            return fail(f"{args.run / METRICS} has no training-part scores yet (training.train_part_batches, "
                        f"at every validation)", 1)
        baselines = training_part_baselines(cfg)
    except (ConfigError, DataError, OSError, KeyError) as error:
        return fail(f"{args.run}: {error}", 1)
    flops, per_hour = step_flops(cfg), rate(records)
    result = {"config": args.config, "run": str(args.run), "step": records[-1]["step"],
              "total_steps": cfg.training.max_steps, "hours": records[-1]["seconds"] / 3600,
              "steps_per_hour": per_hour, "gflop_per_step": flops / 1e9, "aim_db": AIM_DB,
              "last": points[-1], "best_train_part_psnr": max(p["train_part_psnr"] for p in points),
              "points": points, "baselines": baselines, "aim": aim(points, per_hour, flops)}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(args.out / "curve.json", result)
    plot(result, args.out / "curve.png")
    last = points[-1]
    print(f"step {result['step']} of {result['total_steps']} ({result['hours']:.2f} h): training part "
          f"{last['train_part_psnr']:.2f} dB, validation {last['val_psnr']:.2f} dB; aim {AIM_DB:.0f} dB: "
          f"{json.dumps(result['aim'])}")
    print(f"wrote {args.out}/curve.json, curve.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
