"""How much of the next frame's change lies near the last change: the choice of model.change_radius.

    python -m scripts.change_support gameplay-data.hdf5 out/data/pong.hdf5 --out results/vit/change_support

For every window of three frames (a, b, c) of the training part (data.validation_fraction 0.1), the
support of radius k is the set of pixels within k (a (2k+1)^2 square) of a pixel that changed by at
least one gray level from a to b: the pixels where a model with model.change_radius = k may predict
anything but the copy of b. Printed and written (JSON and a Markdown table, keyed by the file's name
without its suffix) for each file and k:

  area           share of the pixels in the support
  copy error in  share of the copy-last-frame L1 error |c - b| that falls inside the support: the part
                 of the error a gated model can still reduce; the rest it keeps as the copy does
"""
import sys
from pathlib import Path

import torch

from model.cli import CliParser, fail
from model.data import DataError, load_frames, split_video
from model.files import write_json_atomically, write_text_atomically
from model.vit import change_support

RADII = (0, 2, 4, 6, 8, 12)
# The split of the short study the table was made for: the last 10 % held out, no test part.
VALIDATION_FRACTION, TEST_FRACTION = 0.1, 0.0


def support_shares(frames, radii=RADII, chunk=256):
    """uint8 frames (N, H, W) -> {k: (area share, share of the copy-last L1 error inside)}."""
    area = {k: 0.0 for k in radii}
    inside = {k: 0.0 for k in radii}
    total_error, total_pixels = 0.0, 0
    for start in range(0, len(frames) - 2, chunk):
        part = torch.as_tensor(frames[start: start + chunk + 2]).float() / 255
        a, b, c = part[:-2], part[1:-1], part[2:]
        error = (c - b).abs()
        total_error += error.sum().item()
        total_pixels += error.numel()
        for k in radii:
            support = change_support(a, b, k)
            area[k] += support.sum().item()
            inside[k] += (error * support).sum().item()
    return {k: (area[k] / total_pixels, inside[k] / total_error) for k in radii}


def markdown_table(results):
    """{video name: {k: {area, copy_error_inside}}} -> one row per radius, two columns per video."""
    names = list(results)
    header = "| radius k | " + " | ".join(f"{name}: area | {name}: copy error in" for name in names) + " |"
    rows = [header, "|---|" + "---|---|" * len(names)]
    for k in next(iter(results.values())):
        cells = [f"{shares[k]['area']:.1%} | {shares[k]['copy_error_inside']:.1%}" for shares in results.values()]
        rows.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv=None):
    parser = CliParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", nargs="+", help="HDF5 videos in the course format")
    parser.add_argument("--out", help="file stem of the .json and .md results (default: print only)")
    args = parser.parse_args(argv)
    results = {}
    try:
        for video in args.videos:
            frames = load_frames(video)
            train = frames[:len(split_video(len(frames), VALIDATION_FRACTION, TEST_FRACTION, 3)["train"])]
            shares = support_shares(train)
            results[Path(video).stem] = {str(k): {"area": area, "copy_error_inside": inside}
                                         for k, (area, inside) in shares.items()}
    except DataError as error:
        return fail(error, 1)
    table = markdown_table(results)
    print(table)
    if args.out:
        out = Path(args.out)
        write_json_atomically(out.with_suffix(".json"), results)
        write_text_atomically(out.with_suffix(".md"), table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
