"""The video: read once from HDF5, split in time, served as windows of consecutive frames.

File format (the course's): dataset ``/rgb_images`` holds the frames in temporal order, either one
encoded image (PNG or JPEG bytes, variable-length uint8) per row, or raw uint8 frames of shape
(N, H, W) or (N, H, W, 3). Colour becomes grayscale with the ITU-R 601-2 luma transform (Pillow's
``convert("L")``). An optional group ``/meta`` holds 1-D per-frame datasets (e.g. game state).

The decoded frames stay in memory as one uint8 tensor; a batch of windows is gathered with a single
indexing operation and only then converted to float in [0, 1].
"""
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cached_property
from io import BytesIO
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image

from model.config import DEFAULT_HDF5_FILE
from model.metrics import mean_frame_baseline, median_frame_baseline
from model.text import plural

# ITU-R 601-2 luma in Pillow's fixed-point form, so raw RGB frames match decoded ones exactly.
_LUMA_WEIGHTS = np.array([19595, 38470, 7471], dtype=np.uint32)


class DataError(Exception):
    """The video cannot be read or does not fit the config; the message is one line."""


def resolve_data_path(hdf5_file, scratch=None):
    """The data file to read: with --scratch DIR a leading './' of the configured path becomes DIR/."""
    if scratch is not None and hdf5_file.startswith("./"):
        return Path(scratch) / hdf5_file[2:]
    return Path(hdf5_file)


def needs_default_video(hdf5_file, path):
    """True when the configured file is the built-in default video and it does not exist yet."""
    return hdf5_file == DEFAULT_HDF5_FILE and path == Path(DEFAULT_HDF5_FILE) and not path.exists()


def load_video(cfg, scratch=None, log=print):
    """The config's video as uint8 (N, H, W), checked against the model section.

    The built-in gameplay video is rendered on first use when the config names the default file.
    """
    path = resolve_data_path(cfg.data.hdf5_file, scratch)
    if needs_default_video(cfg.data.hdf5_file, path):
        from model.video import gameplay
        log(f"{path} not found: rendering the built-in gameplay video ({gameplay.DEFAULT_NUM_FRAMES} frames, "
            f"seed {gameplay.DEFAULT_SEED}) into it")
        gameplay.ensure_default_video(path)
    frames = load_frames(path, num_workers=cfg.num_workers)
    check_frames(frames, path, cfg.model)
    return frames


def load_frames(path, num_workers=0):
    """Read /rgb_images -> uint8 array (N, H, W) grayscale; encoded rows are decoded with num_workers threads."""
    with _open(path) as file, _read_errors(path):
        if "rgb_images" not in file or not isinstance(file["rgb_images"], h5py.Dataset):
            found = ", ".join(sorted(file.keys())) or "nothing"
            raise DataError(f"{path} has no dataset /rgb_images (found: {found})")
        dataset = file["rgb_images"]
        if dataset.shape is None or len(dataset.shape) == 0 or dataset.shape[0] == 0:
            raise DataError(f"{path}: /rgb_images holds no frames")
        if h5py.check_vlen_dtype(dataset.dtype) is not None or dataset.dtype.kind == "V":
            rows = dataset[()]  # one encoded image per row (vlen uint8, bytes or opaque)
            frames = _decode_rows(path, rows, num_workers)
        elif dataset.dtype == np.uint8 and (dataset.ndim == 3 or (dataset.ndim == 4 and dataset.shape[-1] == 3)):
            frames = _to_gray(dataset[()])
        else:
            raise DataError(f"{path}: /rgb_images must hold encoded images or uint8 frames (N, H, W) or "
                            f"(N, H, W, 3), got {dataset.dtype} of shape {dataset.shape}")
    return frames


def load_metadata(path):
    """The 1-D per-frame datasets of the /meta group -> dict name -> array (empty without /meta)."""
    with _open(path) as file, _read_errors(path):
        group = file.get("meta")
        if not isinstance(group, h5py.Group):
            return {}
        return {name: item[()] for name, item in group.items()
                if isinstance(item, h5py.Dataset) and item.ndim == 1}


