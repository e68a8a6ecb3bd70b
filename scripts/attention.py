"""Where a published checkpoint's attention goes: report 2 (d)'s figure and the shares per head on the test part.

    python -m scripts.attention results/vit/vit_cpu.ckpt --out results/vit/sheet/attention_sheet30k

writes OUT.png (scripts.experiment_figures.attention_maps: the worst predicted patch of one test window, head by
head) and OUT.json (model.evaluate.attention_to_last_frame over every test window: the share of a predicted
token's attention on its own place and on the whole last seen frame, per block and per head of each block).
The runner draws the same figure from its run folders; this draws it from a checkpoint alone.
"""
import sys
from pathlib import Path

import torch

from model.checkpoint import CheckpointError, load_checkpoint
from model.cli import CliParser, fail
from model.config import config_from_dict
from model.data import DataError, evaluation_part, open_video
from model.engine import load_model
from model.evaluate import attention_to_last_frame
from model.files import write_json_atomically
from model.protocol import EVAL_BATCH
from scripts.experiment_figures import attention_maps


def main(argv=None):
    parser = CliParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint with its config, e.g. results/vit/vit_cpu.ckpt")
    parser.add_argument("--out", type=Path, required=True, help="OUT.png and OUT.json are written")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_dict(load_checkpoint(args.checkpoint)["config"])
        video = open_video(cfg)
        model, payload = load_model(args.checkpoint, cfg.model)
    except (CheckpointError, DataError, OSError, KeyError) as error:
        return fail(f"{args.checkpoint}: {error}", 1)
    part = evaluation_part(cfg)
    windows = video.windows(part)
    with torch.no_grad():
        shares = attention_to_last_frame(model.eval(), windows, batch_size=EVAL_BATCH)
    if shares is None:
        return fail(f"{args.checkpoint}: a model without attention, or with one frame, looks at no seen frame", 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(args.out.with_suffix(".json"), {
        "checkpoint": str(args.checkpoint), "seed": payload.get("seed"), "step": payload.get("step"),
        "part": part, "windows": len(windows), **shares})
    attention_maps(args.out.with_suffix(".png"), cfg, args.checkpoint, video.frames.numpy(), video.player_box)
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
