"""How much of a video's p x p patches a C-dimensional linear code can hold: the frame output's ceiling.

    python -m scripts.patch_code gameplay-data.hdf5 --out results/vit/patch_code.json
    python -m scripts.patch_code gameplay-data.hdf5 --patch-size 8 --channels 32 64

The sheet's output (model.output "frame") writes every patch of the predicted frame through a linear map
of one C-dimensional token (ReversePatchEmbedding: Linear(C, p*p)), so its patches lie in a C-dimensional
affine subspace. The best such subspace in the mean-squared sense is spanned by the top C principal
components of the patches; this script fits them on the training part (config/vit_cpu.json's split) and
reports, for each C, the share of the patch variance they hold and the PSNR of the training part's frames
rebuilt from them: what even a perfect predictor with that output could reach on those frames.
"""
import json
import sys
from pathlib import Path

import numpy as np

from model.cli import CliParser, fail, positive_int
from model.config import load_config
from model.data import DataError, Video, load_frames

CONFIG = "config/vit_cpu.json"


def patches(frames, patch_size):
    """uint8 (N, H, W) -> float64 (N * H/p * W/p, p*p) in [0, 1]."""
    n, height, width = frames.shape
    if height % patch_size or width % patch_size:
        raise DataError(f"frames of {height}x{width} do not divide into {patch_size}x{patch_size} patches")
    x = frames.astype(np.float64) / 255
    x = x.reshape(n, height // patch_size, patch_size, width // patch_size, patch_size)
    return x.transpose(0, 1, 3, 2, 4).reshape(-1, patch_size * patch_size)


def code_ceiling(patch_rows, channels):
    """Principal components of the patches -> per C: variance share and PSNR of the rebuilt patches."""
    mean = patch_rows.mean(axis=0)
    centred = patch_rows - mean
    values, vectors = np.linalg.eigh(centred.T @ centred / len(centred))
    values, vectors = values[::-1], vectors[:, ::-1]
    result = {}
    for c in channels:
        basis = vectors[:, :c]
        mse = float(((centred - centred @ basis @ basis.T) ** 2).mean())
        result[str(c)] = {"variance_share": float(values[:c].sum() / values.sum()),
                          "psnr": float(10 * np.log10(1 / mse)) if mse > 0 else float("inf")}
    return result


def main(argv=None):
    parser = CliParser(description=__doc__.split("\n")[0])
    parser.add_argument("video", help="HDF5 video (e.g. gameplay-data.hdf5)")
    parser.add_argument("--patch-size", type=positive_int, default=16)
    parser.add_argument("--channels", type=positive_int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--out", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    try:
        frames = load_frames(args.video)
        train = Video.of_config(load_config(CONFIG), frames).train_frames.numpy()
        rows = patches(train, args.patch_size)
    except (OSError, DataError) as error:
        return fail(f"{args.video}: {error}", 1)
    if max(args.channels) > rows.shape[1]:
        return fail(f"--channels {max(args.channels)} exceeds the {rows.shape[1]} pixels of a patch", 2)
    ceiling = code_ceiling(rows, args.channels)
    result = {"video": args.video, "frames": len(train), "patch_size": args.patch_size, "channels": ceiling}
    for c, entry in ceiling.items():
        print(f"C = {c:>4}: {100 * entry['variance_share']:.1f}% of the patch variance, "
              f"rebuilt frames {entry['psnr']:.2f} dB")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
