"""Closed-loop prediction with a trained predictive ViT, as in the course template.

    python -m model.scripts.predict                      # a fresh clone: the published checkpoint
    python -m model.scripts.predict -cfg config/vit_cpu.json     # your run of that config (best, else quicksave)
    python -m model.scripts.predict -cfg config/vit.json --load out/vit.device0/quicksave.ckpt

Which model (the command says which it used, and the checkpoint's step):
    --load CKPT with -cfg CONFIG, or with the config stored in the checkpoint;
    -cfg CONFIG alone: the best.ckpt (else quicksave.ckpt) of that config's run folder
    OUT_DIR/{model_path}.device{N}/;
    with neither flag: the best.ckpt of config/vit.json's run folder once a local run has been validated,
    else the published results/vit/vit_cpu.ckpt (the sheet's model) with the config stored in it (that of
    config/long/sheet30k.json); an unvalidated local run (a quicksave alone) never replaces it unasked.

Each sample starts from num_frames - 1 real frames of the video (from the held-out part by default),
predicts the next frame, quantises it to 8 bit, appends it to the window and drops the oldest frame,
for --steps steps: after the first step the model sees its own predictions. The start frames are fixed
by --seed alone (see pick_first_predicted), so runs with other --steps or --num_samples can be compared.

Written to --output (default samples/{model_path}/ of the config used); the files an earlier run of
predict wrote there (the four kinds below, nothing else) are replaced, and it says so. Every image is
labelled: the checkpoint and its training step, the sample, the real context frames the rollout starts
from (their indices in the video), and per step truth | prediction | absolute error with the error scale.

    prediction_{sample:05d}_{i:05d}_frame_{frame:05d}.png   step i of a sample, 4x upscaled (nearest);
                                                            frame is the true frame's index in the video
    rollout_{sample:05d}.png                                every step of a sample in one image (2x)
    rollout_{sample:05d}.gif                                the prediction PNGs of a sample, one GIF frame
                                                            per step
    metrics.json                                            per step L1, PSNR, SSIM of the rollout and of
                                                            the copy-last-frame baseline (the last real
                                                            frame held still), per sample and as means;
                                                            the means also for the other baselines that
                                                            roll out (model.baselines), each on its own
                                                            predictions
"""
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from model.baselines import LABELS
from model.checkpoint import CheckpointError, checkpoint_config
from model.cli import CliParser, describe_os_error, fail, pick_device
from model.config import ConfigError, load_config
from model.data import PART_NAMES, PARTS, DataError, open_video
from model.engine import BEST, QUICKSAVE, load_model, run_name
from model.metrics import frame_metrics
from model.rollout import closed_loop, per_step_means, rollout_clips
from model.text import plural

SHEET_CONFIG = "config/vit.json"
PUBLISHED_CHECKPOINT = "results/vit/vit_cpu.ckpt"  # the sheet's model
# The files predict writes, and the only ones it removes from an earlier run.
OUTPUT_FILES = re.compile(r"prediction_\d{5,}_\d{5,}_frame_\d{5,}\.png|rollout_\d{5,}\.(png|gif)|metrics\.json")

UPSCALE = 4  # the template-named PNGs and the GIF
SHEET_UPSCALE = 2  # the labelled rollout PNG, all steps in one image
GAP = 2  # pixels between the panels, before upscaling
GIF_FRAME_MS = 250
# Labels: Pillow's default font, 6 pixels per upscaling step; a label line is 1.5 font sizes high.
FONT_SIZE = 6
BAR_HEIGHT = 4  # of the error scale, pixels per upscaling step


