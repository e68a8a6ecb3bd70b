"""Closed-loop prediction with a trained predictive ViT, as in the course template.

    python -m model.scripts.predict -cfg config/vit.json --load out/vit.device0/quicksave.ckpt

Each sample starts from num_frames - 1 real frames of the video (from the held-out part by default),
predicts the next frame, quantises it to 8 bit, appends it to the window and drops the oldest frame,
for --steps steps: after the first step the model sees its own predictions. Written to --output:

    prediction_{sample:05d}_{i:05d}_frame_{frame:05d}.png   step i of a sample, 4x upscaled (nearest);
                                                            frame is the true frame's index in the video
    rollout_{sample:05d}.gif                                per step: truth | prediction | absolute error
    metrics.json                                            per step L1, PSNR, SSIM of the rollout and of
                                                            the copy-last-frame baseline (the last real
                                                            frame held still)
"""
import json
import sys
from pathlib import Path

import torch
from PIL import Image

from model.checkpoint import CheckpointError
from model.cli import CliParser, describe_os_error, fail, pick_device
from model.config import ConfigError, load_config
from model.data import PART_NAMES, PARTS, DataError, load_video, split_video
from model.engine import load_model
from model.metrics import frame_metrics
from model.rollout import closed_loop, per_step_means

UPSCALE = 4
GIF_FRAME_MS = 250


def parse_args(argv=None):
    parser = CliParser(prog="python -m model.scripts.predict",
                       description="Closed-loop rollout of a trained predictive ViT.")
    parser.add_argument("-cfg", "--cfg", required=True, metavar="CONFIG", help="config file of the model")
    parser.add_argument("-load", "--load", required=True, metavar="CKPT", help="checkpoint to predict with")
    parser.add_argument("-output", "--output", default="samples", metavar="DIR", help="output folder")
    parser.add_argument("-num_samples", "--num_samples", "--num-samples", type=int, default=1, metavar="N",
                        dest="num_samples", help="rollouts, each from a random start")
    parser.add_argument("-device", "--device", type=int, default=0, metavar="N", help="CUDA device index")
    parser.add_argument("-seed", "--seed", type=int, default=1234, help="seed of the start frames")
    parser.add_argument("-scratch", "--scratch", metavar="DIR",
                        help="folder holding the data file: a leading './' of data.hdf5_file becomes DIR/")
    parser.add_argument("-steps", "--steps", type=int, default=10, metavar="N",
                        help="frames to predict per sample")
    parser.add_argument("-split", "--split", choices=PARTS, default="val",
                        help="part of the video whose frames are predicted")
    args = parser.parse_args(argv)
    for name in ("num_samples", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    return args


def main(argv=None):
    """Run the command line; returns the exit code."""
    args = parse_args(argv)
    try:
        return run(args)
    except ConfigError as error:
        return fail(error, 2)
    except (DataError, CheckpointError) as error:
        return fail(error, 1)
    except OSError as error:
        return fail(describe_os_error(error), 1)


def run(args):
    cfg = load_config(args.cfg)
    num_frames = cfg.model.num_frames
    if num_frames < 2:
        raise ConfigError("config key 'model.num_frames': predicting frames needs at least 2 (1 is masked "
                          "reconstruction)")
    device = pick_device(args.device)
    model, payload = load_model(args.load, cfg.model, device)
    frames = load_video(cfg, args.scratch)
    parts = split_video(len(frames), cfg.data.validation_fraction, cfg.data.test_fraction, num_frames)
    first_predicted = pick_first_predicted(parts[args.split], num_frames - 1, args.steps, args.num_samples,
                                           args.seed, args.split)
    starts = first_predicted - (num_frames - 1)  # first context frames (they may lie in the part before)

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    truth, predictions, held = closed_loop(model, torch.as_tensor(frames).to(device), starts, args.steps)

    samples = []
    for s, start in enumerate(starts.tolist()):
        first = start + num_frames - 1  # index in the whole video
        for i in range(args.steps):
            save_png(output / f"prediction_{s:05d}_{i:05d}_frame_{first + i:05d}.png", predictions[s, i])
        save_gif(output / f"rollout_{s:05d}.gif", truth[s], predictions[s])
        samples.append({"sample": s, "first_context_frame": start, "first_predicted_frame": first,
                        "rollout": step_metrics(predictions[s], truth[s]),
                        "copy_last": step_metrics(held[s], truth[s])})
    summary = {"checkpoint": str(args.load), "checkpoint_step": payload["step"], "config": str(args.cfg),
               "split": args.split, "steps": args.steps, "num_samples": args.num_samples,
               "mean": {"rollout": per_step_means(predictions, truth), "copy_last": per_step_means(held, truth)},
               "samples": samples}
    (output / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print_table(summary["mean"])
    print(f"wrote {args.num_samples * args.steps} PNGs, {args.num_samples} GIFs and metrics.json to {output}")
    return 0


def pick_first_predicted(part, context_frames, steps, num_samples, seed, split_name):
    """The first predicted frame (video index) of each sample (num_samples,), fixed by the seed alone.

    A seeded random order of the part's frames is walked and every frame from which ``steps`` predicted
    frames stay inside the part is taken: more samples add rollouts without moving the first ones, and
    fewer steps keep the same starts.
    """
    first_possible = max(part.start, context_frames)  # a window needs context_frames frames before it
    candidates = part.stop - steps - first_possible + 1
    if candidates < num_samples:
        raise DataError(f"the {PART_NAMES[split_name]} part of the video has {len(part)} frames; {num_samples} "
                        f"rollouts of {steps} steps need at least {steps + num_samples - 1} "
                        f"(use fewer --steps or --num_samples, or another --split)")
    order = torch.randperm(len(part), generator=torch.Generator().manual_seed(seed)) + part.start
    return order[(order >= first_possible) & (order < first_possible + candidates)][:num_samples]


def step_metrics(prediction, truth):
    """prediction, truth (steps, H, W) -> {"l1": [...], "psnr": [...], "ssim": [...]} per step."""
    metrics = frame_metrics(prediction, truth)
    return {key: metrics[key].tolist() for key in ("l1", "psnr", "ssim")}


def to_image(frame, scale=UPSCALE):
    """float frame (H, W) in [0, 1] -> grayscale PIL image, upscaled with nearest neighbour."""
    pixels = (frame.clamp(0, 1) * 255).round().byte().cpu().numpy()
    image = Image.fromarray(pixels)  # uint8 (H, W): mode "L"
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def save_png(path, frame):
    to_image(frame).save(path)


def save_gif(path, truth, prediction):
    """One GIF frame per step: truth | prediction | |error|, with mid-grey gaps in between."""
    gap = torch.full((truth.shape[1], 2), 0.5, device=truth.device)  # (H, 2)
    panels = [to_image(torch.cat([t, gap, p, gap, (p - t).abs()], dim=1))
              for t, p in zip(truth, prediction)]
    panels[0].save(path, save_all=True, append_images=panels[1:], duration=GIF_FRAME_MS, loop=0)


def print_table(mean):
    print("step   L1      PSNR    SSIM   | copy-last L1  PSNR    SSIM")
    rollout_, held = mean["rollout"], mean["copy_last"]
    for i in range(len(rollout_["l1"])):
        print(f"{i + 1:4d}   {rollout_['l1'][i]:.4f}  {rollout_['psnr'][i]:6.2f}  {rollout_['ssim'][i]:.4f} | "
              f"{held['l1'][i]:.4f}        {held['psnr'][i]:6.2f}  {held['ssim'][i]:.4f}")


if __name__ == "__main__":
    sys.exit(main())
