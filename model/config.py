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

DEFAULT_HDF5_FILE = "./gameplay-data.hdf5"
OPTIMIZERS = ("adamw", "radam")
LOSSES = ("l1_ssim", "l1", "mse")  # nn.loss.LOSSES; config stays free of torch imports


class ConfigError(Exception):
    """A config file that cannot be read or holds a bad value; the message is one line."""


@dataclass(frozen=True)
class DataConfig:
    # The video: HDF5 with /rgb_images (one encoded frame per row, or raw uint8 frames).
    # The default file is created from the built-in gameplay renderer when it is missing.
    hdf5_file: str = DEFAULT_HDF5_FILE
    # The last fraction of the video is held out for validation (a temporal split: no window
    # of the training part overlaps the validation part). 0 trains on everything, without validation.
    validation_fraction: float = 0.1


@dataclass(frozen=True)
class ModelConfig:
    batch_size: int = 32
    # bf16 autocast on GPUs that support it, else fp16 with loss scaling; ignored on the CPU.
    mixed_precision: bool = False
    image_height: int = 144
    image_width: int = 160
    # Frames per window: num_frames - 1 are seen, the last one is predicted.
    # 1 switches to masked reconstruction of a single frame (mask_percentage of its patches).
    num_frames: int = 3
    channels: int = 128  # the embedding size
    num_heads: int = 2
    layers: int = 5
    patch_size: int = 16
    gradient_accumulation_steps: int = 1
    attention: bool = True  # false: feed-forward token mixers instead of self-attention (sheet 2 (d))
    positional_embedding: bool = True  # false: no positional embedding at all (sheet 2 (e))
    # Spread of the initial positional embedding; 1.0 tells the masked tokens apart from the start.
    positional_init_std: float = 0.02
    # "normal" (random, positional_init_std) or "sincos" (sines and cosines of frame, row, column).
    positional_init: str = "normal"
    # true: the model predicts the change from the last seen frame (needs num_frames > 1).
    residual: bool = False
    # With residual: start the output projection at zero (the model starts as copy-last-frame).
    zero_init_output: bool = True
    # With residual: > 0 moves the last frame first, by a per-pixel mixture of the shifts within
    # +-warp_radius pixels that the model predicts (a learned warp); 0: the plain residual.
    warp_radius: int = 0
    # With residual: > 0 keeps the last frame exactly wherever no pixel within change_radius pixels
    # changed between the last two seen frames (needs num_frames > 2); 0: the output is used everywhere.
    change_radius: int = 0
    mask_percentage: float = 0.5  # used only when num_frames == 1
    # true: attention through torch's scaled_dot_product_attention (same weights, faster).
    fused_attention: bool = True


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
    log_every: int = 100  # steps between metrics.jsonl records
    min_lr_ratio: float = 0.1  # the cosine decay ends at learning_rate * min_lr_ratio


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
    """Read and validate a config file (.json with comments, .yaml or .yml) -> Config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: invalid YAML: {' '.join(str(error).split())}") from None
    elif path.suffix == ".json":
        try:
            raw = json.loads(strip_json_comments(text))
        except ValueError as error:
            if not isinstance(error, json.JSONDecodeError):
                raise ConfigError(f"{path}: {error}") from None
            raise ConfigError(f"{path}: invalid JSON at line {error.lineno} column {error.colno}: "
                              f"{error.msg}") from None
    else:
        raise ConfigError(f"{path}: unsupported config format '{path.suffix}' (use .json, .yaml or .yml)")
    return config_from_dict(raw)


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


def _all_keys():
    keys = [f.name for f in dataclasses.fields(Config)]  # includes the section names
    for section, cls in SECTIONS.items():
        keys += [f"{section}.{f.name}" for f in dataclasses.fields(cls)]
    return keys


def _unknown_key_message(dotted):
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


def _check_values(cfg):
    """Ranges and combinations that the types alone do not rule out."""
    m, t = cfg.model, cfg.training

    def require(ok, key, message):
        if not ok:
            raise ConfigError(f"config key '{key}': {message}")

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
    non_negative = {"num_workers": cfg.num_workers, "weight_decay": cfg.weight_decay,
                    "training.warmup_steps": t.warmup_steps, "training.grad_clip": t.grad_clip}
    for key, value in non_negative.items():
        require(value >= 0, key, f"must not be negative, got {value}")
    require(cfg.learning_rate > 0, "learning_rate", f"must be positive, got {cfg.learning_rate}")
    require(0 <= cfg.data.validation_fraction < 1, "data.validation_fraction",
            f"must lie in [0, 1), got {cfg.data.validation_fraction}")
    require(0 < m.mask_percentage <= 1, "model.mask_percentage",
            f"must lie in (0, 1], got {m.mask_percentage}")
    require(m.positional_init_std > 0, "model.positional_init_std",
            f"must be positive, got {m.positional_init_std}")
    require(m.positional_init in ("normal", "sincos"), "model.positional_init",
            f"must be 'normal' or 'sincos', got {m.positional_init!r}")
    require(m.positional_init != "sincos" or (m.channels % 2 == 0 and m.channels >= 6), "model.positional_init",
            f"'sincos' needs an even model.channels >= 6, got {m.channels}")
    require(0 <= t.min_lr_ratio <= 1, "training.min_lr_ratio", f"must lie in [0, 1], got {t.min_lr_ratio}")
    require(t.loss in LOSSES, "training.loss", f"{t.loss!r} is not one of {', '.join(LOSSES)}")
    require(t.optimizer in OPTIMIZERS, "training.optimizer",
            f"{t.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    for side in ("height", "width"):
        size = getattr(m, f"image_{side}")
        require(size % m.patch_size == 0, "model.patch_size",
                f"{m.patch_size} does not divide model.image_{side} {size}")
    require(m.channels % m.num_heads == 0, "model.channels",
            f"{m.channels} is not divisible by model.num_heads {m.num_heads}")
    require(m.warp_radius >= 0, "model.warp_radius", f"must not be negative, got {m.warp_radius}")
    require(m.warp_radius == 0 or m.residual, "model.warp_radius",
            f"{m.warp_radius} needs model.residual true (the warp moves the frame the change is added to)")
    require(m.warp_radius < min(m.image_height, m.image_width), "model.warp_radius",
            f"{m.warp_radius} must be smaller than the image")
    require(m.change_radius >= 0, "model.change_radius", f"must not be negative, got {m.change_radius}")
    require(m.change_radius == 0 or (m.residual and m.num_frames > 2), "model.change_radius",
            f"{m.change_radius} needs model.residual true and model.num_frames > 2 (two seen frames to compare)")
    require(not (m.residual and m.num_frames == 1), "model.residual",
            "needs model.num_frames > 1 (with one frame there is no previous frame to add the change to)")
    patches = (m.image_height // m.patch_size) * (m.image_width // m.patch_size)
    require(m.num_frames > 1 or round(m.mask_percentage * patches) >= 1, "model.mask_percentage",
            f"{m.mask_percentage} masks no patch of the {patches} in a frame")