def player_box(meta):
    """Where the camera keeps the player, (top, bottom, left, right), in a video of the built-in renderer (its
    /meta records the player), else None: the place the continue-motion-player-held baseline copies."""
    if "player_tile_x" not in meta:
        return None
    from model.video.gameplay import PLAYER_BOX
    return PLAYER_BOX


def check_frames(frames, path, model_cfg):
    """Raise DataError when the video does not fit the model section of the config."""
    count, height, width = frames.shape
    if (height, width) != (model_cfg.image_height, model_cfg.image_width):
        raise DataError(f"{path} has frames of {height}x{width} (HxW) but the config asks for "
                        f"model.image_height {model_cfg.image_height} and model.image_width "
                        f"{model_cfg.image_width}")
    if count < model_cfg.num_frames:
        raise DataError(f"{path} holds {plural(count, 'frame')}, fewer than model.num_frames {model_cfg.num_frames}")


PARTS = ("train", "val", "test")
PART_NAMES = {"train": "training", "val": "validation", "test": "test"}


def split_video(num_video_frames, validation_fraction, test_fraction, num_frames):
    """Temporal three-way split -> {"train": range, "val": range, "test": range} of frame indices.

    The video is cut into three consecutive parts: training, then validation (the last but one
    validation_fraction), then test (the last test_fraction). A part is the set of frames a model
    predicts there; the frames a window sees before its predicted frame may lie in the part before
    (they are inputs only), so every model, whatever its num_frames, is scored on the same frames.
    Training windows lie wholly in the training part. A fraction of 0 leaves that part empty.
    """
    test = round(num_video_frames * test_fraction)
    val = round(num_video_frames * validation_fraction)
    train_end = num_video_frames - val - test
    parts = {"train": range(0, train_end), "val": range(train_end, train_end + val),
             "test": range(train_end + val, num_video_frames)}
    for key, fraction, count in (("validation_fraction", validation_fraction, val), ("test_fraction", test_fraction, test)):
        if fraction > 0 and count == 0:
            raise DataError(f"data.{key} {fraction} of a video of {plural(num_video_frames, 'frame')} is no frame; "
                            f"use a longer video or a larger fraction (0 leaves that part out)")
    if train_end < num_frames:
        raise DataError(f"the training part of the video has {plural(train_end, 'frame')}, fewer than model.num_frames "
                        f"{num_frames} (video of {plural(num_video_frames, 'frame')}, data.validation_fraction "
                        f"{validation_fraction}, data.test_fraction {test_fraction})")
    return parts


