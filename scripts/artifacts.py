"""The visible artifacts of the published models' predictions, named and measured (report 2 (f)).

    python -m scripts.artifacts                       # results/vit/artifacts/: artifacts.json, tables, two figures
    python -m scripts.artifacts --train-windows 100   # fewer training windows (a quick look)

Every published model (the sheet's model, width 128, the memorising model; a checkpoint not yet published is
left out with a note) and the copy-last and held-player baselines predict the same frames: every frame of the
test part, and frames spread evenly over the training part. For each, beside PSNR and L1, the measures of
model.metrics.ARTIFACTS: sharpness (blur), seam ratio (the patch grid), streak share (vertical streaks) and
the error inside the player's box (a ghosted or smeared sprite). The figures show two test windows and two
training windows, spread over each part (not picked), with each prediction and its absolute error.
"""
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from model.baselines import LABELS, baseline_predictors
from model.checkpoint import CheckpointError
from model.cli import CliParser, fail, positive_int
from model.config import ConfigError, load_config
from model.data import DataError, FrameWindows, open_video
from model.engine import load_model
from model.evaluate import model_predictor
from model.files import write_json_atomically, write_text_atomically
from model.metrics import ARTIFACTS, artifact_measures, artifact_sums, frame_metrics, psnr
from model.protocol import spread_targets

MODELS = {  # label -> (config, published checkpoint)
    "sheet's model": ("config/vit_cpu.json", "results/vit/vit_cpu.ckpt"),
    "width 128": ("config/vit_wide.json", "results/vit/vit_wide.ckpt"),
    "memorising": ("config/vit_memorise.json", "results/vit/vit_memorise.ckpt"),
}
BASELINES_SHOWN = ("copy_last", "player_held")
SHOWN_WINDOWS = 2  # per part in the figures
BATCH = 32
ERROR_RANGE = 0.5  # the colour scale of the error maps: 0 to half the gray range
DIGITS = {"psnr": ".2f", "l1": ".4f", "player_l1": ".4f"}  # the tables' digits; the other measures .3f


def part_targets(parts, part, count):
    """The predicted frames of a part: all of the test part; count frames spread evenly over the training part,
    as the evaluation protocol spreads them (model.protocol.spread_targets)."""
    if part == "test":
        return torch.arange(parts["test"].start, parts["test"].stop)
    return spread_targets(parts["train"], count)


def predictors(box):
    """label -> (num_frames, predictor) of the published models found and of the baselines shown; and the notes."""
    found, notes = {}, []
    for label, (config, checkpoint) in MODELS.items():
        if not Path(checkpoint).is_file():
            notes.append(f"{label}: {checkpoint} not published yet, left out")
            continue
        cfg = load_config(config)
        model, payload = load_model(checkpoint, cfg.model)
        found[label] = (cfg.model.num_frames, model_predictor(model), {"config": config, "checkpoint": checkpoint,
                                                                       "step": payload.get("step")})
    baselines = baseline_predictors(3, player_box=box)
    for name in BASELINES_SHOWN:
        if name in baselines:
            found[LABELS[name]] = (3, baselines[name], {"baseline": name})
    return found, notes


@torch.no_grad()
def measure(found, video, targets, patch_size, box):
    """Each predictor on the windows predicting ``targets`` -> ({label: numbers}, {label: predictions shown})."""
    shown = np.linspace(0, len(targets) - 1, SHOWN_WINDOWS + 2).round().astype(int)[1:-1]  # spread, not ends
    numbers, pictures = {}, {}
    for label, (num_frames, predict, _) in found.items():
        windows = FrameWindows(video, num_frames, targets=range(num_frames - 1, len(video)))
        sums, l1, mse, kept = {}, [], [], []
        for batch in (targets - (num_frames - 1)).split(BATCH):
            frames = windows.batch(batch)
            prediction, truth = predict(frames, None).float(), frames[:, -1]
            for key, value in artifact_sums(prediction, truth, patch_size, box).items():
                sums[key] = sums.get(key, 0.0) + value.sum()
            metrics = frame_metrics(prediction, truth)
            l1.append(metrics["l1"])
            mse.append(metrics["mse"])
            kept.append(prediction)
        predictions = torch.cat(kept)
        numbers[label] = {"psnr": psnr(torch.cat(mse).mean()).item(), "l1": torch.cat(l1).mean().item(),
                          **artifact_measures(sums)}
        pictures[label] = predictions[shown]
    truth_windows = FrameWindows(video, 2, targets=range(1, len(video)))
    seen_and_truth = truth_windows.batch(targets[shown] - 1)  # (S, 2, H, W): the last seen frame, the truth
    return numbers, pictures, seen_and_truth, targets[shown]


