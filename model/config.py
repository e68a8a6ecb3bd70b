"""The validated configuration of the predictive ViT (Exercise 2).

A config file is JSON (``//`` and ``/* */`` comments allowed, as in the course template) or YAML.
Its keys are those of the template plus a few extras; any key left out takes the default below,
which are the template's values (``config/vit.json``). Everything is checked at load time, so a
typo or an impossible size fails before any data is read, with one line naming the key:

    config key 'model.patch_size': 15 does not divide model.image_height 144

Overrides from code (tuning, the ``--max-steps`` flag) go through :func:`with_overrides`, which
runs the same checks.
"""
import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from model.vit import WARP_RADIUS, check_head_options
from nn.attention import OptionError, check_heads, check_patch_grid, check_positions
from nn.loss import LOSSES

DEFAULT_HDF5_FILE = "./gameplay-data.hdf5"
OPTIMIZERS = ("adamw", "radam")


class ConfigError(Exception):
    """A config file that cannot be read or holds a bad value; the message is one line."""


@dataclass(frozen=True)
class DataConfig:
    # The video: HDF5 with /rgb_images (one encoded frame per row, or raw uint8 frames).
    # The default file is created from the built-in gameplay renderer when it is missing.
    hdf5_file: str = DEFAULT_HDF5_FILE
    # A temporal three-way split: training, then validation (model selection: best.ckpt, the
    # search's objective), then test (the last test_fraction, for final evaluations only). No
    # training window reaches into the later parts. 0 leaves that part out.
    validation_fraction: float = 0.1
    test_fraction: float = 0.1


def _model(default, architecture=True):
    """A ModelConfig field that is a VisionTransformer argument; ``architecture``: it shapes the weights
    or what they mean, so a checkpoint and the config it is loaded with must agree on it."""
    return field(default=default, metadata={"model_argument": True, "architecture": architecture})


