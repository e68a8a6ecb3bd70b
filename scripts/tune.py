"""Hyperparameter search for the sheet's predictive ViT (sheet 2 (f)): Optuna TPE with a median pruner.

    python -m scripts.tune --until 12 --steps-per-trial 3000        # config/vit_cpu.json -> results/vit/tune_sheet
    # several processes or SLURM array tasks share one study through the journal file:
    srun python -m scripts.tune --study-name lr-sweep --storage out/tune/lr-sweep.journal --trials 4

Each trial trains the base config's model with the hyperparameters the sheet names sampled: num_frames,
channels, num_heads, layers, patch_size and the learning rate (the base config's recipe otherwise: its
output, loss and schedule, fitted to the budget). Every trial gets the same compute: the training FLOPs of
--steps-per-trial steps of the base config (model.engine.step_flops), so a model with twice the FLOPs per step
trains half the steps (at most twice --steps-per-trial; a model that would get under a tenth of them is
pruned untrained). The base config's own values are the first trial the study asks for. The objective is the one-step MSE on the
validation part (lower is better; reported as PSNR). Every validation is reported, at the share of the
trial's budget it comes at, to the median pruner through engine.train's on_record callback, which stops an
unpromising trial early. The study lives in an Optuna journal file (JournalFileBackend), so any number of
processes can add trials to it, and a stopped search continues where it was. Afterwards (and with
--report-only) --out receives trials.csv, summary.md, param_importance.png, and --best-config
(RUNS_DIR/vit_best.json unless named) is written from the best trial.

A stop signal (SIGINT, SIGTERM, SIGUSR1: a SLURM job's time-limit warning, scancel) ends the search
after the running trial's current step: the trial quicksaves, is marked failed (user attribute
stopped_by), and a copy of it waits in the study; the next process that asks for a trial continues
that copy from the quicksave. The process exits with 128 + the signal's number. --worker NAME (an
array task's name) seeds the sampler and makes --trials count that worker's trials from before a
requeue.
"""
import csv
import json
import math
import os
import signal
import sys
from pathlib import Path

import numpy as np
import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

from model.baselines import LABELS, ROLLS_OUT
from model.checkpoint import CheckpointError
from model.cli import CliParser, fail, non_negative_int, positive_int, stop_on_signals
from model.config import ConfigError, load_config, with_budget, with_overrides
from model.data import DataError, Video, load_video
from model.distributed import Ranks, StopFlag
from model.engine import QUICKSAVE, TrainingError, step_flops, train
from model.files import write_text_atomically
from model.text import plural

SEARCH_SPACE = {  # parameter -> config key; the choices are in choices()
    "num_frames": "model.num_frames", "channels": "model.channels", "num_heads": "model.num_heads",
    "layers": "model.layers", "patch_size": "model.patch_size", "learning_rate": "learning_rate",
}
SHORT_NAMES = {"num_frames": "frames", "channels": "width", "num_heads": "heads", "layers": "layers",
               "patch_size": "patch", "learning_rate": "lr"}


