"""Exercise 1 (time series): train an RNN, an LSTM and a TCN on the memory tasks and compare them.

    python main.py                   # the course template's run: tasks memory and memorygen, models rnn lstm tcn
    python main.py --tasks memory memorygen memorygen_reverse --seeds 0 1 2 3 4 --jobs 2 --out results/timeseries
    python main.py --resume          # after Ctrl-C or a crash: the same grid, its finished runs kept

Every run trains one model on one task from one seed (the seed fixes the data, the initial weights and the
batch order) with Adam on the cross-entropy of the logits at the last step, and validates after every epoch.
Written to --out (default out/timeseries):

    {task}_{model}_losses.png        training and validation loss per epoch, validation accuracy
    {task}_{model}_prediction.png    one validation sequence: its tokens over time, the target, the predicted
                                     class probabilities (with several seeds, these two go into seed{S}/)
    {task}_accuracy_by_position.png  validation accuracy against the token's position, one line per model,
                                     and how many validation samples have their token at each position
    results.json                     the configuration and, per run, histories and final numbers
    summary.md                       per task and model the final numbers, mean ± std over several seeds
                                     (also printed)

Progress bars are shown on a terminal; in a log file (stderr not a terminal) each run is one line.

Nothing finished is lost: results.json is written again (atomically) after every run, so Ctrl-C or a crash
keeps the numbers of the runs that finished, and `--resume` continues the grid, skipping them. An --out that
holds a grid is refused unless --resume or --overwrite says what to do with it; --overwrite trains the new
grid in {out}/.new_grid/ and replaces the earlier one only when the new one has finished.
"""

import argparse
import difflib
import json
import multiprocessing
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data import SOLVED, TASKS, make_task, seed_summary, token_positions
from model.files import atomic_file, write_json_atomically, write_text_atomically  # standard library only
from net import IMPLS, MODELS
from train import RunConfig, train_run


def run(cfg):
    """Train and validate one model on one task from one seed, draw its two figures, return its record."""
    record, example = train_run(cfg)
    draw_run_figures(cfg, record, example)
    return record


# --- figures -----------------------------------------------------------------------------------------------