class Video:
    """A video as training and evaluation use it: its frames split in time into parts, served as windows, with
    what the baselines need (the mean and median training frame, the player's box).

    frames: uint8 (N, H, W), kept as one tensor (moved with ``to``); parts: {"train", "val", "test": range} of
    frame indices (split_video); num_frames: the frames of a window unless ``windows`` is told otherwise;
    meta: the video's /meta datasets (load_metadata; {} without). ``player_box`` is where the camera keeps the
    player in a video of the built-in renderer, else None.
    """

    def __init__(self, frames, parts, num_frames, meta=None):
        self.frames, self.parts, self.num_frames = as_tensor(frames), parts, num_frames
        self.meta = meta if meta is not None else {}
        self.player_box = player_box(self.meta)

    @classmethod
    def of_config(cls, cfg, frames, meta=None, num_frames=None):
        """The frames split with the config's data fractions, windows of its model.num_frames unless given."""
        num_frames = cfg.model.num_frames if num_frames is None else num_frames
        parts = split_video(len(frames), cfg.data.validation_fraction, cfg.data.test_fraction, num_frames)
        return cls(frames, parts, num_frames, meta)

    def __len__(self):
        return len(self.frames)

    @property
    def device(self):
        return self.frames.device

    def to(self, device):
        """The same video with its frames on ``device`` (itself when they are there)."""
        if self.frames.device == torch.device(device):
            return self
        return Video(self.frames.to(device), self.parts, self.num_frames, self.meta)

    def windows(self, part, num_frames=None):
        """FrameWindows predicting the frames of one part ('train', 'val' or 'test'), sharing the video's frames."""
        num_frames = self.num_frames if num_frames is None else num_frames
        targets = self.parts[part]
        if len(targets) == 0:
            key = "data.validation_fraction" if part == "val" else "data.test_fraction"
            raise DataError(f"the {PART_NAMES[part]} part of the video is empty ({key} is 0)")
        first = max(targets.start, num_frames - 1)  # the first num_frames - 1 frames have no full window
        return FrameWindows(self.frames, num_frames, self.device, targets=range(first, targets.stop))

    @property
    def train_frames(self):
        """The frames of the training part, uint8 (N_train, H, W)."""
        return self.frames[:len(self.parts["train"])]

    @cached_property
    def mean_frame(self):
        """The mean training frame (H, W) in [0, 1], on the video's device."""
        return mean_frame_baseline(self.train_frames)

    @cached_property
    def median_frame(self):
        """The per-pixel median training frame (H, W) in [0, 1], on the video's device."""
        return median_frame_baseline(self.train_frames)


def open_video(cfg, scratch=None, log=print, num_frames=None):
    """The config's video (load_video) with its /meta, split by the config -> Video."""
    frames = load_video(cfg, scratch, log)
    return Video.of_config(cfg, frames, load_metadata(resolve_data_path(cfg.data.hdf5_file, scratch)), num_frames)


def evaluation_part(cfg):
    """Where a finished run is scored: the test part, or the validation part for configs without one."""
    return "test" if cfg.data.test_fraction > 0 else "val"


def as_tensor(frames):
    """uint8 frames (N, H, W) as a tensor: a tensor as it is, an array without a copy where it can be."""
    if isinstance(frames, torch.Tensor):
        return frames
    return torch.as_tensor(np.ascontiguousarray(frames), dtype=torch.uint8)


class FrameWindows:
    """The windows of num_frames consecutive frames of a video whose last (predicted) frame is in targets.

    frames: uint8 (N, H, W) of the whole video, kept as one tensor on ``device`` (shared, not copied,
    when it already is one there); window i is frames[targets[i] - T + 1 : targets[i] + 1].
    ``first_frame`` is the video index of window 0's first frame, ``targets`` those of the predicted
    frames (default: every frame that has num_frames - 1 frames before it).
    """

    def __init__(self, frames, num_frames, device="cpu", targets=None):
        self.frames = as_tensor(frames).to(device)
        self.num_frames = num_frames
        self.targets = targets if targets is not None else range(num_frames - 1, len(self.frames))
        if self.targets.start < num_frames - 1 or self.targets.stop > len(self.frames):
            raise ValueError(f"targets {self.targets} do not fit a video of {len(self.frames)} frames "
                             f"with windows of {num_frames}")
        self.first_frame = self.targets.start - num_frames + 1
        self.offsets = torch.arange(self.first_frame, self.first_frame + num_frames, device=self.frames.device)

    def __len__(self):
        return len(self.targets)

    @property
    def device(self):
        return self.frames.device

    def batch(self, starts):
        """starts (B,) long window indices -> float frames (B, T, H, W) in [0, 1]."""
        index = starts.to(self.device)[:, None] + self.offsets  # (B, T)
        return self.frames[index].float() / 255


