"""The memorisation curves of report 2 (f): how far a model has memorised the training part, against steps and hours.

    python -m scripts.memorisation                     # out/experiments/vit_memorise.seed* -> results/vit/memorise/
    python -m scripts.memorisation --runs out/a out/b --config config/other.json --out out/curve

Reads each run's metrics.jsonl (model.engine.train with training.train_part_batches: the training part scored at
every validation; an unfinished run is drawn up to the step it reached) and writes into --out:

    curve.json   per run (seed): per validation its step, training hours, PSNR and L1 on the training part's
                 windows scored, validation PSNR; the run's rate (steps per hour of training); over the runs: the
                 last training-part PSNR and hours of each (lists, in seed order), the step's FLOPs
                 (model.engine.step_flops), the baselines on the whole training part, and where the 30 dB aim
                 stands on the mean curve of the runs: the first step that reached it, or an extrapolation (a
                 straight line in log steps through the second half of the curve) with the compute it asks for and
                 that compute's hours here and on one GTX 1080 Ti
    curve.png    training-part and validation PSNR of every run against steps (hours on the top axis), the aim and
                 the held player on the training part
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from model.baselines import LABELS, ROLLS_OUT, baseline_predictors
from model.cli import CliParser, fail
from model.config import ConfigError, load_config
from model.data import DataError, open_video
from model.engine import METRICS, step_flops
from model.files import write_json_atomically
from model.protocol import training_part_scores

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
    """The next-frame baselines' PSNR and L1 on every window of the training part (windows of BASELINE_FRAMES
    frames), scored as the evaluation protocol scores the training part (model.protocol.training_part_scores)."""
    video = open_video(cfg, num_frames=BASELINE_FRAMES)
    scores = training_part_scores(baseline_predictors(BASELINE_FRAMES, player_box=video.player_box), video,
                                  BASELINE_FRAMES, count=None)
    return {name: {"psnr": scores[name]["psnr"], "l1": scores[name]["l1"]} for name in ROLLS_OUT if name in scores}


def plot(result, path):
    fig, ax = plt.subplots(figsize=(5.0, 2.5), layout="constrained")  # the size it prints (3/4 of the text width)
    for i, run in enumerate(result["runs"]):
        steps = [p["step"] for p in run["points"]]
        first = i == 0  # one legend entry per kind of line, not per seed
        ax.plot(steps, [p["train_part_psnr"] for p in run["points"]], "o-", color="tab:blue", alpha=0.85, markersize=4,
                label=f"training part ({run['points'][0]['train_part_windows']} windows)" if first else None)
        ax.plot(steps, [p["val_psnr"] for p in run["points"]], "s--", color="tab:orange", alpha=0.85, markersize=4,
                label="validation part" if first else None)
    ax.axhline(AIM_DB, color="black", linewidth=1, linestyle=":", label=f"aim, {AIM_DB:.0f} dB")
    held = result["baselines"].get("player_held")
    if held:
        ax.axhline(held["psnr"], color="tab:green", linewidth=1, label=f"{LABELS['player_held']} (training part)")
    seeds = ", ".join(str(run["seed"]) for run in result["runs"])
    ax.set_xlabel(f"optimizer step (batch 16); seed{'s' if len(result['runs']) > 1 else ''} {seeds}")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    per_hour = result["steps_per_hour"]
    top = ax.secondary_xaxis("top", functions=(lambda s: s / per_hour, lambda h: h * per_hour))
    top.set_xlabel("hours of training here (1 CPU thread)")
    fig.savefig(path, dpi=150)
    plt.close(fig)


def run_seed(run_dir):
    """The seed of a run: from its done.json (written by the runner), else from a folder name ending .seedN."""
    done = Path(run_dir) / "done.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))["seed"]
    suffix = Path(run_dir).name.rpartition(".seed")[2]
    return int(suffix) if suffix.isdigit() else None


def read_run(run_dir):
    """One run's curve -> dict, or an error message naming what is missing."""
    if not (run_dir / METRICS).is_file():
        return f"no {run_dir / METRICS}"
    points, records = read_points(run_dir)
    if not points:
        return (f"{run_dir / METRICS} has no training-part scores yet (training.train_part_batches, at every "
                f"validation)")
    return {"run": str(run_dir), "seed": run_seed(run_dir), "step": records[-1]["step"],
            "hours": records[-1]["seconds"] / 3600, "steps_per_hour": rate(records), "last": points[-1],
            "best_train_part_psnr": max(p["train_part_psnr"] for p in points), "points": points}


def mean_curve(runs):
    """The runs' mean training-part PSNR at the validations that every run reached."""
    steps = sorted(set.intersection(*({p["step"] for p in run["points"]} for run in runs)))
    at = [{p["step"]: p for p in run["points"]} for run in runs]
    return [{"step": step, "hours": float(np.mean([points[step]["hours"] for points in at])),
             "train_part_psnr": float(np.mean([points[step]["train_part_psnr"] for points in at]))} for step in steps]


def main(argv=None):
    parser = CliParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", help="the run folders (default: out/experiments/vit_memorise.seed*)")
    parser.add_argument("--config", default="config/vit_memorise.json", help="the runs' config")
    parser.add_argument("--out", type=Path, default=Path("results/vit/memorise"), help="where the results go")
    args = parser.parse_args(argv)
    run_dirs = args.runs or sorted(Path("out/experiments").glob("vit_memorise.seed*"))
    if not run_dirs:
        return fail(f"no run folders: train with python -m scripts.run_experiments --set memorise first, or name "
                    f"them with --runs", 1)
    try:
        cfg = load_config(args.config)
        runs = [read_run(run_dir) for run_dir in run_dirs]
        missing = [run for run in runs if isinstance(run, str)]
        if missing:
            return fail(f"{missing[0]}: train with python -m model.main -cfg {args.config} --train first, or name "
                        f"the run folders with --runs", 1)
        baselines = training_part_baselines(cfg)
    except (ConfigError, DataError, OSError, KeyError) as error:
        return fail(f"{error}", 1)
    runs.sort(key=lambda run: (run["seed"] is None, run["seed"] if run["seed"] is not None else 0, run["run"]))
    flops, per_hour = step_flops(cfg), float(np.mean([run["steps_per_hour"] for run in runs]))
    result = {"config": args.config, "total_steps": cfg.training.max_steps, "aim_db": AIM_DB,
              "seeds": [run["seed"] for run in runs], "step": [run["step"] for run in runs],
              "hours": [run["hours"] for run in runs],
              "last_train_part_psnr": [run["last"]["train_part_psnr"] for run in runs],
              "last_val_psnr": [run["last"]["val_psnr"] for run in runs],
              "steps_per_hour": per_hour, "gflop_per_step": flops / 1e9, "baselines": baselines,
              "aim": aim(mean_curve(runs), per_hour, flops), "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(args.out / "curve.json", result)
    plot(result, args.out / "curve.png")
    for run in runs:
        last = run["last"]
        print(f"seed {run['seed']}: step {run['step']} of {result['total_steps']} ({run['hours']:.2f} h): training "
              f"part {last['train_part_psnr']:.2f} dB, validation {last['val_psnr']:.2f} dB")
    print(f"aim {AIM_DB:.0f} dB (mean curve): {json.dumps(result['aim'])}")
    print(f"wrote {args.out}/curve.json, curve.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
