"""Strip a training checkpoint down to what prediction needs, for publishing.

    python -m model.scripts.export_checkpoint out/experiments/long.seed0/quicksave.ckpt results/vit/vit_cpu_long.ckpt

Keeps the weights, the model arguments, the run's config, its step and seed; drops the optimizer,
scheduler and random states (about two thirds of the file). The result loads with
``python -m model.scripts.predict --load`` and ``python -m model.main --validate --load``, but it cannot
resume training. Written atomically.
"""
import sys

from model.checkpoint import CheckpointError, export_checkpoint
from model.cli import CliParser, fail


def main(argv=None):
    parser = CliParser(prog="python -m model.scripts.export_checkpoint",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="training checkpoint (quicksave.ckpt or best.ckpt)")
    parser.add_argument("target", help="where the stripped checkpoint goes")
    args = parser.parse_args(argv)
    try:
        step = export_checkpoint(args.source, args.target)
    except (CheckpointError, OSError) as error:
        return fail(error, 1)
    print(f"wrote {args.target} (step {step})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
