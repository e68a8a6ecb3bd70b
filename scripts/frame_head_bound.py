"""How well the sheet's output ("frame") can draw the test frames at all: an upper bound per token width.

    python -m scripts.frame_head_bound config/long/sheet_cpu_long.json --eval results/vit/long/sheet_cpu_long.seed0/eval.json \
        --widths 32 64 128 192 256 --out results/vit/long/frame_head_bound

With model.output "frame" each predicted p x p patch is the reverse embedding of one token: the same
linear map C -> p*p plus bias for every patch (nn/attention.py, ReversePatchEmbedding). So every patch
the model can draw lies in one affine subspace of dimension at most C, whatever the layers before it
compute. The best such subspace for a set of patches is their mean plus their first C principal
components; projecting the true test frames onto it gives the lowest MSE any weights could reach,
even weights chosen with the test frames and a model that knew the next frame. Printed and written
(JSON and a Markdown table) for the config's width and the --widths given: that bound, as the PSNR of
the mean MSE over the test part's predicted frames (the project's definition), next to copy-last,
continue motion and the run itself on the same frames, from the run's eval.json when --eval names one.
The bound holds for the head's output; the model's prediction is that output clamped to [0, 1], which
moves a pixel only closer to its true value, so the table also gives the bounding projection clamped
(what a model drawing it would score; a clamped output can in principle do a little better still).

The other heads ("residual", "warp") add their change to the last seen frame, which this subspace
does not limit: the copy of the last frame costs them nothing.
"""
import json
from pathlib import Path

import numpy as np
import torch

from model.cli import CliParser, fail
from model.config import ConfigError, load_config
from model.data import DataError, config_parts, evaluation_part, load_video
from model.engine import write_json_atomically
from model.metrics import psnr

WIDTHS = (32, 64, 128, 192)  # 64: config/vit_cpu.json, 128: the sheet's config/vit.json


def patches(frames, patch_size):
    """float frames (N, H, W) -> their non-overlapping patches (N*h*w, p*p)."""
    n, height, width = frames.shape
    p = patch_size
    return (frames.reshape(n, height // p, p, width // p, p).permute(0, 1, 3, 2, 4).reshape(-1, p * p))


def subspace_psnr(targets, widths):
    """targets (M, D) in [0, 1] -> {C: (PSNR of the targets projected onto their best affine C-subspace,
    PSNR of that projection clamped to [0, 1])}; (None, None) where C >= D (every patch fits)."""
    mean = targets.mean(0)
    centred = targets - mean
    _, _, components = torch.linalg.svd(centred, full_matrices=False)  # rows: principal directions
    results = {}
    for width in widths:
        if width >= targets.shape[1]:
            results[width] = (None, None)
            continue
        basis = components[:width]
        drawn = centred @ basis.T @ basis + mean
        results[width] = tuple(psnr((output - targets).pow(2).mean()).item()
                               for output in (drawn, drawn.clamp(0, 1)))
    return results


def markdown_table(result):
    rows = ["| token width C | bound on the head's output (dB) | that output clamped to [0, 1] (dB) |",
            "|---|---|---|"]
    for width, (bound, clamped) in result["bound_psnr"].items():
        mark = " (config)" if int(width) == result["config_width"] else ""
        cells = ("exact", "exact") if bound is None else (f"{bound:.2f}", f"{clamped:.2f}")
        rows.append(f"| {width}{mark} | {cells[0]} | {cells[1]} |")
    for name, psnr in result["baselines"].items():  # the run itself and the baselines, on the same frames
        label = name.replace("_", " ") if name in ("copy_last", "continue_motion") else name
        rows.append(f"| *{label}* | *{psnr:.2f}* | |")
    return "\n".join(rows)


def main(argv=None):
    parser = CliParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="config file of a model with output 'frame'")
    parser.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS), help="token widths C to bound")
    parser.add_argument("--eval", help="a finished run's eval.json: its baselines on the same frames join the table")
    parser.add_argument("--out", help="file stem of the .json and .md results (default: print only)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
        frames = load_video(cfg)
        part = evaluation_part(cfg)
        targets = config_parts(cfg, len(frames))[part]
        targets = range(max(targets.start, cfg.model.num_frames - 1), targets.stop)
        test = torch.as_tensor(frames[targets.start:targets.stop]).double() / 255
        widths = sorted(set(args.widths) | {cfg.model.channels})
        bound = subspace_psnr(patches(test, cfg.model.patch_size), widths)
        baselines = {}
        if args.eval:
            run = json.loads(Path(args.eval).read_text())
            baselines = {name: run["one_step"][name]["psnr"] for name in ("copy_last", "continue_motion")}
            baselines[f"{run['variant']} ({run['steps']} steps)"] = run["one_step"]["model"]["psnr"]
    except (ConfigError, DataError, OSError, KeyError, json.JSONDecodeError) as error:
        return fail(error, 1)
    result = {"config": args.config, "part": part, "frames": [targets.start, targets.stop],
              "patch_size": cfg.model.patch_size, "config_width": cfg.model.channels,
              "bound_psnr": {str(width): psnr for width, psnr in bound.items()}, "baselines": baselines}
    table = markdown_table(result)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(out.with_suffix(".json"), result)
        out.with_suffix(".md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