def figure(path, pictures, seen_and_truth, frame_indices, part):
    """Rows: for each shown window its predictions, then their absolute errors (one colour scale); the columns are
    named above the first window. Drawn at the report's text width (17 cm), so the font sizes are the printed ones."""
    labels = list(pictures)
    columns = 2 + len(labels)
    with plt.rc_context({"font.size": 7.5, "axes.titlesize": 7.5}):
        fig, axes = plt.subplots(2 * len(frame_indices), columns, figsize=(6.7, 0.15 + 1.7 * len(frame_indices)),
                                 squeeze=False, layout="constrained")
        error_image = None
        for row, frame in enumerate(frame_indices.tolist()):
            seen, truth = seen_and_truth[row, 0].numpy(), seen_and_truth[row, 1].numpy()
            top, bottom = axes[2 * row], axes[2 * row + 1]
            top[0].imshow(seen, cmap="gray", vmin=0, vmax=1)
            top[0].set_title(f"last seen\n(frame {frame - 1})" if row == 0 else f"frame {frame - 1}")
            top[1].imshow(truth, cmap="gray", vmin=0, vmax=1)
            top[1].set_title(f"truth, {part}\n(frame {frame})" if row == 0 else f"frame {frame}")
            bottom[0].axis("off")
            bottom[1].axis("off")
            bottom[1].text(1.0, 0.5, "|error| of the\nprediction\nabove", transform=bottom[1].transAxes, ha="right",
                           va="center")
            for column, label in enumerate(labels, start=2):
                prediction = pictures[label][row].numpy()
                frame_psnr = psnr(torch.tensor(((prediction - truth) ** 2).mean())).item()
                top[column].imshow(prediction, cmap="gray", vmin=0, vmax=1)
                top[column].set_title(f"{label}\n{frame_psnr:.1f} dB" if row == 0 else f"{frame_psnr:.1f} dB")
                error_image = bottom[column].imshow(np.abs(prediction - truth), cmap="magma", vmin=0, vmax=ERROR_RANGE)
            for ax in (*top, *bottom):
                ax.set_xticks([])
                ax.set_yticks([])
        bar = fig.colorbar(error_image, ax=axes[1::2].ravel().tolist(), shrink=0.9, aspect=12)
        bar.set_label("|error| (gray level / 255)")
        fig.savefig(path, dpi=200)
    plt.close(fig)


def part_table(entry):
    """One part's table: a row per predictor, PSNR, L1 and the artifact measures."""
    lines = ["| | PSNR (dB) | L1 | sharpness | seam ratio | streak share | player L1 |", "|---|---|---|---|---|---|---|"]
    for label, numbers in entry["numbers"].items():
        cells = " | ".join(f"{numbers[key]:{DIGITS.get(key, '.3f')}}" if key in numbers else "–"
                           for key in ("psnr", "l1", *ARTIFACTS))
        lines.append(f"| {label} | {cells} |")
    return "\n".join(lines) + "\n"


def markdown(result):
    lines = []
    for part, entry in result["parts"].items():
        lines += [f"**{part} part** ({entry['windows']} frames)", "", part_table(entry)]
    lines += ["What each measure reads (model.metrics.ARTIFACTS):", ""]
    lines += [f"- **{name.replace('_', ' ')}**: {text}" for name, text in ARTIFACTS.items()]
    lines += ["", *[f"- {note}" for note in result["notes"]]]
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None):
    parser = CliParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/vit/artifacts"), help="where the results go")
    parser.add_argument("--train-windows", type=positive_int, default=600,
                        help="training frames predicted, spread evenly over the training part")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(MODELS["sheet's model"][0])
        video = open_video(cfg)
        found, notes = predictors(video.player_box)
    except (ConfigError, DataError, CheckpointError, OSError) as error:
        return fail(str(error), 1)
    result = {"models": {label: info for label, (_, _, info) in found.items()}, "parts": {}, "notes": notes}
    args.out.mkdir(parents=True, exist_ok=True)
    for part in ("test", "train"):
        targets = part_targets(video.parts, part, args.train_windows)
        numbers, pictures, seen_and_truth, shown = measure(found, video.frames, targets, cfg.model.patch_size,
                                                           video.player_box)
        result["parts"][part] = {"windows": len(targets), "numbers": numbers}
        figure(args.out / f"predictions_{part}.png", pictures, seen_and_truth, shown, part)
    write_json_atomically(args.out / "artifacts.json", result)
    write_text_atomically(args.out / "table.md", markdown(result))
    for part, entry in result["parts"].items():  # one table a part, for the report
        write_text_atomically(args.out / f"table_{part}.md", part_table(entry))
    print(markdown(result), end="")
    print(f"wrote {args.out}/artifacts.json, table.md (table_test.md, table_train.md), predictions_test.png, "
          f"predictions_train.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
