"""Convert checkpoints and run folders of checkpoint format 1 to format 2, in place.

    python -m model.scripts.convert_checkpoint results/vit/vit_best_long.ckpt
    python -m model.scripts.convert_checkpoint out/experiments/best_long.seed0     # cfg.json and every *.ckpt

Format 1 described the output with model.residual, model.warp_radius (0: none) and
model.zero_init_output; format 2 has the one choice model.output ("frame", "residual" or "warp"),
model.warp_radius only for the warp, and the warp's weights under head.warp.* instead of warp.*. A config
from before the test part (no data.test_fraction) keeps the split it was trained with (test_fraction 0).
The weights are the same numbers: a converted checkpoint predicts exactly what it did, and a
converted quicksave resumes exactly (the parameters keep their order, so the optimizer state fits).
Files already in format 2 are left as they are. Every file is written atomically.
"""
import json
import sys
from pathlib import Path

from model.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from model.cli import CliParser, fail
from model.files import write_json_atomically


def convert_model_section(model):
    """A format-1 config's model section (dict) -> the format-2 one (a new dict); format 2 passes unchanged."""
    if "output" in model:
        return dict(model)
    model = dict(model)
    residual = model.pop("residual", False)
    warp_radius = model.pop("warp_radius", 0)
    model.pop("zero_init_output", None)
    model["output"] = "warp" if warp_radius else ("residual" if residual else "frame")
    model["warp_radius"] = warp_radius or None
    model.setdefault("change_radius", 0)
    return model


def convert_config(config):
    """A whole config dict (cfg.json, a checkpoint's "config") -> format 2.

    A data section without test_fraction is from before the test part: its run trained on all but the
    last validation_fraction, so it gets test_fraction 0 (the split it was trained with), never the
    default, which would put its validation frames into the test part and its training frames into the
    validation part.
    """
    config = dict(config)
    if "model" in config:
        config["model"] = convert_model_section(config["model"])
    if isinstance(config.get("data"), dict) and "test_fraction" not in config["data"]:
        config["data"] = {**config["data"], "test_fraction": 0.0}
    return config


def convert_payload(payload):
    """A format-1 checkpoint payload -> format 2 (the input is not changed)."""
    kwargs = convert_model_section(payload["model_kwargs"])
    kwargs.pop("batch_size", None)
    state = {("head." + key if key.startswith("warp.") else key): value for key, value in payload["model"].items()}
    return {**payload, "format_version": FORMAT_VERSION, "model": state, "model_kwargs": kwargs,
            "config": convert_config(payload["config"])}


def convert_file(path):
    """Convert one .ckpt or cfg.json in place -> True when it changed."""
    path = Path(path)
    if path.suffix == ".json":
        config = json.loads(path.read_text(encoding="utf-8"))
        converted = convert_config(config)
        if converted == config:
            return False
        write_json_atomically(path, converted)
        return True
    payload = load_checkpoint(path, check_format=False)
    if payload["format_version"] == FORMAT_VERSION:  # the model is current; the config may predate the test part
        config = convert_config(payload["config"])
        if config == payload["config"]:
            return False
        save_checkpoint(path, {**payload, "config": config})
        return True
    if payload["format_version"] != 1:
        raise CheckpointError(f"{path} has checkpoint format {payload['format_version']}; only format 1 converts")
    save_checkpoint(path, convert_payload(payload))
    return True


def main(argv=None):
    parser = CliParser(prog="python -m model.scripts.convert_checkpoint",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="checkpoints (.ckpt) or run folders (cfg.json and *.ckpt)")
    args = parser.parse_args(argv)
    try:
        for given in map(Path, args.paths):
            files = sorted([*given.glob("*.ckpt"), *given.glob("cfg.json")]) if given.is_dir() else [given]
            if not files:
                raise CheckpointError(f"{given} holds no checkpoint and no cfg.json")
            for path in files:
                print(f"{path}: {'converted' if convert_file(path) else 'already format ' + str(FORMAT_VERSION)}")
    except (CheckpointError, OSError, ValueError) as error:
        return fail(error, 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