def parse_args(argv=None):
    parser = CliParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/vit_cpu.json", help="base config; the search overrides it")
    parser.add_argument("--study-name", default="sheet")
    parser.add_argument("--storage", default="out/tune_sheet/sheet.journal", help="Optuna journal file (shared)")
    parser.add_argument("--trials", type=non_negative_int, default=10,
                        help="trials this process adds to the study (with --worker: this worker's trials, "
                             "those before a requeue included)")
    parser.add_argument("--steps-per-trial", type=positive_int, default=3000,
                        help="the budget of every trial: the training FLOPs of this many steps of --config")
    parser.add_argument("--out", default="results/vit/tune_sheet", help="trials.csv, summary.md, importance figure")
    parser.add_argument("--best-config", help="where the best trial's config is written (default: "
                        "RUNS_DIR/vit_best.json; the committed config/vit_best.json is replaced only when named)")
    parser.add_argument("--runs-dir", default="out/tune_sheet", help="run folders of the trials")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler and of every trial's training")
    parser.add_argument("--worker", metavar="NAME",
                        help="this process's name in the study (e.g. <array job>_<task>): mixed into the "
                             "sampler's seed, recorded with its trials, and --trials counts its earlier trials")
    parser.add_argument("--scratch", metavar="DIR",
                        help="folder holding the data file: a leading './' of data.hdf5_file becomes DIR/")
    parser.add_threads()
    parser.add_argument("--until", type=non_negative_int, metavar="N",
                        help="instead of --trials: add trials until the study holds N finished ones, counting "
                             "those of every process sharing the study "
                             "(a rerun after an interruption runs only what is missing)")
    parser.add_argument("--report-only", action="store_true", help="write the report of the study as it is")
    args = parser.parse_args(argv)
    if args.best_config is None:
        args.best_config = str(Path(args.runs_dir) / "vit_best.json")
    args.base_flops = None  # the base config's FLOPs per step, counted once before the first trial
    return args


def main(argv=None):
    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        base = load_config(args.config)
        Path(args.storage).parent.mkdir(parents=True, exist_ok=True)
        storage = JournalStorage(JournalFileBackend(str(args.storage)))
        study = optuna.create_study(
            study_name=args.study_name, storage=storage, direction="minimize", load_if_exists=True,
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=PRUNE_AFTER_VALIDATIONS))
        # The sampler's seed mixes --seed, the worker's name and the study's size when this process
        # starts, so the tasks of an array, a requeued task and a later search each propose their own
        # first trials (a bare --seed + size gave task 1 with 0 trials task 0's seed with 1 trial).
        entropy = [args.seed, len(study.trials), *(args.worker or "").encode()]
        sampler_seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
        study.sampler = optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=5)
        if args.until is not None:
            args.trials = max(0, args.until - finished_trials(study))
        elif args.worker is not None:  # a requeued worker adds only what is left of its share
            args.trials = max(0, args.trials - finished_trials(study, args.worker))
        check_base_config(study, args.config, args.steps_per_trial if not args.report_only else
                          study.user_attrs.get("steps_per_trial", args.steps_per_trial))
        if not args.report_only and args.trials:
            study.set_user_attr("steps_per_trial", args.steps_per_trial)
            study.set_user_attr("config", args.config)
            enqueue_base(study, base, f"{args.storage}.base.lock")
            frames = load_video(base, args.scratch)
            args.base_flops = step_flops(base)
            signals = StopSignals()
            with stop_on_signals(signals):
                stopped_by = search(study, base, frames, args, signals)
            if stopped_by is not None:
                return 128 + signal.Signals[stopped_by].value
        # The report states the budget the trials ran with, also when --report-only is given without it.
        args.steps_per_trial = study.user_attrs.get("steps_per_trial", args.steps_per_trial)
        write_report(study, base, args)
    except ConfigError as error:
        return fail(error, 2)
    except (DataError, CheckpointError) as error:
        return fail(error, 1)
    except KeyboardInterrupt:  # a second Ctrl-C
        return fail("interrupted; the running trial stays 'running' in the study", 130)
    return 0


def enqueue_base(study, base, lock_path):
    """Put the base config's own values first in the study's queue (once), so the search measures its picks
    against the configuration it started from, at the same budget. lock_path: a file lock shared by the workers
    of the study (the tasks of an array start together), so that only one of them enqueues it."""
    lock = JournalFileOpenLock(str(lock_path))
    lock.acquire()
    try:
        if study.user_attrs.get("base_enqueued"):
            return
        study.set_user_attr("base_enqueued", True)
        values = {name: _value(base, key) for name, key in SEARCH_SPACE.items()}
        if in_space(values, base):
            study.enqueue_trial(values, user_attrs={"base_config": True})
        else:
            print(f"the base config's values {values} lie outside the search space; not a trial of their own",
                  flush=True)
    finally:
        lock.release()


