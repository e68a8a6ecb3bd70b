"""Bring your own footage: convert a video file, a folder of images or Atari gameplay to the course format.

    python -m model.scripts.import_video video clip.mp4 --out my-video.hdf5
    python -m model.scripts.import_video images frames/ --out my-video.hdf5 --resize pad
    python -m model.scripts.import_video atari --game pong --frames 6000 --seed 0 --out pong.hdf5

Every frame is fitted to --height x --width (default 144x160, the Game Boy screen the configs expect):
``crop`` (the default) cuts the middle of the frame to the target aspect ratio and then scales it,
``stretch`` (the default for Atari, whose games put the player at the screen's edge) scales it
without keeping the aspect ratio, ``pad`` scales it to fit and fills the rest with black.
Frames are stored as RGB PNGs in /rgb_images (the ViT's loader converts them to grayscale), with
per-frame metadata in /meta (the source frame index; for Atari also action, reward and episode).
PyAV (video files) and ale-py (Atari) are imported only by the subcommand that needs them.
"""
import argparse
import difflib
import re
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from model.cli import CliParser, fail, non_negative_int, positive_int
from model.text import plural
from model.video.hdf5 import VideoIOError, VideoWriter

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
RESAMPLING = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
              "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
STICKY_REPEAT = 0.8  # sticky policy: chance of keeping the previous action at each step