class WindowSampler:
    """Shuffled batches of window indices, epoch after epoch, for one of world_size processes.

    Every epoch draws a fresh permutation from a seeded torch.Generator; each process takes every
    world_size-th index of it (rank, rank + world_size, ...) and cuts that into full batches.
    ``state_dict`` holds the generator state at the start of the current epoch plus the position in
    it, so a resumed run sees exactly the batches an uninterrupted one would have seen.
    """

    def __init__(self, num_windows, batch_size, seed, rank=0, world_size=1):
        self.num_windows = num_windows
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = num_windows // world_size // batch_size
        if self.batches_per_epoch == 0:
            raise DataError(f"the training part of the video has {plural(num_windows, 'window')}, fewer than one "
                            f"batch of model.batch_size {batch_size}"
                            + (f" per process ({world_size} processes)" if world_size > 1 else ""))
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.position = 0, 0
        self._draw_epoch()

    def _draw_epoch(self):
        self._epoch_start_state = self.generator.get_state()
        order = torch.randperm(self.num_windows, generator=self.generator)
        mine = order[self.rank: self.batches_per_epoch * self.batch_size * self.world_size: self.world_size]
        self._batches = mine.view(self.batches_per_epoch, self.batch_size)  # (batches, B)

    def next_batch(self):
        """-> window indices (B,) long of the next batch."""
        if self.position == self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
            self._draw_epoch()
        batch = self._batches[self.position]
        self.position += 1
        return batch

    @property
    def progress(self):
        """Epochs done as a float (3.25 = a quarter into the fourth epoch)."""
        return self.epoch + self.position / self.batches_per_epoch

    def state_dict(self):
        return {"epoch": self.epoch, "position": self.position, "generator": self._epoch_start_state}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
        self._draw_epoch()
        self.epoch, self.position = state["epoch"], state["position"]


def evaluation_indices(num_windows, batch_size, max_batches=None):
    """Window indices for an evaluation: all, or max_batches * batch_size spread evenly over the part."""
    if max_batches is None or max_batches * batch_size >= num_windows:
        return torch.arange(num_windows)
    return torch.linspace(0, num_windows - 1, max_batches * batch_size).round().long()


def _open(path):
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise DataError(f"{path} is not a readable HDF5 file ({_first_line(error)}){_render_hint(path)}") from None


@contextmanager
def _read_errors(path):
    """An HDF5 file whose header opens but whose data cannot be read (damaged, cut short) -> one DataError line."""
    try:
        yield
    except OSError as error:
        raise DataError(f"{path} cannot be read, it may be damaged or cut short ({_first_line(error)})"
                        f"{_render_hint(path)}") from None


def _render_hint(path):
    """For the built-in video's default file: how to get it back."""
    if Path(path).resolve() != Path(DEFAULT_HDF5_FILE).resolve():
        return ""
    return "; delete it and the next run renders the built-in video into it again"


def _decode_rows(path, rows, num_workers):
    """Encoded images (N rows of uint8 bytes) -> uint8 (N, H, W); checks that all sizes agree."""
    def decode(i):
        try:
            row = rows[i]
            encoded = row if isinstance(row, bytes) else row.tobytes()
            with Image.open(BytesIO(encoded)) as image:
                return np.asarray(image.convert("L"))
        except Exception as error:  # Pillow raises many types for damaged data
            raise DataError(f"{path}: frame {i} of /rgb_images cannot be decoded ({_first_line(error)})") from None

    if num_workers > 0:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            frames = list(pool.map(decode, range(len(rows))))
    else:
        frames = [decode(i) for i in range(len(rows))]
    for i, frame in enumerate(frames):
        if frame.shape != frames[0].shape:
            raise DataError(f"{path}: frame {i} is {frame.shape[0]}x{frame.shape[1]} (HxW) but frame 0 is "
                            f"{frames[0].shape[0]}x{frames[0].shape[1]}; all frames must have one size")
    return np.stack(frames)


def _to_gray(frames):
    """uint8 (N, H, W) or (N, H, W, 3) -> uint8 (N, H, W), exactly as Pillow's convert("L")."""
    if frames.ndim == 3:
        return frames
    luma = frames.astype(np.uint32) @ _LUMA_WEIGHTS  # (N, H, W)
    return ((luma + 0x8000) >> 16).astype(np.uint8)


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