def _value(cfg, dotted):
    """The value of a dotted config key, e.g. "model.channels"."""
    for name in dotted.split("."):
        cfg = getattr(cfg, name)
    return cfg


def check_base_config(study, config, steps_per_trial):
    """Refuse to add trials from another base config (another split: another objective) or another budget (a
    continued trial would change its schedule) to a study."""
    saved = study.user_attrs.get("config")
    if saved is not None and saved != config:
        raise ConfigError(f"study '{study.study_name}' holds trials of --config {saved}, not {config}; give another "
                          f"--study-name and --storage for a search from {config}")
    budget = study.user_attrs.get("steps_per_trial")
    if budget is not None and budget != steps_per_trial:
        raise ConfigError(f"study '{study.study_name}' holds trials of --steps-per-trial {budget}, not "
                          f"{steps_per_trial}; give that budget, or another --study-name and --storage")


PRUNE_AFTER_VALIDATIONS = 2  # the pruner judges a trial from its third validation on (half of its budget)


def trial_steps(base, cfg, base_steps, base_flops=None):
    """The steps of a trial: the training FLOPs of base_steps steps of the base config, at most twice base_steps
    (more would only buy a tiny model Python overhead). Below a tenth of base_steps (too_few_steps) the search
    skips the trial rather than give it more compute than the others."""
    base_flops = base_flops or step_flops(base)
    steps = round(base_steps * base_flops / step_flops(cfg))
    return max(1, min(2 * base_steps, steps))


def too_few_steps(steps, base_steps):
    """Whether a trial's budget is too short to train it (under a tenth of the base config's steps)."""
    return steps < base_steps // 10


class TrialInterrupted(Exception):
    """A stop signal ended a trial's training early (it has quicksaved)."""


class StopSignals(StopFlag):
    """The stop signals of the whole search (set by model.cli.stop_on_signals); a signal also stops the
    running trial, whose own StopFlag is ``trial``, after its step."""

    def __init__(self):
        super().__init__()
        self.trial = StopFlag()

    def request(self, reason):
        super().request(reason)
        self.trial.request(reason)


def search(study, base, frames, args, signals):
    """Add up to args.trials trials to the study -> the stop signal that ended the search, or None."""
    for _ in range(args.trials):
        # Processes sharing the study stop together once it holds --until finished trials.
        if signals or (args.until is not None and finished_trials(study) >= args.until):
            break
        trial = study.ask()
        try:
            study.tell(trial, objective(trial, base, frames, args, signals))
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except TrainingError as error:  # e.g. a non-finite loss: this trial failed, the search goes on
            print(f"trial {trial.number} failed: {error}", flush=True)
            study.tell(trial, state=TrialState.FAIL)
        except TrialInterrupted:
            study.tell(trial, state=TrialState.FAIL)
    return signals.reason


def finished_trials(study, worker=None):
    """How many trials (of one worker, or of all) ended, not counting those a stop signal interrupted or the
    search skipped as beyond the budget (they trained nothing)."""
    return sum(t.state.is_finished() and "stopped_by" not in t.user_attrs and "skipped" not in t.user_attrs
               and (worker is None or t.user_attrs.get("worker") == worker) for t in study.trials)


def choices(base):
    """The search space: ranges (lowest, highest) and lists of choices (those that fit the base config's
    frame size)."""
    height, width = base.model.image_height, base.model.image_width
    patches = [p for p in (8, 16) if height % p == 0 and width % p == 0] or [base.model.patch_size]
    return {"num_frames": (2, 4), "channels": [32, 64, 96, 128], "num_heads": [1, 2, 4], "layers": (2, 6),
            "patch_size": patches, "learning_rate": (1e-3, 1e-2)}