def fit_frame(image, height, width, resize="crop", resample="lanczos"):
    """PIL image of any size and mode -> uint8 RGB (height, width, 3), by crop, stretch or pad."""
    image = image.convert("RGB")
    filter_ = RESAMPLING[resample]
    if resize == "crop":
        scale = max(width / image.width, height / image.height)
        crop_w, crop_h = round(width / scale), round(height / scale)  # the target aspect, in source pixels
        left, top = (image.width - crop_w) // 2, (image.height - crop_h) // 2
        image = image.crop((left, top, left + crop_w, top + crop_h))
    if resize in ("crop", "stretch"):
        if image.size != (width, height):
            image = image.resize((width, height), filter_)
        return np.asarray(image)
    scale = min(width / image.width, height / image.height)
    inner = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), filter_)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(inner, ((width - inner.width) // 2, (height - inner.height) // 2))
    return np.asarray(canvas)


def video_frames(path):
    """Open a video file (mp4, avi, webm, gif, ... anything FFmpeg reads) -> iterator of PIL images."""
    try:
        import av
    except ImportError:
        raise VideoIOError("reading video files needs PyAV: pip install av") from None
    path = Path(path)
    if not path.is_file():
        raise VideoIOError(f"no such video file: {path}")

    def decode():
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise VideoIOError(f"{path} has no video stream")
                for frame in container.decode(video=0):
                    yield frame.to_image()
        except av.error.FFmpegError as error:
            raise VideoIOError(f"cannot decode {path}: {error}") from None

    return decode()


def _natural_key(path):
    """Sort key: file names in order, numbers compared by value (frame_2 before frame_10)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def image_files(folder):
    """Image files in folder, sorted by name with numbers compared by value -> list of paths."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoIOError(f"no such folder: {folder}")
    files = sorted((path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise VideoIOError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return files


def folder_frames(folder):
    """-> iterator of PIL images, one per image file of the folder, in name order."""
    files = image_files(folder)

    def read():
        for path in files:
            try:
                with Image.open(path) as image:
                    image.load()
                    yield image
            except (UnidentifiedImageError, OSError) as error:
                raise VideoIOError(f"cannot read image {path}: {error}") from None

    return read()


def atari_rom(game):
    """Path of the ROM that ships with ale-py for game (e.g. 'pong', 'ms_pacman')."""
    try:
        from ale_py import roms
    except ImportError:
        raise VideoIOError("recording Atari games needs ale-py: pip install ale-py") from None
    name = game.strip().lower().replace("-", "_")
    known = roms.get_all_rom_ids()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known games: {', '.join(known)}"
        raise VideoIOError(f"unknown Atari game {game!r}{hint}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return roms.get_rom_path(name)


def atari_frames(game, num_frames, seed, policy="sticky", frameskip=2, meta=None):
    """Play game with random actions -> iterator of num_frames RGB screens (210, 160, 3) uint8.

    random: a new uniformly drawn action every step; sticky: the previous action is kept with
    probability STICKY_REPEAT, so moves last a while as a person's would. Each step repeats its
    action for ``frameskip`` emulator frames and records the screen after them. A lost game is
    reset and play goes on. ``meta`` (a dict) receives lists: action, reward, episode.
    """
    rom = atari_rom(game)
    from ale_py import ALEInterface, LoggerMode

    ALEInterface.setLoggerMode(LoggerMode.Error)
    ale = ALEInterface()
    ale.setInt("random_seed", seed % 2**31)  # the emulator takes a 32-bit seed
    ale.setFloat("repeat_action_probability", 0.0)  # the policy decides about repeats, reproducibly
    ale.loadROM(str(rom))
    actions = ale.getMinimalActionSet()
    rng = np.random.default_rng(seed)
    meta = {} if meta is None else meta
    for name in ("action", "reward", "episode"):
        meta[name] = []

    def play():
        action, episode = actions[0], 0
        for _ in range(num_frames):
            if policy == "random" or rng.random() >= STICKY_REPEAT:
                action = actions[int(rng.integers(len(actions)))]
            reward = sum(ale.act(action) for _ in range(frameskip))
            meta["action"].append(int(action.value))
            meta["reward"].append(reward)
            meta["episode"].append(episode)
            yield ale.getScreenRGB()
            if ale.game_over():
                ale.reset_game()
                episode += 1

    return play()


def convert(frames, out, height, width, resize, resample, max_frames=None, every=1, attrs=None, meta=None):
    """Fit every ``every``-th frame of an iterator (PIL images or uint8 arrays) and write the course format.

    meta: dict of per-source-frame lists (filled while the iterator runs), subsampled like the frames.
    -> number of frames written.
    """
    kept = []
    with VideoWriter(out, attrs=attrs) as writer:
        for index, frame in enumerate(frames):
            if max_frames is not None and writer.num_frames == max_frames:
                break
            if index % every:
                continue
            image = frame if isinstance(frame, Image.Image) else Image.fromarray(frame)
            writer.append(fit_frame(image, height, width, resize, resample))
            kept.append(index)
        if writer.num_frames == 0:
            raise VideoIOError("the input holds no frames")
        writer.meta["source_index"] = np.array(kept, dtype=np.int64)
        for name, values in (meta or {}).items():
            writer.meta[name] = np.asarray(values)[kept]
    return writer.num_frames


def parse_args(argv=None):
    parser = CliParser(prog="python -m model.scripts.import_video", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", required=True, help="HDF5 file to write")
    common.add_argument("--height", type=positive_int, default=144, help="frame height (default: %(default)s)")
    common.add_argument("--width", type=positive_int, default=160, help="frame width (default: %(default)s)")
    common.add_argument("--resize", choices=("crop", "stretch", "pad"),
                        help="how frames of another aspect ratio fit (default: crop; atari: stretch, "
                             "since a centre crop would cut off the paddle or ship at the screen's edge)")
    common.add_argument("--resample", choices=tuple(RESAMPLING), default="lanczos",
                        help="scaling filter; nearest keeps pixel art crisp (default: %(default)s)")
    common.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    common.add_argument("--every", type=positive_int, default=1, help="keep every n-th frame (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    video = commands.add_parser("video", parents=[common], help="a video file (mp4, avi, webm, gif; needs PyAV)")
    video.add_argument("input", help="video file")
    images = commands.add_parser("images", parents=[common], help="a folder of images, in file name order")
    images.add_argument("input", help="folder of images")
    atari = commands.add_parser("atari", parents=[common], help="Atari gameplay with random actions (needs ale-py)")
    atari.add_argument("--game", required=True, help="ROM name as in ale-py, e.g. pong, breakout, ms_pacman")
    atari.add_argument("--frames", type=positive_int, default=6000, help="frames to record (default: %(default)s)")
    atari.add_argument("--seed", type=non_negative_int, default=0,
                       help="seed of emulator and policy (default: %(default)s)")
    atari.add_argument("--policy", choices=("random", "sticky"), default="sticky",
                       help=f"random: new action every step; sticky: keep it with probability {STICKY_REPEAT} "
                            "(default: %(default)s)")
    atari.add_argument("--frameskip", type=positive_int, default=2,
                       help="emulator frames per recorded frame (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.resize is None:
        args.resize = "stretch" if args.command == "atari" else "crop"
    return args


def main(argv=None):
    args = parse_args(argv)
    attrs = {"generator": f"model.scripts.import_video {args.command}", "resize": args.resize}
    meta = {}
    try:
        if args.command == "video":
            frames = video_frames(args.input)
            attrs["source"] = str(args.input)
        elif args.command == "images":
            frames = folder_frames(args.input)
            attrs["source"] = str(args.input)
        else:
            frames = atari_frames(args.game, args.frames, args.seed, args.policy, args.frameskip, meta)
            attrs.update(source=args.game, seed=args.seed, policy=args.policy, frameskip=args.frameskip)
        count = convert(frames, args.out, args.height, args.width, args.resize, args.resample,
                        args.max_frames, args.every, attrs, meta)
    except VideoIOError as error:
        return fail(error, 1)
    except OSError as error:
        return fail(f"cannot write {args.out}: {error}", 1)
    print(f"wrote {args.out}: {plural(count, 'frame')} of {args.height}x{args.width}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