def pyplot():
    """matplotlib.pyplot with the file-only Agg backend, imported on first use.

    Only the process that draws imports it (about 0.3-0.6 s): worker processes of --jobs > 1 train only.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed (also on the cluster)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    """A figure as a PNG, written whole or not at all (an interrupt never leaves half an image)."""
    with atomic_file(path, "wb") as file:
        fig.savefig(file, format="png", dpi=110)


def draw_run_figures(cfg, record, example):
    """The two figures of one run (losses, one validation prediction) into cfg.figure_dir."""
    figure_dir = Path(cfg.figure_dir)
    figure_dir.mkdir(parents=True, exist_ok=True)
    title = f"{cfg.model.upper()} on {cfg.task} (seed {cfg.seed})"
    plot_losses(record, 1 / cfg.num_tokens, title, figure_dir / f"{cfg.task}_{cfg.model}_losses.png")
    plot_prediction(
        example["x"],
        example["target"],
        example["probabilities"],
        title,
        figure_dir / f"{cfg.task}_{cfg.model}_prediction.png",
    )


# The per-run figures are drawn at the size they print in the report (three quarters of its 17 cm text width),
# so these font sizes are the printed ones.
RUN_FIGURE_WIDTH = 5.0  # inches
RUN_FIGURE_FONTS = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7.5,
                    "ytick.labelsize": 7.5, "legend.fontsize": 7.5, "figure.titlesize": 8.5}


def plot_losses(history, chance, title, path):
    """Training and validation loss per epoch (left), validation accuracy with chance level (right).

    history: a dict with the lists train_loss, val_loss, val_accuracy (train.train()'s history or a run's record).
    """
    plt = pyplot()
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    with plt.rc_context(RUN_FIGURE_FONTS):
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(RUN_FIGURE_WIDTH, 1.75), constrained_layout=True)
        ax_loss.plot(epochs, history["train_loss"], label="training")
        ax_loss.plot(epochs, history["val_loss"], label="validation")
        ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
        ax_loss.legend()
        ax_acc.plot(epochs, history["val_accuracy"], color="C1", label="validation")
        ax_acc.axhline(chance, color="grey", linestyle="--", label=f"chance ({chance:.2f})")
        ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02), title="validation accuracy")
        ax_acc.legend(loc="lower right")
        fig.suptitle(f"{title}: final validation accuracy {history['val_accuracy'][-1]:.3f}")
        save_figure(fig, path)
    plt.close(fig)


def plot_prediction(x, target, probabilities, title, path):
    """One sequence x (T, num_tokens + 2): its categories over time (left), target and predicted
    class probabilities (right)."""
    plt = pyplot()
    num_tokens = x.shape[1] - 2
    categories = ["empty", *(f"token {k}" for k in range(1, num_tokens + 1)), "request"]
    position = int(token_positions(x[None])[0])
    with plt.rc_context(RUN_FIGURE_FONTS):
        fig, (ax_in, ax_out) = plt.subplots(1, 2, figsize=(RUN_FIGURE_WIDTH, 1.0 + 0.25 * len(categories)),
                                            gridspec_kw={"width_ratios": [2.4, 1]}, constrained_layout=True)
        draw_prediction(ax_in, ax_out, x, target, probabilities, categories, position)
        fig.suptitle(title)
        save_figure(fig, path)
    plt.close(fig)


def draw_prediction(ax_in, ax_out, x, target, probabilities, categories, position):
    """plot_prediction's two panels."""
    num_tokens = len(categories) - 2
    ax_in.imshow(x.T, aspect="auto", cmap="Greys", vmin=0, vmax=1.6, origin="lower", interpolation="nearest")
    ax_in.set_yticks(range(len(categories)), categories)
    ax_in.set_xticks(range(0, len(x), max(1, len(x) // 8)))
    ax_in.set_xlabel("time step")
    ax_in.set_title(f"input: token {target + 1} at step {position}, request at step {len(x) - 1}")

    tokens = np.arange(1, num_tokens + 1)
    colors = ["C2" if k == target else "C0" for k in range(num_tokens)]
    ax_out.bar(tokens, probabilities, color=colors)
    ax_out.set_xticks(tokens)
    predicted = int(probabilities.argmax())
    ax_out.set(
        xlabel="token",
        ylabel="probability",
        ylim=(0, 1),
    )
    ax_out.set_title(f"target {target + 1} (green)\npredicted {predicted + 1}: "
                     f"{'right' if predicted == target else 'wrong'}")


def over_seeds(records):
    """'seed 0' for one seed, 'mean ± std over 5 seeds' for several."""
    seeds = sorted({r["seed"] for r in records})
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"mean ± std over {len(seeds)} seeds"


# Distinct markers and dashes, so that models lying on top of each other (all at accuracy 1) stay visible.
LINE_STYLES = {
    "rnn": {"marker": "o", "markersize": 7, "fillstyle": "none", "linestyle": "-"},
    "lstm": {"marker": "s", "markersize": 5, "fillstyle": "none", "linestyle": "--"},
    "tcn": {"marker": "^", "markersize": 4, "linestyle": ":"},
}


def plot_accuracy_by_position(task, records, sequence_length, num_tokens, path):
    """Validation accuracy against the token's position, one line per model: mean over seeds, band ± std;
    behind them, on the right axis, how many validation samples have their token at each position (a
    position with few samples can drop far on a handful of mistakes)."""
    plt = pyplot()
    train_positions, val_positions = make_task(task, sequence_length)
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    counts_ax = ax.twinx()
    ax.set_zorder(counts_ax.get_zorder() + 1)  # the accuracy lines in front of the count bars
    ax.patch.set_visible(False)
    positions = np.arange(sequence_length - 1)
    # Every model of a seed validates on the same samples: the counts of one model's runs, mean over seeds.
    seed_runs = [r for r in records if r["model"] == records[0]["model"]]
    counts = np.mean([r["val_count_by_position"] for r in seed_runs], axis=0)  # (T - 1,)
    counts_ax.bar(positions, counts, width=0.8, fill=False, hatch="///", edgecolor="0.7", linewidth=0.5,
                  label="validation samples (right axis)")
    counts_ax.set_ylim(0, 3 * max(counts.max(), 1))  # the bars in the lower third
    counts_ax.set_ylabel("validation samples at the position" + ("\n(mean over seeds)" if len(seed_runs) > 1 else ""))
    if train_positions != val_positions:
        counts_ax.axvspan(
            train_positions[0] - 0.5, train_positions[-1] + 0.5, color="0.92", label="token positions in training"
        )
    models = [m for m in MODELS if any(r["model"] == m for r in records)]
    for i, model in enumerate(models):
        runs = [r for r in records if r["model"] == model]
        by_seed = np.array([[np.nan if a is None else a for a in r["val_accuracy_by_position"]] for r in runs])
        seeds_seen = (~np.isnan(by_seed)).sum(axis=0)  # (T - 1,) seeds with a validation token at each position
        seen = seeds_seen > 0
        accuracy, n = by_seed[:, seen], seeds_seen[seen]
        mean = np.nansum(accuracy, axis=0) / n
        std = np.sqrt(np.nansum((accuracy - mean) ** 2, axis=0) / np.maximum(n - 1, 1))  # sample std; 0 for one
        ax.plot(positions[seen], mean, color=f"C{i}", label=model.upper(), **LINE_STYLES[model])
        band = np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1)  # accuracies live in [0, 1]
        ax.fill_between(positions[seen], *band, color=f"C{i}", alpha=0.2, linewidth=0)
    ax.axhline(1 / num_tokens, color="grey", linestyle="--", label=f"chance ({1 / num_tokens:.2f})")
    ax.set(
        xlabel="position of the token in the sequence",
        ylabel="validation accuracy",
        xlim=(-0.5, sequence_length - 1.5),
        ylim=(0, 1.05),
    )
    fig.suptitle(f"{task}: validation accuracy by token position ({over_seeds(records)})")
    handles, labels = ax.get_legend_handles_labels()
    bar_handles, bar_labels = counts_ax.get_legend_handles_labels()
    fig.legend(handles + bar_handles, labels + bar_labels, loc="outside lower center", ncol=3, frameon=False)
    save_figure(fig, path)
    plt.close(fig)


# --- summary ---------------------------------------------------------------------------------------------


def summarize(records):
    """A Markdown table, per task and model: final accuracy (mean ± sample std over seeds, the value alone
    for one seed, and the range), how many seeds solved the task at some epoch and at which epoch first,
    final losses, CPU seconds of training (data.seed_summary)."""

    def mean_std(numbers, key):
        mean, std = numbers[f"{key}_mean"], numbers[f"{key}_std"]
        return f"{mean:.3f}" if numbers["seeds"] == 1 else f"{mean:.3f} ± {std:.3f}"  # sample std over seeds

    nbsp = "\u00a0"  # no-break spaces: the headings stay on one line in the report
    lines = [
        f"| task | model | params | val.{nbsp}accuracy | range | solved | epochs | val.{nbsp}loss | train{nbsp}loss "
        f"| CPU{nbsp}s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task in dict.fromkeys(r["task"] for r in records):
        for model in dict.fromkeys(r["model"] for r in records if r["task"] == task):
            runs = [r for r in records if r["task"] == task and r["model"] == model]
            numbers = seed_summary(runs)
            median = numbers["median_epochs_to_solve"]
            lines.append(
                f"| {task} | {model} | {runs[0]['num_params']} | {mean_std(numbers, 'final_accuracy')} "
                f"| {numbers['final_accuracy_min']:.3f}–{numbers['final_accuracy_max']:.3f} "
                f"| {numbers['solved']}/{numbers['seeds']} | {'–' if median is None else f'{median:g}'} "
                f"| {mean_std(numbers, 'final_val_loss')} | {mean_std(numbers, 'final_train_loss')} "
                f"| {numbers['cpu_seconds_mean']:.1f} |"
            )
    return "\n".join(lines) + "\n"


# --- command line ----------------------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse whose flags are never abbreviated, whose --help shows the defaults, and whose usage errors end
    in one line `error: ...`, a mistyped flag named with the closest one."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kwargs)

    def parse_args(self, args=None, namespace=None):
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            flags = [flag for action in self._actions for flag in action.option_strings]
            close = difflib.get_close_matches(unknown[0].split("=")[0], flags, n=1, cutoff=0.6)
            self.error(f"unrecognized arguments: {unknown[0]}" + (f"; did you mean {close[0]}?" if close else ""))
        return parsed

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def plural(count, noun):
    return f"{count} {noun if count == 1 else noun + 's'}"


def parse_args(argv=None):
    parser = Parser(prog="python main.py", description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=["memory", "memorygen"], help="tasks to train on")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="models to train")
    parser.add_argument("--epochs", type=int, default=50, help="epochs per run")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="S", help="one run per seed")
    parser.add_argument("--impl", choices=IMPLS, default="own", help="hand-written modules or PyTorch's")
    parser.add_argument("--out", default="out/timeseries", help="output folder")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument("--sequence-length", type=int, default=30, help="steps per sequence, the request included")
    parser.add_argument("--num-tokens", type=int, default=3, help="distinct tokens to remember")
    parser.add_argument("--num-samples", type=int, default=1000, help="training and validation samples, each")
    parser.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate")
    parser.add_argument("--batch-size", type=int, default=32, help="training mini-batch size")
    parser.add_argument("--device", default="cpu", help="e.g. cpu, cuda, cuda:1")
    parser.add_argument("--resume", action="store_true",
                        help="continue the grid that --out holds (after Ctrl-C or a crash): its finished runs are "
                             "kept, the others trained")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the grid that --out already holds (its results, summary and figures), once "
                             "the new grid has finished")
    parser.add_argument("--replot", action="store_true",
                        help="only draw the per-position and loss figures again from --out's results.json "
                             "(no training)")
    return parser.parse_args(argv)