def sample(trial, base):
    """The overrides of one trial."""
    space = choices(base)
    trial.suggest_int("num_frames", *space["num_frames"])
    trial.suggest_categorical("channels", space["channels"])
    trial.suggest_categorical("num_heads", space["num_heads"])
    trial.suggest_int("layers", *space["layers"])
    trial.suggest_categorical("patch_size", space["patch_size"])
    trial.suggest_float("learning_rate", *space["learning_rate"], log=True)
    return overrides_of(trial.params)


def in_space(values, base):
    """Whether parameter values lie in the search space."""
    space = choices(base)
    return all(values[name] in allowed if isinstance(allowed, list) else allowed[0] <= values[name] <= allowed[1]
               for name, allowed in space.items())


def overrides_of(params):
    """Sampled parameters -> config overrides."""
    return {SEARCH_SPACE[name]: value for name, value in params.items()}


def trial_config(base, overrides, steps, name):
    """The config of one trial: the base with the sampled values, trained ``steps`` steps."""
    return with_budget(with_overrides(base, {**overrides, "model_path": name}), steps)


def objective(trial, base, frames, args, signals):
    """Train one trial; report every validation to the pruner -> the last validation loss.

    A trial that continues an interrupted one (user attribute continues_trial) trains in that trial's
    run folder, from its quicksave. A stop signal raises TrialInterrupted after the quicksave, with a
    copy of the trial waiting in the study to be continued.
    """
    number = trial.user_attrs.get("continues_trial", trial.number)
    name = f"{args.study_name}.trial{number}"
    run_dir = Path(args.runs_dir) / name
    resume = run_dir / QUICKSAVE if number != trial.number and (run_dir / QUICKSAVE).exists() else None
    overrides = sample(trial, base)
    steps = trial_steps(base, with_overrides(base, overrides), args.steps_per_trial, args.base_flops)
    cfg = trial_config(base, overrides, steps, name)
    if args.worker is not None:
        trial.set_user_attr("worker", args.worker)
    if too_few_steps(steps, args.steps_per_trial):  # pruned untrained: it would need more than the equal compute
        trial.set_user_attr("skipped", f"{plural(steps, 'step')} at equal FLOPs, under a tenth of the budget")
        print(f"trial {trial.number}: {trial.params}, skipped: {trial.user_attrs['skipped']}", flush=True)
        raise optuna.TrialPruned()
    stop = signals.trial = StopFlag()
    if signals:  # a signal since the search asked for this trial
        stop.request(signals.reason)

    def on_record(record):
        if "val_mse" in record:
            # The validations are numbered (every sixth of the budget: model.config.with_budget), so trials of
            # different step budgets meet the pruner at the same points.
            trial.report(record["val_mse"], record["step"] // cfg.training.validate_every)
            if trial.should_prune():
                stop.request("pruned")

    print(f"trial {trial.number}: {trial.params}, {plural(steps, 'step')}", flush=True)
    if resume is not None:
        print(f"trial {trial.number}: continues trial {number} from {resume} "
              f"(step {trial.user_attrs.get('continues_from_step')})", flush=True)
    result = train(cfg, Video.of_config(cfg, frames), run_dir, seed=args.seed, resume=resume,
                   ranks=Ranks(requested=stop), on_record=on_record, log=lambda line: None)
    if result["stopped"] not in (None, "pruned"):  # a stop signal; the training has quicksaved
        trial.set_user_attr("stopped_by", result["stopped"])
        trial.set_user_attr("stopped_at_step", result["step"])
        trial.study.enqueue_trial(trial.params, user_attrs={"continues_trial": number,
                                                            "continues_from_step": result["step"]})
        print(f"trial {trial.number}: stopped by {result['stopped']} after step {result['step']}; "
              f"it waits in the study to be continued from {result['quicksave']}", flush=True)
        raise TrialInterrupted(result["stopped"])
    val = result["val"] or {}
    trial.set_user_attr("seconds", result["seconds"])
    trial.set_user_attr("steps", result["step"])
    for key in ("mse", "l1", "psnr", *(f"{name}_{metric}" for name in ROLLS_OUT for metric in ("l1", "psnr"))):
        if key in val:
            trial.set_user_attr(f"val_{key}", val[key])
    print(f"trial {trial.number}: step {result['step']}, val PSNR {val.get('psnr', math.nan):.2f} dB "
          f"(copy-last {val.get('copy_last_psnr', math.nan):.2f}), {result['seconds']:.0f} s"
          f"{', pruned' if result['stopped'] else ''}", flush=True)
    if result["stopped"] == "pruned":
        raise optuna.TrialPruned()
    return val["mse"]


def write_report(study, base, args):
    """trials.csv, summary.md, param_importance.png and the best config."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trials = study.trials
    attr_names = sorted({key for t in trials for key in t.user_attrs})
    with open(out / "trials.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["number", "state", "value", *SEARCH_SPACE, *attr_names])
        for t in trials:
            writer.writerow([t.number, t.state.name, t.value, *(t.params.get(p) for p in SEARCH_SPACE),
                             *(t.user_attrs.get(a) for a in attr_names)])
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    # A continued trial's seconds include those of the trial it continues (the training's clock is resumed).
    seconds = sum(t.user_attrs.get("seconds", 0) for t in trials)
    skipped = sum("skipped" in t.user_attrs for t in trials)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in trials) - skipped
    # Baselines on the first trial's windows that recorded them.
    bars = "; ".join(f"{LABELS[key]}: {_number(_first_attr(trials, f'val_{key}_psnr'), 2)} dB" for key in ROLLS_OUT
                     if _first_attr(trials, f"val_{key}_psnr") is not None)
    lines = [f"# Hyperparameter search: {args.study_name}", "",
             f"Base config {args.config}; every trial trains the FLOPs of {plural(args.steps_per_trial, 'step')} of "
             f"it (steps column); objective: one-step MSE on the "
             f"validation part (lower is better), shown as PSNR in dB (baselines on the same windows: "
             f"{bars or 'none recorded'}). Trials: {len(trials)} ({len(complete)} complete, {pruned} pruned, {skipped} "
             f"skipped: equal FLOPs left them under a tenth of the steps); training time {seconds:.0f} s (one "
             f"thread per trial). A trial a stop signal interrupted is continued from its quicksave by a later "
             f"one (state 'stopped'); (base): the base config's own values.", "",
             "| trial | state | val PSNR | val L1 | steps | s | " + " | ".join(SHORT_NAMES.values()) + " |",
             "|---" * (6 + len(SEARCH_SPACE)) + "|"]
    for t in sorted(trials, key=lambda t: (t.value is None, t.value or 0)):
        attrs = t.user_attrs
        lines.append(f"| {_name(t)} | {_state(t, trials)} | {_number(attrs.get('val_psnr'), 2)} | "
                     f"{_number(attrs.get('val_l1'), 4)} | {_number(attrs.get('steps'), 0)} | {_number(attrs.get('seconds'), 0)} | "
                     + " | ".join(_param(t.params.get(p)) for p in SEARCH_SPACE) + " |")
    base_trial = next((t for t in trials if t.user_attrs.get("base_config")), None)
    facts = {"trials": len(trials), "complete": len(complete), "pruned": pruned, "skipped": skipped,
             "steps_per_trial": args.steps_per_trial, "seconds": seconds,
             "best": _facts(study.best_trial) if complete else None,
             "base": _facts(base_trial) if base_trial is not None and base_trial.value is not None else None}
    write_text_atomically(out / "study.json", json.dumps(facts, indent=2) + "\n")
    write_text_atomically(out / "table.md", short_table(trials))
    if complete:
        best = study.best_trial
        lines += ["", f"Best: trial {best.number}, val MSE {best.value:.5f} "
                      f"({_number(best.user_attrs.get('val_psnr'), 2)} dB): {best.params}"]
        write_best_config(best, base, args)
        lines.append(f"Written to {args.best_config}.")
    if len(complete) >= 2:
        importance(study, out / "param_importance.png")
        lines.append("Parameter importance (PED-ANOVA over the complete trials): param_importance.png")
    write_text_atomically(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def _facts(trial):
    return {"number": trial.number, "value": trial.value, "val_psnr": trial.user_attrs.get("val_psnr"),
            "steps": trial.user_attrs.get("steps"), "params": trial.params}


SHORT_TABLE_ROWS = 5


def short_table(trials):
    """The report's table: the SHORT_TABLE_ROWS best complete trials, and the base config's trial below them."""
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    rows = done[:SHORT_TABLE_ROWS] + [t for t in done[SHORT_TABLE_ROWS:] if t.user_attrs.get("base_config")]
    lines = ["| trial | val PSNR | steps | " + " | ".join(SHORT_NAMES.values()) + " |",
             "|---" * (3 + len(SEARCH_SPACE)) + "|"]
    for t in rows:
        lines.append(f"| {_name(t)} | {_number(t.user_attrs.get('val_psnr'), 2)} | {_number(t.user_attrs.get('steps'), 0)} | "
                     + " | ".join(_param(t.params.get(p)) for p in SEARCH_SPACE) + " |")
    return "\n".join(lines) + "\n"


def _name(trial):
    """A trial's number in the tables, marked (base) for the base config's own values."""
    return f"{trial.number} (base)" if trial.user_attrs.get("base_config") else str(trial.number)


def _state(trial, trials):
    """A trial's state in the table: complete, pruned, skipped (beyond the budget), or stopped by a signal and
    continued by a later trial."""
    if "skipped" in trial.user_attrs:
        return "skipped"
    if "stopped_by" in trial.user_attrs:
        original = trial.user_attrs.get("continues_trial", trial.number)
        later = [t.number for t in trials if t.number > trial.number
                 and t.user_attrs.get("continues_trial") == original]
        return f"stopped, continued by {later[0]}" if later else "stopped"
    return trial.state.name.lower()


def _first_attr(trials, name):
    return next((t.user_attrs[name] for t in trials if name in t.user_attrs), None)


def _param(value):
    if isinstance(value, float):
        return f"{value:.1e}"
    return "" if value is None else str(value)


def _number(value, digits):
    return "–" if value is None else f"{value:.{digits}f}"


def write_best_config(best, base, args):
    """The best trial's configuration as a config file on top of the base config (its sampled values and the
    step budget), the steps the FLOPs of the base config's whole run (as the trials had the FLOPs of
    --steps-per-trial steps of it), so the two compare at equal compute. model_path is the file's stem."""
    path = Path(args.best_config)
    overrides = {**overrides_of(best.params), "model_path": path.stem}
    steps = trial_steps(base, with_overrides(base, overrides), base.training.max_steps, args.base_flops)
    overrides["training.max_steps"] = steps
    with_overrides(base, overrides)  # validated before it is written
    nested = {"base": os.path.relpath(Path(args.config).resolve(), path.resolve().parent)}
    for key, value in overrides.items():
        *sections, name = key.split(".")
        target = nested
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value
    header = (f"// The best configuration of the Optuna study '{args.study_name}' (trial {best.number}, validation "
              f"MSE {best.value:.5f} after\n// {plural(best.user_attrs.get('steps', args.steps_per_trial), 'step')}), "
              f"written by python -m scripts.tune: {args.config} with the trial's values, trained\n// "
              f"{plural(steps, 'step')}, the FLOPs of the base's {plural(base.training.max_steps, 'step')}. Train it "
              f"with python -m model.main -cfg {path} --train\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, header + json.dumps(nested, indent=2) + "\n")


def importance(study, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = optuna.importance.get_param_importances(study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    names = list(values)[::-1]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.barh(names, [values[n] for n in names])
    ax.set(xlabel="importance (PED-ANOVA)", title=f"{study.study_name}: parameter importance")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
