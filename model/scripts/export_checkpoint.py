"""Strip a training checkpoint down to what prediction needs, for publishing.

    python -m model.scripts.export_checkpoint out/experiments/sheet30k.seed0/final.ckpt results/vit/vit_cpu.ckpt

Keeps the weights, the model arguments, the run's config, its step and seed; drops the optimizer,
scheduler and random states (about two thirds of the file). The result loads with
``python -m model.scripts.predict --load`` and ``python -m model.main --validate --load``, but it cannot
resume training. Written atomically.

With several sources (the final.ckpt of a run's seeds), the one chosen on validation is exported: the run
whose metrics.jsonl ends with the lowest validation loss (its last validation, that of the final weights).

    python -m model.scripts.export_checkpoint out/experiments/sheet30k.seed{0,1,2}/final.ckpt results/vit/vit_cpu.ckpt
"""
import json
import math
import sys
from pathlib import Path

from model.checkpoint import CheckpointError, export_checkpoint
from model.cli import CliParser, fail
from model.engine import FINAL, METRICS


def last_validation_loss(checkpoint):
    """The validation loss of the last validation in the metrics.jsonl beside a run's final.ckpt (that of the
    final weights); a non-finite loss counts as infinite."""
    if Path(checkpoint).name != FINAL:
        raise CheckpointError(f"{checkpoint}: choosing on validation compares the final weights; give each run's {FINAL}")
    path = Path(checkpoint).parent / METRICS
    if not path.is_file():
        raise CheckpointError(f"no {path}: choosing on validation needs each run's metrics")
    losses = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            raise CheckpointError(f"{path}, line {number}: not a JSON record (cut short?)") from None
        if "val_loss" in record:
            losses.append(record["val_loss"])
    if not losses:
        raise CheckpointError(f"{path} holds no validation")
    return losses[-1] if math.isfinite(losses[-1]) else math.inf


def main(argv=None):
    parser = CliParser(prog="python -m model.scripts.export_checkpoint",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="+", help="training checkpoint (final.ckpt, quicksave.ckpt or best.ckpt); "
                        "with several (each run's final.ckpt), the one of the run with the lowest last validation loss")
    parser.add_argument("target", help="where the stripped checkpoint goes")
    args = parser.parse_args(argv)
    try:
        source = args.source[0]
        if len(args.source) > 1:
            losses = {path: last_validation_loss(path) for path in args.source}
            source = min(losses, key=losses.get)
            print("validation loss: " + ", ".join(f"{path} {loss:.5f}" for path, loss in losses.items()))
        step = export_checkpoint(source, args.target)
    except (CheckpointError, OSError) as error:
        return fail(error, 1)
    print(f"wrote {args.target} from {source} (step {step})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
