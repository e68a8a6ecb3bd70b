"""Render the built-in gameplay video into the course's HDF5 format, and optionally a preview GIF.

    python -m model.scripts.make_gameplay --out ./gameplay-data.hdf5 --frames 6000 --seed 0 \\
        --gif docs/figures/gameplay_preview.gif --gif-start 900 --gif-frames 450

The defaults give the video that training creates by itself when ./gameplay-data.hdf5 is missing;
the command above also writes the preview in the docs (a walk into a house, a chat and out again).
The layout of the file (frames and per-frame metadata) is described in model/video/gameplay.py.
"""
import sys
import time
from pathlib import Path

from model.video import gameplay
from model.cli import CliParser, fail, non_negative_int, positive_int
from model.text import plural
from model.video.hdf5 import VideoIOError, write_gif


def parse_args(argv=None):
    parser = CliParser(prog="python -m model.scripts.make_gameplay", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="./gameplay-data.hdf5", help="HDF5 file to write (default: %(default)s)")
    parser.add_argument("--frames", type=positive_int, default=gameplay.DEFAULT_NUM_FRAMES,
                        help="number of frames (default: %(default)s)")
    parser.add_argument("--seed", type=non_negative_int, default=gameplay.DEFAULT_SEED,
                        help="seed of the town and of every decision (default: %(default)s)")
    parser.add_argument("--gif", help="also write a preview GIF (2x upscaled) to this path")
    parser.add_argument("--gif-start", type=non_negative_int, default=0, help="first frame of the preview")
    parser.add_argument("--gif-frames", type=positive_int, default=300,
                        help="frames in the preview (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.gif and args.gif_start >= args.frames:
        parser.error(f"--gif-start {args.gif_start} is past the last frame (--frames {args.frames})")
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        gameplay.write_gameplay_hdf5(args.out, args.frames, args.seed)
    except (OSError, VideoIOError) as error:
        return fail(f"cannot write {args.out}: {error}", 1)
    seconds = time.perf_counter() - start
    megabytes = Path(args.out).stat().st_size / 2**20
    print(f"wrote {args.out}: {plural(args.frames, 'frame')} of {gameplay.SCREEN_HEIGHT}x{gameplay.SCREEN_WIDTH}, "
          f"seed {args.seed}, {megabytes:.1f} MiB in {seconds:.1f} s")
    if args.gif:
        # The preview renders the game again up to its last frame: cheaper than decoding the PNGs.
        stop = min(args.gif_start + args.gif_frames, args.frames)
        frames, _ = gameplay.render_gameplay(stop, args.seed)
        try:
            write_gif(args.gif, frames[args.gif_start:stop], fps=gameplay.FPS, scale=2)
        except (OSError, VideoIOError) as error:
            return fail(f"cannot write {args.gif}: {error}", 1)
        print(f"wrote {args.gif}: frames {args.gif_start}..{stop - 1}, "
              f"{Path(args.gif).stat().st_size / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