@dataclass(frozen=True)
class ModelConfig:
    batch_size: int = 32
    # bf16 autocast (on GPUs without bf16: fp16 with loss scaling); on the CPU bf16 autocast too (scripts/bench.py
    # times it against the fp32 step; tests/test_training.py checks that it learns as fp32 does).
    mixed_precision: bool = False
    image_height: int = _model(144)
    image_width: int = _model(160)
    # Frames per window: num_frames - 1 are seen, the last one is predicted.
    # 1 switches to masked reconstruction of a single frame (mask_percentage of its patches).
    num_frames: int = _model(3)
    channels: int = _model(128)  # the embedding size
    num_heads: int = _model(2)
    layers: int = _model(5)
    patch_size: int = _model(16)
    gradient_accumulation_steps: int = 1
    attention: bool = _model(True)  # false: feed-forward token mixers instead of self-attention (sheet 2 (d))
    positional_embedding: bool = _model(True)  # false: no positional embedding at all (sheet 2 (e))
    # What the model outputs (model/vit.py): "frame" the predicted frame itself (the sheet's);
    # "residual" the change from the last seen frame; "warp" the change from the last seen frame moved
    # by per-pixel shift weights that the model predicts (a learned warp). Both of the latter start as
    # the copy of the last frame.
    output: str = _model("frame")
    # With output "warp": the shifts mixed are those within +-warp_radius pixels (null: 2).
    warp_radius: typing.Optional[int] = _model(None)
    # With output "residual" or "warp": > 0 keeps the last frame exactly wherever no pixel within
    # change_radius pixels changed between the last two seen frames (needs num_frames > 2); 0: off.
    change_radius: int = _model(0)
    mask_percentage: float = _model(0.5, architecture=False)  # used only when num_frames == 1
    # true: attention through torch's scaled_dot_product_attention (same weights, faster).
    fused_attention: bool = _model(True, architecture=False)
    # How the positional embedding starts: "normal" (random, positional_init_std) or "sincos" (sines and
    # cosines of frame, row, column); 1.0 as the std tells the masked tokens apart from the start.
    positional_init: str = _model("normal", architecture=False)
    positional_init_std: float = _model(0.02, architecture=False)

    def model_kwargs(self):
        """The VisionTransformer arguments this section holds (stored in checkpoints)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("model_argument")}


ARCHITECTURE_KEYS = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.metadata.get("architecture"))


@dataclass(frozen=True)
class TrainingConfig:
    optimizer: str = "adamw"  # "adamw" or "radam"
    # "l1_ssim" (the template's 0.15 L1 + 0.85 (1 - SSIM) / 2), "l1" or "mse", on the masked pixels.
    loss: str = "l1_ssim"
    warmup_steps: int = 1000  # linear learning-rate warm-up, then cosine decay
    # Optimizer steps of the whole run (also the length of the cosine schedule);
    # null: epochs times the steps of one epoch.
    max_steps: typing.Optional[int] = None
    grad_clip: float = 1.0  # maximum gradient norm; 0 switches clipping off
    quicksave_every: int = 1000  # steps between quicksave.ckpt writes (one is also written at the end)
    validate_every: int = 1000  # steps between validations (one also runs at the end)
    validation_batches: typing.Optional[int] = 50  # batches per validation, spread over the split; null: all
    # Batches of training windows (spread over the training part) scored at every validation as well, written
    # as train_part_* (how far the model has memorised what it trains on); 0: off; null: the whole part.
    train_part_batches: typing.Optional[int] = 0
    log_every: int = 100  # steps between metrics.jsonl records
    min_lr_ratio: float = 0.1  # the cosine decay ends at learning_rate * min_lr_ratio
    # true: the training steps run the model through torch.compile (about a minute of compiling first;
    # then 1.27x the steps per second of config/vit_best.json on one CPU thread, docs/bench.md).
    # Validation, checkpoints and the weights are those of the plain model either way.
    compile: bool = False


@dataclass(frozen=True)
class Config:
    model_path: str = "vit"  # the run's name: out/{model_path}.device{N}/
    epochs: int = 1000
    # Threads that decode the video's frames at start-up. The decoded frames stay in memory and a
    # batch is gathered with one indexing operation, so training itself needs no loader workers.
    num_workers: int = 4
    learning_rate: float = 3e-4
    weight_decay: float = 3e-4
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self):
        """Plain nested dict (saved as the run's cfg.json and inside checkpoints)."""
        return dataclasses.asdict(self)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "training": TrainingConfig}


def load_config(path):
    """Read and validate a config file (.json with comments, .yaml or .yml) -> Config.

    A file may start from another: ``"base": "other.json"`` (a path relative to the file) takes every
    key of that config, and the file's own keys replace them, section by section. An experiment is
    then written as its differences from the config it varies.
    """
    return config_from_dict(read_raw_config(Path(path)))


def read_raw_config(path, seen=()):
    """The nested dict of a config file with its ``base`` chain merged in (not yet validated)."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = _parse(path)
    if not isinstance(raw, dict) or "base" not in raw:
        return raw
    base = raw.pop("base")
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: config key 'base' must be the path of another config file, got {_describe(base)}")
    base_path = (path.parent / base).resolve()
    if base_path in seen or base_path == path.resolve():
        raise ConfigError(f"{path}: config key 'base' leads back to {base_path} (a cycle)")
    merged = read_raw_config(base_path, (*seen, path.resolve()))
    if not isinstance(merged, dict):
        raise ConfigError(f"{base_path}: a config must be an object of keys, got {type(merged).__name__}")
    for key, value in raw.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _parse(path):
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: invalid YAML: {' '.join(str(error).split())}") from None
    if path.suffix == ".json":
        try:
            return json.loads(strip_json_comments(text))
        except ValueError as error:
            if not isinstance(error, json.JSONDecodeError):
                raise ConfigError(f"{path}: {error}") from None
            raise ConfigError(f"{path}: invalid JSON at line {error.lineno} column {error.colno}: "
                              f"{error.msg}") from None
    raise ConfigError(f"{path}: unsupported config format '{path.suffix}' (use .json, .yaml or .yml)")


def strip_json_comments(text):
    """Remove // line comments and /* block */ comments outside of JSON strings.

    Newlines are kept, so the line numbers of JSON errors still point into the file.
    """
    out, i, n = [], 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:  # an escaped character, e.g. \" does not end the string
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
            out.append(c)
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                line = text.count("\n", 0, i) + 1
                raise ValueError(f"unterminated /* comment starting at line {line}")
            out.append("\n" * text.count("\n", i, end))
            i = end + 2
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def config_from_dict(raw):
    """Validate a nested dict (as read from a config file) -> Config; missing keys take defaults."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be an object of keys, got {type(raw).__name__}")
    values = {}
    for key, value in raw.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{key}' must be an object, got {_describe(value)}")
            values[key] = SECTIONS[key](**_check_section(value, SECTIONS[key], prefix=f"{key}."))
    top = {k: v for k, v in raw.items() if k not in SECTIONS}
    cfg = Config(**_check_section(top, Config, prefix=""), **values)
    _check_values(cfg)
    if cfg.model.output == "warp" and cfg.model.warp_radius is None:  # stored resolved, as checkpoints hold it
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, warp_radius=WARP_RADIUS))
    return cfg


