"""Figures of scripts/run_experiments.py: loss curves, sample predictions, error by situation and region,
attention maps. Called by the runner after its evaluation; every figure is a PNG in the results folder.
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm, PowerNorm  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from model.data import (PART_NAMES, Video, evaluation_part, load_metadata, player_box,  # noqa: E402
                        resolve_data_path)
from model.engine import final_weights, load_model  # noqa: E402
from model.baselines import BASELINES, DRAWN, LABELS, context_predictors  # noqa: E402
from scripts.experiment_sets import VARIANT_LABELS  # noqa: E402

COLOURS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def label_of(variant):
    """A variant as the figures name it: its plain label (scripts.experiment_sets.VARIANT_LABELS) and its config."""
    label = VARIANT_LABELS.get(variant)
    return f"{label} ({variant})" if label else variant
ERROR_GAMMA = 0.5  # error images on a square-root colour scale: small errors show beside large ones
SAMPLES = 3  # windows per sample figure
ATTENTION_QUERIES = 1  # patches of the predicted frame per attention figure (the worst first)


def make_all(out, evaluations, configs, runs_dir, cache, frames_of):
    """All figures for the evaluated runs {variant: {seed: eval}} into out/."""
    out = Path(out)
    loss_curves(out / "loss_curves.png", evaluations, runs_dir)
    next_frame = [v for v in evaluations if configs[v].model.num_frames > 1]
    for variant in evaluations:
        cfg = configs[variant]
        seed = min(evaluations[variant])
        frames = frames_of(cfg, cache)
        samples(out / f"samples_{variant}.png", cfg, runs_dir / f"{variant}.seed{seed}", frames)
    if next_frame:
        if next(iter(evaluations[next_frame[0]].values()))["situations"]:  # the video's /meta names situations
            by_situation(out / "error_by_situation.png", {v: evaluations[v] for v in next_frame})
        by_region(out / "error_by_region.png", next_frame, evaluations, runs_dir,
                  baseline_error_maps(runs_dir, next_frame[0], min(evaluations[next_frame[0]])))
    for variant in next_frame:
        cfg = configs[variant]
        if cfg.model.attention:
            seed = min(evaluations[variant])
            box = player_box(load_metadata(resolve_data_path(cfg.data.hdf5_file)))
            attention_maps(out / f"attention_{variant}.png", cfg, final_weights(runs_dir / f"{variant}.seed{seed}"),
                           frames_of(cfg, cache), box)


def read_metrics(run_dir):
    lines = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def loss_curves(path, evaluations, runs_dir):
    """Training loss and validation L1 against the step, every seed a line; copy-last dashed."""
    fig, (train_ax, val_ax) = plt.subplots(1, 2, figsize=(11, 4))
    copy_last_drawn = False
    for colour, variant in zip(COLOURS * 4, evaluations):
        for i, seed in enumerate(sorted(evaluations[variant])):
            records = read_metrics(runs_dir / f"{variant}.seed{seed}")
            label = variant if i == 0 else None
            train_ax.plot([r["step"] for r in records], [r["train_loss"] for r in records], color=colour,
                          alpha=0.7, lw=1, label=label)
            val = [r for r in records if "val_l1" in r]
            val_ax.plot([r["step"] for r in val], [r["val_l1"] for r in val], color=colour, alpha=0.7, lw=1,
                        marker=".", label=label)
            if "val_copy_last_l1" in (val[0] if val else {}) and not copy_last_drawn:
                val_ax.axhline(val[-1]["val_copy_last_l1"], color="k", ls="--", lw=1, label=LABELS["copy_last"])
                copy_last_drawn = True
    train_ax.set(xlabel="step", ylabel="training loss (each run's config)", yscale="log", title="training")
    val_ax.set(xlabel="step", ylabel="L1 (masked pixels)", title="validation part")
    for ax in (train_ax, val_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def pick_windows(cfg, frames):
    """Windows of the evaluation part to show: the first with scrolling, player and NPC motion (or evenly spread)."""
    windows = Video.of_config(cfg, frames).windows(evaluation_part(cfg))
    count = len(windows)
    meta = load_metadata(resolve_data_path(cfg.data.hdf5_file))
    targets = np.asarray(windows.targets)
    chosen = []
    for key in ("camera_dx", "player_moving", "npc_moving"):
        if key in meta:
            hits = np.flatnonzero(np.asarray(meta[key])[targets] != 0)
            hits = [h for h in hits if h not in chosen]
            if hits:
                chosen.append(int(hits[len(hits) // 2]))
    for index in np.linspace(0, count - 1, SAMPLES).round().astype(int):
        if len(chosen) < SAMPLES and index not in chosen:
            chosen.append(int(index))
    return windows, torch.tensor(chosen[:SAMPLES])


@torch.no_grad()
def samples(path, cfg, run_dir, frames):
    """Rows of evaluation-part windows: the last input frame, truth, prediction and the |error| of the prediction
    and of each baseline that rolls out and needs no player box (masked reconstruction: input, truth,
    reconstruction)."""
    model, _ = load_model(final_weights(run_dir), cfg.model)
    windows, starts = pick_windows(cfg, frames)
    batch = windows.batch(starts)  # (S, T, H, W)
    out = model(batch, generator=torch.Generator().manual_seed(0))
    prediction = out["prediction"][:, -1].clamp(0, 1)
    truth = batch[:, -1]
    T = cfg.model.num_frames
    if T > 1:
        panels = [(batch[:, -2], f"last input (of {T - 1})"), (truth, "truth"), (prediction, "prediction"),
                  ((prediction - truth).abs(), "|error|")]
        panels += [((predict(batch[:, :-1]) - truth).abs(), f"|error|\n{LABELS[name]}")
                   for name, predict in context_predictors(T).items()]
    else:
        masked = batch[:, 0].masked_fill(out["pixel_mask"][:, 0], 0.5)
        shown = torch.where(out["pixel_mask"][:, 0], prediction, truth)
        panels = [(masked, "input (masked grey)"), (truth, "truth"), (shown, "reconstruction"),
                  ((shown - truth).abs(), "|error|")]
    fig, axes = plt.subplots(len(starts), len(panels), figsize=(1.7 * len(panels), 1.75 * len(starts) + 0.3),
                             squeeze=False)
    for row, start in enumerate(starts.tolist()):
        for col, (images, title) in enumerate(panels):
            ax = axes[row, col]
            scale = (dict(cmap="magma", norm=PowerNorm(ERROR_GAMMA, vmin=0, vmax=1)) if "error" in title else
                     dict(cmap="gray", vmin=0, vmax=1))
            ax.imshow(images[row].numpy(), interpolation="nearest", **scale)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=12)
            if col == 0:
                ax.set_ylabel(f"frame {windows.first_frame + start + T - 1}", fontsize=12)
    fig.suptitle(f"{label_of(cfg.model_path)} ({PART_NAMES[evaluation_part(cfg)]} windows)", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def by_situation(path, evaluations):
    """Bars of one-step L1 per situation: each variant (mean over seeds) next to the baselines."""
    first = next(iter(next(iter(evaluations.values())).values()))
    names = [s for s, entry in first["situations"].items() if entry["windows"] > 0]
    bars = {label_of(variant): [np.mean([run["situations"][s]["model"]["l1"] for run in runs.values()]) for s in names]
            for variant, runs in evaluations.items()}
    shown = [key for key in DRAWN if key in first["situations"][names[0]]]
    bars.update({LABELS[key]: [first["situations"][s][key]["l1"] for s in names] for key in shown})
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / len(bars)
    baseline_style = {LABELS[key]: dict(color=BASELINES[key].grey, hatch=BASELINES[key].hatch) for key in shown}
    palette = plt.get_cmap("tab10" if len(evaluations) <= 10 else "tab20").colors
    for i, (label, values) in enumerate(bars.items()):
        style = baseline_style.get(label, dict(color=palette[i % len(palette)]))
        ax.bar(np.arange(len(names)) + i * width, values, width, label=label, **style)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2,
                  [f"{s}\n({first['situations'][s]['windows']} windows)" for s in names], fontsize=11)
    ax.set(yscale="log")
    ax.set_ylabel(f"one-step L1 ({PART_NAMES[first['part']]} part)", fontsize=11)
    ax.tick_params(axis="y", labelsize=10.5)
    ax.legend(fontsize=11, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@torch.no_grad()
def baseline_error_maps(runs_dir, variant, seed):
    """Mean |error| per pixel of the next-frame baselines, as the evaluation of one run stored them (error_map.npz)."""
    stored = np.load(runs_dir / f"{variant}.seed{seed}" / "error_map.npz")
    return {LABELS[name]: stored[name] for name in BASELINES if name in stored.files}


def by_region(path, variants, evaluations, runs_dir, baselines, block=8):
    """Mean |error| per 8x8 block of the frame: the baselines in the first row; below, one row per variant (mean
    over seeds): its map and its map minus the strongest baseline's (the lowest mean error)."""
    maps = {label_of(variant): np.mean([np.load(runs_dir / f"{variant}.seed{seed}" / "error_map.npz")["model"]
                              for seed in evaluations[variant]], axis=0) for variant in variants}
    reference = min(baselines, key=lambda label: baselines[label].mean())

    def pool(image):
        h, w = image.shape
        return image[: h // block * block, : w // block * block].reshape(h // block, block, w // block, block).mean((1, 3))

    columns = max(2, len(baselines))
    fig, axes = plt.subplots(1 + len(maps), columns, figsize=(2.4 * columns, 2.4 * (1 + len(maps))), squeeze=False)
    norm = PowerNorm(ERROR_GAMMA, vmin=0, vmax=max(pool(m).max() for m in [*maps.values(), *baselines.values()]))
    rows = [[(label, pool(image), "error") for label, image in baselines.items()]]
    for label, image in maps.items():
        difference = pool(image) - pool(baselines[reference])
        rows.append([(label.replace(" (", "\n("), pool(image), "error"),
                     (f"minus {reference}", difference, "difference")])
    for row, panels in enumerate(rows):
        for col in range(columns):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(panels):
                ax.axis("off")
                continue
            label, image, kind = panels[col]
            if kind == "error":
                shown = ax.imshow(image, cmap="magma", norm=norm)
            else:
                limit = max(1e-6, np.abs(image).max())
                shown = ax.imshow(image, cmap="coolwarm", vmin=-limit, vmax=limit)
                label += "\n(blue: lower error)"
            ax.set_title(label, fontsize=11)
            fig.colorbar(shown, ax=ax, fraction=0.04).ax.tick_params(labelsize=10)
    fig.suptitle(f"mean |error| per {block}x{block} block (square-root colour scale)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


@torch.no_grad()
def attention_maps(path, cfg, weights, frames, box=None):
    """The first and the last block's attention, head by head, of the worst predicted patch of the predicted frame
    (or the player's patch, where box (top, bottom, left, right) says where it is and ATTENTION_QUERIES is 2) over
    the tokens of every frame of a test window, on one log colour scale. weights: a checkpoint of cfg's model.

    Drawn at the report's text width (17 cm), so the font sizes are the printed ones.
    """
    model, payload = load_model(weights, cfg.model)
    windows, starts = pick_windows(cfg, frames)
    window = windows.batch(starts[:1])  # (1, T, H, W)
    out = model(window, return_attention=True)
    embedding = model.embedding
    T, gh, gw, p = cfg.model.num_frames, embedding.grid_height, embedding.grid_width, embedding.patch_size
    per_frame = gh * gw
    error = (out["prediction"][0, -1].clamp(0, 1) - window[0, -1]).abs()
    patch_error = error.reshape(gh, p, gw, p).mean((1, 3)).flatten()
    y, x = ((box[0] + box[1]) // 2, (box[2] + box[3]) // 2) if box else (gh * p // 2, gw * p // 2)
    queries = [("worst predicted patch", int(patch_error.argmax())),
               ("player's patch" if box else "centre patch", (y // p) * gw + x // p)][:ATTENTION_QUERIES]
    blocks = sorted({0, len(out["attention"]) - 1})
    rows = [(name, query, block) for name, query in queries for block in blocks]
    heads = out["attention"][blocks[0]].shape[1]
    norm = LogNorm(vmin=1e-3, vmax=1, clip=True)  # uniform attention over the window's tokens: 1 / (T * per_frame)
    with plt.rc_context({"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8}):
        fig = plt.figure(figsize=(6.7, 0.75 + 1.05 * len(rows)), layout="constrained")
        *head_figs, bar_fig = fig.subfigures(1, heads + 1, width_ratios=[T + 0.3] + [T] * (heads - 1) + [0.85], wspace=0.03)
        for head, head_fig in enumerate(head_figs):
            head_fig.suptitle(f"head {head + 1}", fontsize=8, fontweight="bold")
            axes = head_fig.subplots(len(rows), T, squeeze=False)
            for row, (name, query, block) in enumerate(rows):
                attention = out["attention"][block][0, head, (T - 1) * per_frame + query].view(T, gh, gw)
                for t in range(T):
                    ax = axes[row, t]
                    ax.imshow(window[0, t].numpy(), cmap="gray", vmin=0, vmax=1)
                    shown = ax.imshow(attention[t].numpy(), cmap="viridis", norm=norm, alpha=0.65,
                                      extent=(-0.5, gw * p - 0.5, gh * p - 0.5, -0.5), interpolation="nearest")
                    qy, qx = divmod(query, gw)
                    ax.add_patch(plt.Rectangle((qx * p - 0.5, qy * p - 0.5), p, p, fill=False, color="red", lw=1.2))
                    ax.text(0.03, 0.97, f"{100 * attention[t].sum():.0f} %", transform=ax.transAxes, ha="left",
                            va="top", fontsize=7.5, bbox=dict(boxstyle="square,pad=0.15", fc="white", ec="none"))
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if row == 0:
                        ax.set_title(f"seen t-{T - 1 - t}" if t < T - 1 else "predicted")
                    if t == 0 and head == 0:
                        ax.set_ylabel(f"block {block + 1} of {len(out['attention'])}"
                                      + (f"\n{name}" if len(queries) > 1 else ""))
        bar = bar_fig.colorbar(shown, cax=bar_fig.add_axes((0.08, 0.1, 0.13, 0.72)))  # outside the layout
        bar.set_label("attention weight")
        fig.suptitle(f"{label_of(cfg.model_path)}, seed {payload.get('seed', '?')}: attention of the red patch "
                     f"(the {queries[0][0]} of the predicted frame);\n% = the head's share on that frame",
                     fontsize=8)
        fig.savefig(path, dpi=200)
    plt.close(fig)