def parse_args(argv=None):
    parser = CliParser(prog="python -m model.scripts.predict",
                       description="Closed-loop rollout of a trained predictive ViT.")
    parser.add_argument("--cfg", "-cfg", metavar="CONFIG",
                        help=f"config file of the model (default: the one stored in --load; without --load "
                             f"{SHEET_CONFIG})")
    parser.add_argument("--load", "-load", metavar="CKPT",
                        help=f"checkpoint to predict with (default with -cfg: best.ckpt, else quicksave.ckpt, of "
                             f"that config's run folder; without -cfg: best.ckpt of {SHEET_CONFIG}'s run folder "
                             f"once a run there has been validated, else the published {PUBLISHED_CHECKPOINT})")
    parser.add_argument("--out-dir", "-out-dir", default="out", metavar="DIR",
                        help="where the run folders are (as for model.main)")
    parser.add_argument("--output", "-output", metavar="DIR",
                        help="output folder (default: samples/{model_path}/ of the config used)")
    parser.add_argument("--num-samples", "--num_samples", "-num_samples", type=int, default=1, metavar="N",
                        dest="num_samples", help="rollouts, each from a random start")
    parser.add_argument("--device", "-device", type=int, default=0, metavar="N",
                        help="CUDA device index, also part of the run folder's name")
    parser.add_argument("--seed", "-seed", type=int, default=1234, help="seed of the start frames")
    parser.add_argument("--scratch", "-scratch", metavar="DIR",
                        help="folder holding the data file: a leading './' of data.hdf5_file becomes DIR/")
    parser.add_argument("--steps", "-steps", type=int, default=10, metavar="N",
                        help="frames to predict per sample")
    parser.add_argument("--split", "-split", choices=PARTS, default="val",
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
    cfg, config_name, checkpoint, choice = choose_model(args.cfg, args.load, args.out_dir, args.device)
    if choice:
        print(choice)
    num_frames = cfg.model.num_frames
    if num_frames < 2:
        raise ConfigError("config key 'model.num_frames': predicting frames needs at least 2 (1 is masked "
                          "reconstruction)")
    device = pick_device(args.device)
    model, payload = load_model(checkpoint, cfg.model, device)
    print(f"{checkpoint}: step {payload['step']}")
    video = open_video(cfg, args.scratch).to(device)
    first_predicted = pick_first_predicted(video.parts[args.split], num_frames - 1, args.steps, args.num_samples,
                                           args.seed, args.split)
    starts = first_predicted - (num_frames - 1)  # first context frames (they may lie in the part before)

    output = Path(args.output) if args.output is not None else Path("samples") / cfg.model_path
    output.mkdir(parents=True, exist_ok=True)
    earlier = earlier_output(output)
    if earlier:
        print(f"{output} holds an earlier prediction: replacing its {plural(len(earlier), 'file')}")
        for path in earlier:
            path.unlink()
    rolled = closed_loop(model, video.frames, starts, args.steps, player_box=video.player_box)
    truth, predictions, held = rolled["truth"], rolled["model"], rolled["copy_last"]
    context, _ = rollout_clips(video.frames, starts, num_frames - 1, args.steps)  # (S, T-1, H, W): the real frames seen

    samples = []
    for s, start in enumerate(starts.tolist()):
        first = start + num_frames - 1  # index in the whole video
        title = f"{checkpoint} (step {payload['step']}): sample {s}, closed loop from frame {first}"
        steps = labelled_steps(title, context[s], truth[s], predictions[s], first, UPSCALE)
        for i, image in enumerate(steps):
            image.save(output / f"prediction_{s:05d}_{i:05d}_frame_{first + i:05d}.png")
        steps[0].save(output / f"rollout_{s:05d}.gif", save_all=True, append_images=steps[1:], duration=GIF_FRAME_MS,
                      loop=0)
        save_rollout_png(output / f"rollout_{s:05d}.png", title, context[s], truth[s], predictions[s], first)
        samples.append({"sample": s, "first_context_frame": start, "first_predicted_frame": first,
                        "rollout": step_metrics(predictions[s], truth[s]),
                        "copy_last": step_metrics(held[s], truth[s])})
    summary = {"checkpoint": str(checkpoint), "checkpoint_step": payload["step"],
               "config": config_name,
               "split": args.split, "steps": args.steps, "num_samples": args.num_samples, "seed": args.seed,
               "mean": {"rollout": per_step_means(predictions, truth),
                        **{name: per_step_means(frames, truth) for name, frames in rolled.items()
                           if name not in ("truth", "model")}},
               "samples": samples}
    (output / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print_table(summary["mean"])
    print(f"wrote {plural(args.num_samples * args.steps, 'prediction PNG')}, "
          f"{plural(args.num_samples, 'labelled rollout PNG')}, {plural(args.num_samples, 'GIF')} and "
          f"metrics.json to {output}")
    return 0


def choose_model(config_path, checkpoint, out_dir="out", device=0, sheet_config=SHEET_CONFIG,
                 published=PUBLISHED_CHECKPOINT):
    """The config and checkpoint to predict with -> (cfg, where the config came from, checkpoint path,
    a line saying which were chosen, or None when both were given). See the module's docstring for the
    order in which they are looked for."""
    if checkpoint is not None:
        if config_path is not None:
            return load_config(config_path), str(config_path), Path(checkpoint), None
        return (checkpoint_config(checkpoint), f"stored in {checkpoint}", Path(checkpoint),
                f"using {checkpoint} and the config stored in it")
    given, config_path = config_path is not None, config_path or sheet_config
    cfg = load_config(config_path)
    run_dir = Path(out_dir) / run_name(cfg, device)
    # -cfg given: that config's run, validated or not; bare: a local run only once it has been validated.
    for name in (BEST, QUICKSAVE) if given else (BEST,):
        if (run_dir / name).is_file():
            return cfg, str(config_path), run_dir / name, f"using {config_path} and {run_dir / name}"
    if given:  # that config's own run, or nothing
        raise CheckpointError(f"no checkpoint in {run_dir} (train with python -m model.main -cfg {config_path} "
                              f"--train, or pass --load CKPT)")
    why = (f"{run_dir} has no validated run yet (only {QUICKSAVE}; pass --load {run_dir / QUICKSAVE} for it)"
           if (run_dir / QUICKSAVE).is_file() else f"no run of {sheet_config} in {run_dir} yet")
    return (checkpoint_config(published), f"stored in {published}", Path(published),
            f"{why}: using the published {published} and the config stored in it")


def pick_first_predicted(part, context_frames, steps, num_samples, seed, split_name):
    """The first predicted frame (video index) of each sample (num_samples,), fixed by the seed alone.

    The starts are a seeded random order of the frames from which a rollout of half the part (or of
    ``steps`` frames, when that is longer) stays inside the part: the same frames for every --steps up
    to half the part, so those runs start where the seed says and no run depends on another's --steps;
    more samples add rollouts without moving the first ones.
    """
    first_possible = max(part.start, context_frames)  # a window needs context_frames frames before it
    usable = part.stop - first_possible
    horizon = max(steps, usable // 2)
    candidates = usable - horizon + 1
    if candidates < num_samples:
        raise DataError(f"the {PART_NAMES[split_name]} part of the video has {plural(len(part), 'frame')}, too few for "
                        f"{plural(num_samples, 'rollout')} of {plural(steps, 'step')} (use fewer --steps or "
                        f"--num_samples, or another --split)")
    order = torch.randperm(candidates, generator=torch.Generator().manual_seed(seed))
    return order[:num_samples] + first_possible


def earlier_output(folder):
    """The files an earlier run of predict wrote into folder (OUTPUT_FILES), and nothing else."""
    return sorted(path for path in Path(folder).iterdir() if path.is_file() and OUTPUT_FILES.fullmatch(path.name))


def step_metrics(prediction, truth):
    """prediction, truth (steps, H, W) -> {"l1": [...], "psnr": [...], "ssim": [...]} per step."""
    metrics = frame_metrics(prediction, truth)
    return {key: metrics[key].tolist() for key in ("l1", "psnr", "ssim")}


def to_image(frame, scale=UPSCALE):
    """float frame (H, W) in [0, 1] -> grayscale PIL image, upscaled with nearest neighbour."""
    pixels = (frame.clamp(0, 1) * 255).round().byte().cpu().numpy()
    image = Image.fromarray(pixels)  # uint8 (H, W): mode "L"
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def panel_row(frames, labels, scale):
    """Frames (H, W) in [0, 1] side by side in one image, each labelled above, mid-grey gaps between them."""
    panels = [to_image(frame, scale) for frame in frames]
    width, height = panels[0].size
    font, label_height = label_font(scale)
    row = Image.new("L", (len(panels) * width + (len(panels) - 1) * GAP * scale, label_height + height), 255)
    draw = ImageDraw.Draw(row)
    for k, (panel, label) in enumerate(zip(panels, labels)):
        x = k * (width + GAP * scale)
        row.paste(panel, (x, label_height))
        draw.text((x + scale, scale), label, fill=0, font=font)
        if k:  # a mid-grey gap marks the panels' edges
            draw.rectangle((x - GAP * scale, label_height, x - 1, row.height - 1), fill=128)
    return row


def labelled_rows(truth, prediction, first_frame, scale):
    """One image per step: truth | prediction | |prediction - truth|, each labelled above.

    truth, prediction (steps, H, W) in [0, 1]; first_frame: the video index of the first predicted frame.
    """
    return [panel_row((t, p, (p - t).abs()),
                      [f"truth, frame {first_frame + i}", f"prediction, step {i + 1}", "|prediction - truth|"], scale)
            for i, (t, p) in enumerate(zip(truth, prediction))]


def context_row(context, first_frame, scale):
    """The real frames a rollout starts from, context (T-1, H, W), labelled with their indices in the video."""
    first = first_frame - len(context)
    return panel_row(context, [f"context, frame {first + k}" for k in range(len(context))], scale)


def title_strip(text, width, scale):
    """One line of text on white, width pixels wide."""
    font, label_height = label_font(scale)
    strip = Image.new("L", (width, label_height), 255)
    ImageDraw.Draw(strip).text((scale, scale), text, fill=0, font=font)
    return strip


def labelled_steps(title, context, truth, prediction, first_frame, scale):
    """One image per step of a rollout: the title, the context frames, that step's truth | prediction | error
    and the error scale. context (T-1, H, W), truth and prediction (steps, H, W) in [0, 1]."""
    rows = labelled_rows(truth, prediction, first_frame, scale)
    width = rows[0].width
    top = [title_strip(title, width, scale), context_row(context, first_frame, scale)]
    bottom = error_scale(width, scale, truth.shape[-1])
    return [stack_rows([*top, row, bottom]) for row in rows]


def error_scale(row_width, scale, frame_width):
    """The error panels' scale, to go below a row: a black-to-white bar under the third panel, 0 to 1."""
    width, bar_height = frame_width * scale, BAR_HEIGHT * scale
    font, label_height = label_font(scale)
    x = 2 * (width + GAP * scale)  # where the error panel starts
    strip = Image.new("L", (row_width, bar_height + label_height), 255)
    gradient = np.linspace(0, 255, width).round().astype(np.uint8)  # (width,) black to white
    strip.paste(Image.fromarray(np.tile(gradient, (bar_height, 1))), (x, 0))
    draw = ImageDraw.Draw(strip)
    for value in (0, 0.5, 1):
        text = f"{value:g}"
        left = x + value * (width - draw.textlength(text, font=font))  # 0 at the left end, 1 at the right
        draw.text((left, bar_height + scale), text, fill=0, font=font)
    caption = "error scale:"
    draw.text((x - 3 * scale - draw.textlength(caption, font=font), 0), caption, fill=0, font=font)
    return strip


def label_font(scale):
    """-> (Pillow's default font at FONT_SIZE pixels per upscaling step, the height of a label line)."""
    return ImageFont.load_default(size=FONT_SIZE * scale), round(1.5 * FONT_SIZE * scale)


def stack_rows(rows):
    """Images -> one image, top to bottom, left-aligned (white where a row is narrower)."""
    image = Image.new("L", (max(row.width for row in rows), sum(row.height for row in rows)), 255)
    y = 0
    for row in rows:
        image.paste(row, (0, y))
        y += row.height
    return image


def save_rollout_png(path, title, context, truth, prediction, first_frame):
    """Every step of a rollout in one image: the title, the context frames, a labelled truth | prediction |
    |error| row per step, the error scale below."""
    rows = labelled_rows(truth, prediction, first_frame, SHEET_UPSCALE)
    top = [title_strip(title, rows[0].width, SHEET_UPSCALE), context_row(context, first_frame, SHEET_UPSCALE)]
    stack_rows(top + rows + [error_scale(rows[0].width, SHEET_UPSCALE, truth.shape[-1])]).save(path)


def print_table(mean):
    """Per step: the model's L1, PSNR, SSIM and those of the baselines rolled out beside it."""
    columns = [("model", "rollout")] + [(LABELS[key], key) for key in mean if key != "rollout"]
    print("step " + " | ".join(f"{label + ' L1':>18} {'PSNR':>6} {'SSIM':>6}" for label, _ in columns))
    for i in range(len(mean["rollout"]["l1"])):
        print(f"{i + 1:4d} " + " | ".join(f"{mean[key]['l1'][i]:18.4f} {mean[key]['psnr'][i]:6.2f} "
                                          f"{mean[key]['ssim'][i]:6.4f}" for _, key in columns))


if __name__ == "__main__":
    sys.exit(main())
