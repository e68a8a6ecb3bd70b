"""Checkpoints that survive crashes and say clearly when they do not fit.

A checkpoint is a plain dict saved with torch.save and loadable with ``torch.load(weights_only=True)``:

    format_version   int, FORMAT_VERSION
    model            the model's state dict
    model_kwargs     the VisionTransformer arguments (ModelConfig.model_kwargs())
    config           the run's config as a nested dict
    optimizer, scheduler, scaler   their state dicts
    step             optimizer steps done
    epoch            epochs done as a float (for reading; the sampler state is exact)
    sampler          data order: epoch, position in it, generator state at the epoch's start
    mask_generator   state of the generator drawing the random patch masks (num_frames == 1)
    torch_rng        the global CPU random state (and cuda_rng on a GPU)
    best_val_loss    lowest validation loss so far (inf before the first validation)
    seconds          training time so far
    seed             the --seed of the run

Saving writes a temporary file next to the target, syncs it to disk and renames it over the target,
so a crash during the save leaves the previous checkpoint intact.
"""
import pickle
import zipfile
from pathlib import Path

import torch

from model.config import ARCHITECTURE_KEYS, config_from_dict
from model.files import atomic_file

# 2: the output as one choice (model.output) and its head's weights under head.*;
# model/scripts/convert_checkpoint.py turns a format-1 checkpoint into this one.
FORMAT_VERSION = 2
REQUIRED_KEYS = ("format_version", "model", "model_kwargs", "config", "step")


class CheckpointError(Exception):
    """A checkpoint that is missing, damaged or made for another model; the message is one line."""


def save_checkpoint(path, payload):
    """torch.save payload to path atomically (temporary file, fsync, rename)."""
    with atomic_file(path, "wb") as file:
        torch.save(payload, file)


def load_checkpoint(path, map_location="cpu", check_format=True):
    """Read a checkpoint written by save_checkpoint -> payload dict (of FORMAT_VERSION unless not check_format)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}{_missing_best_hint(path)}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        detail = detail.split(". ")[0]  # torch's reader adds sentences of advice after the cause
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({detail[:200]})") from None
    if not isinstance(payload, dict) or any(key not in payload for key in REQUIRED_KEYS):
        raise CheckpointError(f"{path} is not a checkpoint of this project (expected the keys "
                              f"{', '.join(REQUIRED_KEYS)})")
    if check_format and payload["format_version"] != FORMAT_VERSION:
        hint = " (convert it with python -m model.scripts.convert_checkpoint)" if payload["format_version"] == 1 else ""
        raise CheckpointError(f"{path} has checkpoint format {payload['format_version']}, "
                              f"this version reads format {FORMAT_VERSION}{hint}")
    return payload


EXPORTED_KEYS = REQUIRED_KEYS + ("seed", "best_val_loss", "seconds", "epoch")


def export_checkpoint(source, target):
    """Write the weights, model arguments, config, step and seed of a training checkpoint to target (atomically).

    Drops the optimizer, scheduler and random states (about two thirds of the file): the result loads for
    prediction and validation but cannot resume training. Returns the step it holds.
    """
    payload = load_checkpoint(source)
    save_checkpoint(target, {key: payload[key] for key in EXPORTED_KEYS if key in payload})
    return payload["step"]


def check_model_kwargs(payload, model_kwargs, path):
    """Raise CheckpointError naming every architecture argument (model.config.ARCHITECTURE_KEYS) where
    the checkpoint and the config's model_kwargs differ."""
    saved = payload["model_kwargs"]
    differences = [f"model.{key} {saved.get(key)!r} (checkpoint) vs {model_kwargs[key]!r} (config)"
                   for key in ARCHITECTURE_KEYS if saved.get(key) != model_kwargs[key]]
    if differences:
        raise CheckpointError(f"checkpoint {path} belongs to another model: {'; '.join(differences)}")


def load_model_state(model, payload, path):
    """Load the weights strictly (every parameter must match) or raise CheckpointError."""
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise CheckpointError(f"checkpoint {path} does not fit the model: {detail[:300]}") from None


def checkpoint_config(path):
    """The config a checkpoint was trained with (stored in it), validated as a config file is -> Config."""
    return config_from_dict(load_checkpoint(path)["config"])


def _missing_best_hint(path):
    """For a missing best.ckpt: when it appears, and what to use until then."""
    if path.name != "best.ckpt":
        return ""
    quicksave = path.with_name("quicksave.ckpt")
    instead = quicksave if quicksave.is_file() else "the run's quicksave.ckpt"
    return (f" (a run writes best.ckpt at its first validation, after training.validate_every steps; "
            f"until then load {instead})")
