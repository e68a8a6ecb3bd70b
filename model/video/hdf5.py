"""Write and read videos in the course's HDF5 format, and write preview GIFs.

The course keeps a video in one HDF5 file:

    /rgb_images      (N,) vlen uint8   row i = the PNG bytes of frame i, in temporal order
                                       (8-bit grayscale or RGB; the ViT's loader converts to grayscale)
    /meta/<field>    (N,)              optional, one value per frame (what happened in frame i)
    file attributes                    optional, where the frames came from (generator, seed, source ...)

``VideoWriter`` is the one writer behind the built-in gameplay video and every importer: frames are
PNG-encoded as they arrive and appended to a temporary file next to the target, which replaces the
target only when the whole video has been written, so an interrupted run never leaves a half file
under the configured name.
"""
import os
import tempfile
from io import BytesIO
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

# Frames are appended to /rgb_images in batches of this many rows (also the HDF5 chunk length).
_BATCH = 256


class VideoIOError(Exception):
    """A video cannot be written or read (bad frames, missing file); the message is one line."""


def encode_png(frame):
    """uint8 frame (H, W) grayscale or (H, W, 3) RGB -> PNG bytes."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)):
        raise VideoIOError(f"a frame must be uint8 of shape (H, W) or (H, W, 3), got {frame.dtype} {frame.shape}")
    buffer = BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data, grayscale=True):
    """Encoded image bytes -> uint8 (H, W) (grayscale, Pillow's convert("L")) or (H, W, 3) RGB."""
    with Image.open(BytesIO(bytes(data))) as image:
        return np.asarray(image.convert("L" if grayscale else "RGB"))


class VideoWriter:
    """Collect frames and write them atomically as a course-format HDF5 file.

        with VideoWriter("video.hdf5", attrs={"generator": "..."}) as writer:
            for frame in frames:            # uint8 (H, W) or (H, W, 3), all of one size
                writer.append(frame)
            writer.meta["reward"] = rewards  # optional, length = number of frames

    The file appears under its name when the ``with`` block ends without an exception; on an
    exception the temporary file is removed and the target is left as it was.
    """

    def __init__(self, path, attrs=None):
        self.path = Path(path)
        self.attrs = dict(attrs or {})
        self.meta = {}
        self.num_frames = 0
        self.frame_shape = None
        self._pending = []
        self._file = None
        self._temp_path = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(handle)
        self._temp_path = Path(name)
        umask = os.umask(0)  # mkstemp makes the file private; give it the permissions of a plain open()
        os.umask(umask)
        try:
            os.chmod(self._temp_path, 0o666 & ~umask)
            self._file = h5py.File(self._temp_path, "w")
        except BaseException:
            self._temp_path.unlink()
            raise
        self._images = self._file.create_dataset("rgb_images", shape=(0,), maxshape=(None,), chunks=(_BATCH,),
                                                 dtype=h5py.vlen_dtype(np.uint8))
        return self

    def append(self, frame):
        """Add the next frame: uint8 (H, W) grayscale or (H, W, 3) RGB, the same size as the first."""
        frame = np.asarray(frame)
        if self.frame_shape is None:
            self.frame_shape = frame.shape
        elif frame.shape != self.frame_shape:
            raise VideoIOError(f"frame {self.num_frames} has shape {frame.shape} but frame 0 has {self.frame_shape}")
        self._pending.append(np.frombuffer(encode_png(frame), dtype=np.uint8))
        self.num_frames += 1
        if len(self._pending) == _BATCH:
            self._flush()

    def _flush(self):
        start = len(self._images)
        self._images.resize((start + len(self._pending),))
        if len({len(row) for row in self._pending}) > 1:
            rows = np.empty(len(self._pending), dtype=object)
            for i, row in enumerate(self._pending):
                rows[i] = row
            self._images[start:] = rows
        else:  # h5py would take equally long rows for one 2-D array and refuse it; write them one by one
            for i, row in enumerate(self._pending):
                self._images[start + i] = row
        self._pending = []

    def _finish(self):
        if self.num_frames == 0:
            raise VideoIOError(f"no frames to write to {self.path}")
        self._flush()
        for name, values in self.meta.items():
            values = np.asarray(values)
            if values.shape != (self.num_frames,):
                raise VideoIOError(f"metadata field {name!r} has shape {values.shape}, expected ({self.num_frames},)")
            self._file.create_dataset(f"meta/{name}", data=values)
        for name, value in self.attrs.items():
            self._file.attrs[name] = value

    def __exit__(self, exc_type, exc, traceback):
        complete = False
        try:
            if exc_type is None:
                self._finish()
                complete = True
        finally:
            self._file.close()
            try:
                if complete:
                    os.replace(self._temp_path, self.path)
            finally:
                self._temp_path.unlink(missing_ok=True)  # gone after a successful replace
        return False


def read_frames(path, start=0, stop=None, grayscale=True):
    """Frames start..stop of /rgb_images -> uint8 (N, H, W) grayscale or (N, H, W, 3) RGB."""
    with _open(path) as file:
        rows = file["rgb_images"][start:stop]
    if len(rows) == 0:
        raise VideoIOError(f"{path} has no frames in {start}:{stop}")
    return np.stack([decode_png(row, grayscale) for row in rows])


def read_meta(path):
    """-> (meta: dict field -> (N,) array, attrs: dict) of a course-format file."""
    with _open(path) as file:
        group = file.get("meta", {})
        meta = {name: dataset[()] for name, dataset in group.items()}
        return meta, dict(file.attrs)


def _open(path):
    path = Path(path)
    if not path.is_file():
        raise VideoIOError(f"no such file: {path}")
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise VideoIOError(f"{path} is not a readable HDF5 file ({error})") from None
    if "rgb_images" not in file:
        file.close()
        raise VideoIOError(f"{path} has no dataset /rgb_images")
    return file


def write_gif(path, frames, fps=30, scale=2):
    """uint8 frames (N, H, W) grayscale -> animated GIF, upscaled ``scale`` times with nearest neighbour."""
    images = [Image.fromarray(np.ascontiguousarray(frame)) for frame in frames]
    if not images:
        raise VideoIOError(f"no frames to write to {path}")
    if scale != 1:
        images = [image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
                  for image in images]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