def check_args(args):
    """Raise ValueError naming the first impossible setting."""
    for name in ("epochs", "jobs", "num_tokens", "num_samples", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.sequence_length < 3:
        raise ValueError(f"--sequence-length must be at least 3, got {args.sequence_length}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be positive, got {args.lr}")
    for name in ("tasks", "models", "seeds"):
        values = getattr(args, name)
        if len(set(values)) != len(values):
            raise ValueError(f"--{name} has duplicates: {' '.join(map(str, values))}")
    if args.resume and args.overwrite:
        raise ValueError("--resume continues the grid in --out, --overwrite replaces it: give one of them")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise ValueError(f"--device {args.device!r} is not a device name (cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device} requested, but CUDA is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {args.device} requested, but MPS is not available")


# Rough relative time of one epoch (hand-written models, 1 thread, 1000 samples: RNN 0.05 s, LSTM 0.13 s,
# TCN 0.04 s). Only the order in which runs go to the worker processes depends on it, never a result.
RELATIVE_COST = {"rnn": 1.25, "lstm": 3.25, "tcn": 1.0}


def init_worker():
    """Set up a worker process of run_all: one torch thread, as the sequential path computes. Ctrl-C reaches
    every process of the terminal; the main process stops the grid and ends the workers, which ignore it
    (else each would print a traceback of its own). tqdm's lock becomes a thread lock: its default, a named
    semaphore, would outlive a terminated worker (and the resource tracker warn of it)."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())


def run_all(configs, jobs, report):
    """Run every configuration, in `jobs` worker processes if jobs > 1; report(record) as each one ends.

    Every run computes in a single thread: the models are so small that a second thread costs more
    synchronisation than it saves, parallelism is over runs instead, and the numbers do not depend on --jobs.
    With jobs > 1 the workers only train (train_run); this process draws each run's figures as its result
    arrives, while the workers go on training, so workers never import matplotlib. The workers are started
    once and take the runs one after another, the most expensive first, so that no worker is left with a
    long run at the end while the other is idle. Records come back in order of completion. An exception here
    (Ctrl-C: KeyboardInterrupt) ends the workers at once; the runs reported so far are finished.
    """
    records = []
    if not configs:
        return records
    if jobs == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with tqdm(configs, desc="runs", unit="run", disable=not show_bars()) as bar:
                for cfg in bar:
                    records.append(run(cfg))
                    report(records[-1])
        finally:
            torch.set_num_threads(threads)
        return records
    # spawn, not fork: forking a process that already ran torch can hang in its thread pools
    context = multiprocessing.get_context("spawn")
    by_cost = sorted(configs, key=lambda c: -RELATIVE_COST[c.model] * c.epochs)  # stable: ties keep their order
    by_run = {(c.task, c.model, c.seed): c for c in configs}
    bar = tqdm(total=len(configs), desc="runs", unit="run", disable=not show_bars())
    # Leaving the block terminates the pool: at the end every run is done, on an exception the workers stop.
    with bar, context.Pool(min(jobs, len(configs)), initializer=init_worker) as pool:
        for record, example in pool.imap_unordered(train_run, by_cost):
            draw_run_figures(by_run[record["task"], record["model"], record["seed"]], record, example)
            records.append(record)
            report(record)
            bar.update()
    return records


def show_bars():
    """Progress bars on a terminal only: in a log file their updates would run into the result lines."""
    return sys.stderr.isatty()


def replot(out):
    """The per-position figures, each run's loss figure and summary.md of a finished grid again, from its
    results.json (the prediction figures need the trained models, which the grid does not keep)."""
    source = out / "results.json"
    if not source.is_file():
        print(f"error: no {source}; run the grid first (without --replot)", file=sys.stderr)
        return 1
    results = json.loads(source.read_text())
    config, records = results["config"], results["runs"]
    for task in dict.fromkeys(r["task"] for r in records):
        plot_accuracy_by_position(task, [r for r in records if r["task"] == task], config["sequence_length"],
                                  config["num_tokens"], out / f"{task}_accuracy_by_position.png")
    seeds = {r["seed"] for r in records}
    for r in records:  # where draw_run_figures put them
        figure_dir = out if len(seeds) == 1 else out / f"seed{r['seed']}"
        figure_dir.mkdir(parents=True, exist_ok=True)
        plot_losses(r, 1 / config["num_tokens"], f"{r['model'].upper()} on {r['task']} (seed {r['seed']})",
                    figure_dir / f"{r['task']}_{r['model']}_losses.png")
    write_summary(out, results["command"], argparse.Namespace(**config), records, results["wall_seconds"])
    print(f"wrote the per-position figures, the loss figures and summary.md in {out}")
    return 0


GRID_FILES = ("results.json", "summary.md", "*_accuracy_by_position.png", "*_losses.png", "*_prediction.png")
NEW_GRID = ".new_grid"  # where --overwrite trains the new grid, inside --out, until it replaces the earlier one
# Flags that say where and how a grid runs, not what it computes: a grid continues under other values of these.
FOLDER_FLAGS = ("out", "jobs", "resume", "overwrite", "replot")


class GridError(Exception):
    """--out cannot take this grid as asked; the message is one line."""


def remove_grid(out):
    """Remove the files a grid wrote into out (and its seed folders), nothing else."""
    for folder in [out, *sorted(out.glob("seed*"))]:
        for pattern in GRID_FILES:
            for path in folder.glob(pattern):
                path.unlink()


def replace_grid(out, new):
    """Replace the grid in out by the finished one in its folder new (NEW_GRID): only now, with the new grid
    complete, are the earlier grid's files removed. results.json moves last."""
    remove_grid(out)
    files = sorted((path for path in new.rglob("*") if path.is_file()), key=lambda path: path.name == "results.json")
    for path in files:
        target = out / path.relative_to(new)
        target.parent.mkdir(exist_ok=True)
        os.replace(path, target)
    shutil.rmtree(new)


def prepare_out(out):
    """Make the output folder, or raise GridError naming why it cannot be one (before any training)."""
    if out.exists() and not out.is_dir():
        raise GridError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GridError(f"--out {out} cannot be made: {error.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise GridError(f"--out {out} is not writable")


def read_grid(folder):
    """The results.json of folder as a dict, or None when there is none."""
    path = folder / "results.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise GridError(f"{path} cannot be read ({error}); move it away, or replace the grid with --overwrite") \
            from None


def other_settings(grid, args):
    """'--epochs 2 there, 1 here' for the first flag in which grid (a results.json) differs from args, or None."""
    for key, value in vars(args).items():
        if key not in FOLDER_FLAGS and grid["config"].get(key) != value:
            def show(v):
                return " ".join(map(str, v)) if isinstance(v, list) else str(v)
            return f"--{key.replace('_', '-')} {show(grid['config'].get(key))} there, {show(value)} here"
    return None


def grid_folder(args, out):
    """Where this grid is written and the grid it continues -> (folder, earlier results or None).

    Without --resume or --overwrite, an out that holds a grid is refused. --resume continues the grid of these
    settings: an unfinished replacement (out/NEW_GRID) first, else out's own; with no grid there it starts
    one. --overwrite starts the grid in out/NEW_GRID (out's grid stays until the new one has finished).
    """
    new = out / NEW_GRID
    if args.resume:
        grids = [(folder, read_grid(folder)) for folder in (new, out)]
        grids = [(folder, grid) for folder, grid in grids if grid is not None]
        for folder, grid in grids:
            if other_settings(grid, args) is None:
                return folder, grid
        if grids:
            folder, grid = grids[-1]
            raise GridError(f"--resume: {folder} holds a grid with other settings ({other_settings(grid, args)}); "
                            f"give its settings to continue it, or replace it with --overwrite")
        return out, None
    if not (out / "results.json").exists():
        return out, None
    if not args.overwrite:
        held = read_grid(out)
        if held.get("finished", True):
            raise GridError(f"{out} holds an earlier grid (results.json); choose another --out, or replace it with "
                            f"--overwrite")
        raise GridError(f"{out} holds an unfinished grid ({plural(len(held['runs']), 'run')} in results.json): "
                        f"continue it with --resume, choose another --out, or replace it with --overwrite")
    if new.exists():
        print(f"--overwrite: removing the unfinished replacement in {new}")
        shutil.rmtree(new)
    print(f"--overwrite: the new grid goes to {new} and replaces {out}'s when it has finished")
    return new, None


def resume_command(argv):
    """The command that continues this grid: its flags without --overwrite, with --resume."""
    return shlex.join(["python", "main.py", *(a for a in argv if a not in ("--resume", "--overwrite")), "--resume"])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    # written down beside the results: the command that computes this grid (wherever, however often stopped)
    command = shlex.join(["python", "main.py", *(a for a in argv if a not in ("--resume", "--overwrite"))])
    args = parse_args(argv)
    try:
        check_args(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    out = Path(args.out)
    if args.replot:
        return replot(out)
    try:
        prepare_out(out)
        folder, earlier = grid_folder(args, out)
    except GridError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configs = grid_configs(args, folder)
    records = earlier["runs"] if earlier is not None else []
    finished = {(r["task"], r["model"], r["seed"]) for r in records}
    to_run = [c for c in configs if (c.task, c.model, c.seed) not in finished]
    if earlier is not None:
        print(f"continuing {folder}: {len(finished)} of {plural(len(configs), 'run')} finished, "
              f"{len(to_run)} to train")
    seconds_before, start = earlier["wall_seconds"] if earlier is not None else 0.0, time.perf_counter()
    order = {(c.task, c.model, c.seed): i for i, c in enumerate(configs)}

    def save(done):
        """results.json with the runs finished so far (atomically: an interrupt keeps the previous one)."""
        records.sort(key=lambda r: order[r["task"], r["model"], r["seed"]])
        write_json_atomically(folder / "results.json", {
            "command": command, "config": vars(args), "finished": done,
            "wall_seconds": seconds_before + time.perf_counter() - start, "runs": records})

    def report(record):
        line = (
            f"Final accuracy of {record['model']} ({record['num_params']} parameters) "
            f"on {record['task']} task: {record['final_accuracy']:.3f}"
        )
        tqdm.write(line + (f" (seed {record['seed']})" if len(args.seeds) > 1 else ""))
        records.append(record)
        save(done=False)

    interrupted = False
    try:
        run_all(to_run, args.jobs, report)
    except KeyboardInterrupt:
        interrupted = True  # said below, once the progress bars of the interrupted run are gone
    if interrupted:
        print(interrupted_line(folder, out, len(records), len(configs), argv))
        return 130

    for task in args.tasks:
        plot_accuracy_by_position(task, [r for r in records if r["task"] == task], args.sequence_length,
                                  args.num_tokens, folder / f"{task}_accuracy_by_position.png")
    save(done=True)
    if folder != out:
        replace_grid(out, folder)
    write_summary(out, command, args, records, seconds_before + time.perf_counter() - start)
    return 0


def interrupted_line(folder, out, finished, total, argv):
    """The one line after Ctrl-C: what was kept and how to go on."""
    line, grid = ("interrupted: ", "this grid") if folder == out else (
        f"interrupted: {out} still holds its earlier grid; ", "the new grid")
    if not finished:
        return line + f"no run of {grid} had finished, nothing to keep"
    return (line + f"{finished} of {plural(total, 'run')} of {grid} finished, their numbers are kept in "
            f"{folder / 'results.json'}; continue with: {resume_command(argv)}")


def grid_configs(args, out):
    """One RunConfig per task, model and seed of the command line."""
    return [
        RunConfig(
            task=task,
            model=model,
            seed=seed,
            impl=args.impl,
            epochs=args.epochs,
            lr=args.lr,
            batch_size=args.batch_size,
            num_samples=args.num_samples,
            sequence_length=args.sequence_length,
            num_tokens=args.num_tokens,
            device=args.device,
            # one seed: the template's file names; several: one folder per seed
            figure_dir=str(out if len(args.seeds) == 1 else out / f"seed{seed}"),
            show_progress=args.jobs == 1 and show_bars(),
        )
        for task in args.tasks
        for model in args.models
        for seed in args.seeds
    ]


def write_summary(out, command, args, records, wall_seconds):
    """summary.md: the command, its settings, the table of summarize() and where the figures are; printed too."""
    summary = summarize(records)
    seeds = " ".join(map(str, args.seeds))
    settings = (
        f"impl {args.impl}, {plural(args.epochs, 'epoch')}, {args.num_samples} training and "
        f"{plural(args.num_samples, 'validation sample')}, sequence length {args.sequence_length}, "
        f"{plural(args.num_tokens, 'token')}, Adam lr {args.lr}, batch size {args.batch_size}; "
        + (f"seed {seeds}" if len(args.seeds) == 1 else f"mean ± sample std over seeds {seeds}")
        + f"; solved: seeds whose validation accuracy reached {SOLVED} at some epoch (epochs: the first such epoch, "
        "median over the seeds that solved it; the final accuracy can be lower); CPU s: CPU seconds of one run's "
        "training loop (one thread), mean over seeds"
        + f"; grid wall time {wall_seconds:.0f} s with --jobs {args.jobs}."
    )
    figures = (
        "Figures: `{task}_accuracy_by_position.png` here; per run `{task}_{model}_losses.png` and "
        f"`{{task}}_{{model}}_prediction.png`{' in `seed{S}/`' if len(args.seeds) > 1 else ''}."
    )
    write_text_atomically(out / "summary.md",
                          f"# Exercise 1: memory tasks\n\n`{command}`\n\n{settings}\n\n{summary}\n{figures}\n")
    print(f"\n{summary}\n{settings}\nWrote {out}/")


if __name__ == "__main__":
    sys.exit(main())