def with_overrides(cfg, overrides):
    """A copy of cfg with dotted keys replaced, e.g. {"model.channels": 64}, validated again."""
    raw = cfg.to_dict()
    for dotted, value in overrides.items():
        *sections, key = dotted.split(".")
        node = raw
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        if not isinstance(node, dict) or key not in node:
            raise ConfigError(_unknown_key_message(dotted))
        node[key] = value
    return config_from_dict(raw)


def with_budget(cfg, steps):
    """cfg trained for ``steps`` optimizer steps, its schedule fitted to that budget (validated again).

    The one place that turns a step budget into a schedule (the experiment runner's --steps, the
    search's trials): validation and quicksave every sixth of the run, warm-up at most a tenth of it.
    """
    every = max(1, steps // 6)
    return with_overrides(cfg, {"training.max_steps": steps,
                                "training.warmup_steps": min(cfg.training.warmup_steps, max(1, steps // 10)),
                                "training.validate_every": every, "training.quicksave_every": every,
                                "training.log_every": max(1, min(cfg.training.log_every, steps // 20))})


def _all_keys():
    keys = [f.name for f in dataclasses.fields(Config)]  # includes the section names
    for section, cls in SECTIONS.items():
        keys += [f"{section}.{f.name}" for f in dataclasses.fields(cls)]
    return keys


# Keys of earlier versions and what replaced them, for the message that names an unknown key.
REPLACED_KEYS = {"model.residual": "model.output", "model.zero_init_output": "model.output"}


def _unknown_key_message(dotted):
    if dotted in REPLACED_KEYS:
        return (f"config key '{dotted}' is unknown; it was replaced by '{REPLACED_KEYS[dotted]}' "
                f"(\"frame\", \"residual\" or \"warp\")")
    keys = _all_keys()
    leaf = dotted.rsplit(".", 1)[-1]
    same_leaf = [k for k in keys if k.rsplit(".", 1)[-1] == leaf]
    close = same_leaf or difflib.get_close_matches(dotted, keys, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"config key '{dotted}' is unknown{hint}"


def _check_section(values, cls, prefix):
    """Check names and types of one section's keys -> the kwargs for cls (sections excluded)."""
    types_ = typing.get_type_hints(cls)
    checked = {}
    for key, value in values.items():
        if key not in types_ or (cls is Config and key in SECTIONS):
            raise ConfigError(_unknown_key_message(prefix + key))
        checked[key] = _check_type(prefix + key, value, types_[key])
    return checked


def _check_type(key, value, expected):
    """The value if it has the expected type (ints are accepted for floats; bools never for numbers)."""
    optional = typing.get_origin(expected) in (typing.Union, types.UnionType)
    if optional:
        if value is None:
            return None
        expected = next(t for t in typing.get_args(expected) if t is not type(None))
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}")
        value = float(value) if ok else value
    else:
        ok = isinstance(value, expected)
    if not ok:
        names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
        wanted = names[expected] + (" or null" if optional else "")
        raise ConfigError(f"config key '{key}' must be {wanted}, got {_describe(value)}")
    return value


def _describe(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {json.dumps(value)}"
    if isinstance(value, (int, float)):
        return repr(value)
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def _require(ok, key, message):
    if not ok:
        raise ConfigError(f"config key '{key}': {message}")


def _check_values(cfg):
    """Ranges and combinations that the types alone do not rule out."""
    m, t = cfg.model, cfg.training
    require = _require
    require(cfg.model_path.strip() != "", "model_path", "must not be empty")
    require(not any(c in cfg.model_path for c in "/\\"), "model_path",
            f"{cfg.model_path!r} must be a plain name (it names the folder out/{{model_path}}.device{{N}})")
    require(cfg.data.hdf5_file.strip() != "", "data.hdf5_file", "must not be empty")
    positive = {"epochs": cfg.epochs, "model.batch_size": m.batch_size,
                "model.image_height": m.image_height, "model.image_width": m.image_width,
                "model.num_frames": m.num_frames, "model.channels": m.channels,
                "model.num_heads": m.num_heads, "model.layers": m.layers,
                "model.patch_size": m.patch_size,
                "model.gradient_accumulation_steps": m.gradient_accumulation_steps,
                "training.max_steps": t.max_steps, "training.quicksave_every": t.quicksave_every,
                "training.validate_every": t.validate_every,
                "training.validation_batches": t.validation_batches, "training.log_every": t.log_every}
    for key, value in positive.items():
        require(value is None or value >= 1, key, f"must be at least 1, got {value}")
    require(t.train_part_batches is None or t.train_part_batches >= 0, "training.train_part_batches",
            f"must not be negative, got {t.train_part_batches}")
    non_negative = {"num_workers": cfg.num_workers, "weight_decay": cfg.weight_decay,
                    "training.warmup_steps": t.warmup_steps, "training.grad_clip": t.grad_clip}
    for key, value in non_negative.items():
        require(value >= 0, key, f"must not be negative, got {value}")
    require(cfg.learning_rate > 0, "learning_rate", f"must be positive, got {cfg.learning_rate}")
    for key in ("validation_fraction", "test_fraction"):
        value = getattr(cfg.data, key)
        require(0 <= value < 1, f"data.{key}", f"must lie in [0, 1), got {value}")
    require(cfg.data.validation_fraction + cfg.data.test_fraction < 1, "data.test_fraction",
            f"{cfg.data.test_fraction} and data.validation_fraction {cfg.data.validation_fraction} "
            f"leave no frames to train on")
    require(0 <= t.min_lr_ratio <= 1, "training.min_lr_ratio", f"must lie in [0, 1], got {t.min_lr_ratio}")
    require(t.loss in LOSSES, "training.loss", f"{t.loss!r} is not one of {', '.join(LOSSES)}")
    require(t.optimizer in OPTIMIZERS, "training.optimizer",
            f"{t.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    _check_model(m)


def _model_key(name):
    """A module argument as the config spells it (the width is model.channels)."""
    return f"model.{'channels' if name == 'embed_size' else name}"


def _check_model(m):
    """The model section's sizes and the combinations of its options: the modules' own checks (nn.attention,
    model.vit), which name the config's keys, and what only a config has (the mask must hide a patch)."""
    require = _require
    try:
        check_patch_grid(m.image_height, m.image_width, m.patch_size, _model_key)
        check_heads(m.channels, m.num_heads, _model_key)
        check_positions(m.channels, m.mask_percentage, m.positional_init, m.positional_init_std, _model_key)
        check_head_options(m.output, m.num_frames, m.warp_radius, m.change_radius, _model_key)
    except OptionError as error:
        raise ConfigError(f"config key '{error.name}': {error.message}") from None
    if m.warp_radius is not None:
        require(m.warp_radius < min(m.image_height, m.image_width), "model.warp_radius",
                f"must lie between 1 and the image size, got {m.warp_radius}")
    patches = (m.image_height // m.patch_size) * (m.image_width // m.patch_size)
    require(m.num_frames > 1 or round(m.mask_percentage * patches) >= 1, "model.mask_percentage",
            f"{m.mask_percentage} masks no patch of the {patches} in a frame")
