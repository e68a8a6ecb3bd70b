"""Exercise 1 (d): why the RNN and the LSTM fail memorygen, tested at every delay.

    python -m scripts.exercise1_delays                     # ten seeds, about 4 min on one thread
    python -m scripts.exercise1_delays --results DIR --seeds 0 1 --epochs 5

The delay of a sequence is the number of steps from its token to the request. memorygen trains on tokens at
positions 0-14 with the request at step 29 (delays 15-29) and validates at positions 15-28 (delays 1-14).
Three explanations are put to the test, each over the seeds, with main.py's settings:

    fit       the same training tokens (the seed's draws, weights and batch order), the request at step 15, 22
              or 29 (sequence length 16, 23, 30: delays 1-15, 8-22, 15-29): training accuracy over every
              training sequence (data.every_sequence), and the seeds that fit it (fits: at least SOLVED).
              Request step 29 is the memorygen run itself. Also the gradient of the loss at initialisation
              with respect to the token's input step, at delay 15 and 29 over delay 1 (median over seeds):
              what reaches a token from the request
    readout   the memorygen model's recurrent part frozen, a new Linear readout fitted (fit_readout) on its
              last states for every sequence, at all 29 positions; accuracy at the validation positions
              against the model's own readout. High: the state still holds the token at short delays and
              only the readout never learned to read it
    clock     per RNN seed, the period of the oscillation of its hidden state under empty steps
              (oscillation_period) and the lag at which its right/wrong pattern over the 29 positions repeats
              best (band_lag); clock seeds: those that fitted part of their training set (training loss below
              data.FITTED of chance) with a state that oscillates

Reads --results/results.json (main.py's grid): its memorygen RNN validation accuracy at positions 15-17 and
18-24, on the clock seeds and the others, and whether each run retrained here is the grid's (the same final
training loss and validation accuracy). Writes --results/delays.json and delays.md.
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data import FITTED, SOLVED, every_sequence, make_task
from model.cli import CliParser, fail
from net import RNN, build_model
from train import RunConfig, train_model

MODELS = ("rnn", "lstm")
TRAIN_POSITIONS = range(15)  # memorygen's training positions for sequence length 30
EMPTY_STEPS, TRANSIENT = 600, 100  # oscillation_period: steps run, of which the first are discarded
STILL = 1e-2  # a hidden state whose units vary less than this over the empty steps has settled


def last_states(model, x):
    """The hidden states the readout reads, for x (N, T, I) -> (N, H), without gradients."""
    model.eval()
    with torch.no_grad():
        return model.last_state(x)


def fit_readout(states, y, num_classes, weight_decay=1e-4):
    """A new Linear readout fitted to states (N, H) and labels y (N,) by L-BFGS on the cross-entropy (a small
    weight decay keeps the weights finite where the classes separate) -> predicted classes (N,)."""
    readout = torch.nn.Linear(states.shape[1], num_classes)
    torch.nn.init.zeros_(readout.weight), torch.nn.init.zeros_(readout.bias)  # deterministic: no seed needed
    optimizer = torch.optim.LBFGS(readout.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(readout(states), y) + weight_decay * readout.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return readout(states).argmax(dim=1)


def accuracy_by_position(predicted, y, positions, sequence_length):
    """Accuracy at each position 0..T-2 (NaN where no sequence) of predictions over data.every_sequence."""
    correct = (np.asarray(predicted) == np.asarray(y)).astype(float)
    return [float(correct[positions == p].mean()) if (positions == p).any() else float("nan")
            for p in range(sequence_length - 1)]


def token_gradient(model, x, y, positions):
    """|d loss / d x| at each sequence's token step (N,): how much of the error reaches the token."""
    x = x.clone().requires_grad_(True)
    F.cross_entropy(model(x), y, reduction="sum").backward()
    return x.grad[torch.arange(len(x)), torch.as_tensor(positions)].norm(dim=1).numpy()  # (N,)


def oscillation_period(rnn, num_tokens):
    """(period in steps, amplitude) of the RNN's hidden state under empty steps from h = 0; period None
    where the state settles (amplitude below STILL).

    The amplitude is the largest standard deviation of a unit after TRANSIENT steps; the period that of the
    strongest frequency of the state's first principal component (Hann window, zero-padded FFT).
    """
    empty = torch.zeros(1, EMPTY_STEPS, num_tokens + 2)
    empty[..., 0] = 1  # category 0: the empty step
    states, h = [], empty.new_zeros(1, rnn.hidden_size)
    with torch.no_grad():
        for x_t in empty.unbind(dim=1):
            h = rnn.cell(x_t, h)
            states.append(h[0])
    path = torch.stack(states[TRANSIENT:]).numpy()  # (EMPTY_STEPS - TRANSIENT, H)
    amplitude = float(path.std(axis=0).max())
    if amplitude < STILL:
        return None, amplitude
    centred = path - path.mean(axis=0)
    component = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]  # (steps,)
    padded = 16 * len(component)
    spectrum = np.abs(np.fft.rfft(component * np.hanning(len(component)), n=padded))
    return padded / (int(spectrum[1:].argmax()) + 1), amplitude


def band_lag(right, lags=range(2, 15)):
    """The lag at which a right/wrong pattern over positions repeats best: the one (the smallest of equals)
    at which right[p] == right[p + lag] for the largest share of positions -> (lag, that share); (None, None)
    for a pattern of one kind only (right everywhere or nowhere), which repeats at every lag."""
    right = np.asarray(right, dtype=bool)
    if right.all() or not right.any():
        return None, None
    shares = [float(np.mean(right[:-lag] == right[lag:])) for lag in lags]
    best = int(np.argmax(shares))
    return lags[best], shares[best]


def pattern(right):
    """A right/wrong pattern as text, one character a position: '#' right, '.' not."""
    return "".join("#" if r else "." for r in right)


def stats(values):
    """mean, sample std, min and max of a list of numbers, and the list."""
    values = [float(v) for v in values]
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "per_seed": values}


def run_model(model_name, seed, request_steps, epochs, num_samples, num_tokens):
    """Train one model from one seed with the request at each step; analyse the memorygen one (step 29)."""
    result = {"fit": {}}
    for step in request_steps:
        cfg = RunConfig(task="memorygen", model=model_name, seed=seed, epochs=epochs, num_samples=num_samples,
                        num_tokens=num_tokens, sequence_length=step + 1)
        memorygen = step + 1 == 30
        model, history, _, _ = (train_model(cfg) if memorygen else
                                train_model(cfg, TRAIN_POSITIONS, TRAIN_POSITIONS))
        x, y, _ = map(torch.as_tensor, every_sequence(step + 1, TRAIN_POSITIONS, num_tokens))
        with torch.no_grad():
            train_accuracy = float((model(x).argmax(dim=1) == y).float().mean())
        result["fit"][str(step)] = {"train_accuracy": train_accuracy, "train_loss": history["train_loss"][-1]}
        if memorygen:
            result.update(analyse_memorygen(model, history, num_tokens))
            torch.manual_seed(seed)  # the initial weights the trained model started from
            initial = build_model(model_name, num_tokens, step + 1)
            result["gradient_at_init"] = gradient_by_delay(initial, num_tokens)
            result["refit_readout_at_init"] = readout_accuracy(initial, num_tokens, refit=True)
    return result


def gradient_by_delay(model, num_tokens, sequence_length=30, delays=(15, 29)):
    """The mean gradient reaching the token (token_gradient) at each of delays over that at delay 1."""
    x, y, positions = every_sequence(sequence_length, range(sequence_length - 1), num_tokens)
    gradient = token_gradient(model, torch.from_numpy(x), torch.from_numpy(y), positions)
    delay = sequence_length - 1 - positions
    return {d: float(gradient[delay == d].mean() / gradient[delay == 1].mean()) for d in delays}


def readout_accuracy(model, num_tokens, refit, by_position=False):
    """memorygen accuracy over every sequence, with the model's own readout or (refit) a new one fitted on its
    last states at all positions -> {"val_accuracy", "train_accuracy"}: means over memorygen's validation and
    training positions; or (by_position) the accuracy at each position 0..28."""
    sequence_length = 30
    x, y, positions = every_sequence(sequence_length, range(sequence_length - 1), num_tokens)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    if refit:
        predicted = fit_readout(last_states(model, x), y, num_tokens)
    else:
        model.eval()
        with torch.no_grad():
            predicted = model(x).argmax(dim=1)
    accuracy = accuracy_by_position(predicted.numpy(), y.numpy(), positions, sequence_length)
    if by_position:
        return accuracy
    train_positions, val_positions = make_task("memorygen", sequence_length)
    return {"val_accuracy": float(np.mean([accuracy[p] for p in val_positions])),
            "train_accuracy": float(np.mean([accuracy[p] for p in train_positions]))}


def analyse_memorygen(model, history, num_tokens):
    """The trained memorygen model at every position: own and refitted readout, and (RNN) its oscillation."""
    own_by_position = readout_accuracy(model, num_tokens, refit=False, by_position=True)
    result = {"fitted": bool(history["train_loss"][-1] < FITTED * np.log(num_tokens)),
              "final_accuracy": history["val_accuracy"][-1], "final_train_loss": history["train_loss"][-1],
              "own_readout": readout_accuracy(model, num_tokens, refit=False),
              "refit_readout": readout_accuracy(model, num_tokens, refit=True),
              "pattern": pattern(np.array(own_by_position) >= SOLVED)}
    if isinstance(model, RNN):
        period, amplitude = oscillation_period(model, num_tokens)
        lag, share = band_lag(np.array(own_by_position) >= SOLVED)
        result.update(oscillation_period=period, oscillation_amplitude=amplitude, band_lag=lag, band_lag_share=share)
    return result


def grid_curve(results, clock_seeds):
    """memorygen RNN validation accuracy of main.py's grid at positions 15-17 and 18-24: the mean over
    clock_seeds and over the other seeds."""
    runs = [r for r in results["runs"] if r["task"] == "memorygen" and r["model"] == "rnn"]
    out = {}
    for name, group in (("clock", [r for r in runs if r["seed"] in clock_seeds]),
                        ("others", [r for r in runs if r["seed"] not in clock_seeds])):
        out[name] = {"seeds": [r["seed"] for r in group]}
        for span, positions in (("15-17", range(15, 18)), ("18-24", range(18, 25))):
            values = [r["val_accuracy_by_position"][p] for r in group for p in positions
                      if r["val_accuracy_by_position"][p] is not None]  # None: no validation token there
            out[name][span] = float(np.mean(values)) if values else None
    return out


def same_as_grid(results, summary):
    """Per model, the seeds whose run retrained here is the grid's: the same final training loss and
    validation accuracy on memorygen (floating-point rounding can differ between machines)."""
    grid = {(r["model"], r["seed"]): (r["train_loss"][-1], r["final_accuracy"]) for r in results["runs"]
            if r["task"] == "memorygen"}
    return {model: [int(seed) for seed, run in entry["final"].items()
                    if grid.get((model, int(seed))) == (run["train_loss"], run["accuracy"])]
            for model, entry in summary.items()}


def summarise(per_seed, seeds, request_steps):
    """The per-seed results of one model -> its numbers over the seeds."""
    summary = {"fit": {}}
    for step in request_steps:
        accuracy = [per_seed[s]["fit"][str(step)]["train_accuracy"] for s in seeds]
        summary["fit"][str(step)] = {"delays": [step - TRAIN_POSITIONS[-1], step - TRAIN_POSITIONS[0]],
                                     "train_accuracy": stats(accuracy),
                                     "fits": int(sum(a >= SOLVED for a in accuracy))}
    for delay in ("15", "29"):
        ratios = [per_seed[s]["gradient_at_init"][int(delay)] for s in seeds]
        summary[f"gradient_at_init_delay_{delay}_over_1"] = {"median": float(np.median(ratios)), "per_seed": ratios}
    for readout in ("own_readout", "refit_readout", "refit_readout_at_init"):
        summary[readout] = {part: stats([per_seed[s][readout][part] for s in seeds])
                            for part in ("val_accuracy", "train_accuracy")}
    gain = [per_seed[s]["refit_readout"]["val_accuracy"] - per_seed[s]["own_readout"]["val_accuracy"] for s in seeds]
    summary["refit_gain"] = {**stats(gain), "seeds_gaining": int(sum(g > 0 for g in gain))}  # validation, per seed
    summary["fitted_seeds"] = [s for s in seeds if per_seed[s]["fitted"]]
    summary["final"] = {str(s): {"train_loss": per_seed[s]["final_train_loss"],
                                 "accuracy": per_seed[s]["final_accuracy"]} for s in seeds}
    summary["pattern"] = {str(s): per_seed[s]["pattern"] for s in seeds}
    if "oscillation_period" in per_seed[seeds[0]]:
        clock = [s for s in seeds if per_seed[s]["fitted"] and per_seed[s]["oscillation_period"] is not None]
        summary["oscillation"] = {key: {str(s): per_seed[s][key] for s in seeds} for key in (
            "oscillation_period", "oscillation_amplitude", "band_lag", "band_lag_share")}
        summary["clock"] = {"seeds": clock,
                            "period": [round(per_seed[s]["oscillation_period"], 1) for s in clock],
                            "band_lag": [per_seed[s]["band_lag"] for s in clock]}
    return summary


def markdown(analysis, command):
    """delays.md: the three tests as tables, and every seed's right/wrong pattern."""
    steps = analysis["request_steps"]
    lines = [f"# Exercise 1: the RNN and the LSTM at every delay\n\n`{command}`\n",
             f"Seeds {' '.join(map(str, analysis['seeds']))}; {analysis['epochs']} epochs, main.py's settings. "
             "Delay: steps from the token to the request. Training accuracy over every training sequence "
             f"(tokens at 0-14); fit: at least {SOLVED}. Gradient: at initialisation, of the loss with "
             "respect to the token's step, at delay 15 over delay 1 (median over seeds).\n",
             "| model | " + " | ".join(f"request at {s} (delays {s - 14}-{s})" for s in steps)
             + " | gradient, delay 15 / 1 |", "|---|" + "---:|" * (len(steps) + 1)]
    for model, entry in analysis["models"].items():
        fits = [entry["fit"][str(s)] for s in steps]
        cells = [f"{fit['train_accuracy']['mean']:.3f} ± {fit['train_accuracy']['std']:.3f} "
                 f"({fit['fits']}/{len(analysis['seeds'])} fit)" for fit in fits]
        lines.append(f"| {model.upper()} | " + " | ".join(cells)
                     + f" | {entry['gradient_at_init_delay_15_over_1']['median']:.1e} |")
    lines += ["", "memorygen (request at 29): accuracy over every sequence, own readout and a new readout fitted "
              "on the frozen model's last states at all 29 positions (also on the untrained model: what any "
              "recurrent state holds).\n",
              "| model | readout | validation (15-28) | training (0-14) |", "|---|---|---:|---:|"]
    for model, entry in analysis["models"].items():
        for readout, label in (("own_readout", "own"), ("refit_readout", "refitted"),
                               ("refit_readout_at_init", "refitted, initial weights")):
            lines.append(f"| {model.upper()} | {label} | " + " | ".join(
                f"{entry[readout][part]['mean']:.3f} ± {entry[readout][part]['std']:.3f}"
                for part in ("val_accuracy", "train_accuracy")) + " |")
    lines += ["", "Refitted minus own readout, validation, per seed: " + "; ".join(
        f"{model.upper()} {entry['refit_gain']['min']:+.3f} to {entry['refit_gain']['max']:+.3f} "
        f"({entry['refit_gain']['seeds_gaining']} of {len(analysis['seeds'])} seeds gain)"
        for model, entry in analysis["models"].items()) + "."]
    rnn = analysis["models"].get("rnn")
    if rnn:
        oscillation = rnn["oscillation"]
        lines += ["", "RNN on memorygen: the period of its hidden state's oscillation under empty steps (– where the "
                  "state settles) and the lag at which its right/wrong pattern over the 29 positions repeats best. "
                  f"Fitted: training loss below {FITTED} of chance; clock seeds: fitted, with an oscillating state: "
                  f"{' '.join(map(str, rnn['clock']['seeds'])) or 'none'}.\n",
                  "| seed | fitted | period | amplitude | band lag | share agreeing |",
                  "|---:|---|---:|---:|---:|---:|"]
        for seed in map(str, analysis["seeds"]):
            period = oscillation["oscillation_period"][seed]
            lag, share = oscillation["band_lag"][seed], oscillation["band_lag_share"][seed]
            lines.append(f"| {seed} | {'yes' if int(seed) in rnn['fitted_seeds'] else 'no'} | "
                         f"{'–' if period is None else f'{period:.1f}'} | "
                         f"{oscillation['oscillation_amplitude'][seed]:.2f} | {'–' if lag is None else lag} | "
                         f"{'–' if share is None else f'{share:.2f}'} |")
    grid = analysis.get("grid")
    if grid:
        def group(name):
            entry = grid[name]
            spans = [f", at {span} {'–' if entry[span] is None else format(entry[span], '.3f')}"
                     for span in ("15-17", "18-24")]
            return f"seeds {' '.join(map(str, entry['seeds'])) or 'none'}" + "".join(spans)

        lines += ["", f"main.py's grid (results.json), memorygen RNN validation accuracy: clock {group('clock')}; "
                  f"the others: {group('others')}. The runs retrained here are the grid's for seeds "
                  + "; ".join(f"{m.upper()} {' '.join(map(str, same)) or 'none'}"
                              for m, same in analysis["same_as_grid"].items()) + "."]
    lines += ["", "Right (#) or not (.) at each position 0-28, own readout, memorygen:", "", "```"]
    for model, entry in analysis["models"].items():
        lines += [f"{model.upper()} seed {seed}: {text}" for seed, text in entry["pattern"].items()]
    return "\n".join(lines) + "\n```\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = CliParser(prog="python -m scripts.exercise1_delays", description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results/timeseries", help="folder with main.py's results.json")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)), metavar="S")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--num-samples", type=int, default=1000, help="training samples per run")
    parser.add_argument("--request-steps", nargs="+", type=int, default=[15, 22, 29], metavar="STEP",
                        help="the request's step; 29 (memorygen's) must be one")
    args = parser.parse_args(argv)
    steps = sorted(set(args.request_steps))
    if 29 not in steps or steps[0] <= TRAIN_POSITIONS[-1]:
        return fail(f"--request-steps must include 29 and lie after position {TRAIN_POSITIONS[-1]}, got "
                    f"{' '.join(map(str, args.request_steps))}", 2)
    folder = Path(args.results)
    try:
        results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        return fail(f"cannot read {folder / 'results.json'}: {error}; run python main.py --out {folder} first", 1)
    num_tokens = results["config"]["num_tokens"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as main.py trains each run
    try:
        summary = {}
        for model in args.models:
            per_seed = {}
            for seed in args.seeds:
                per_seed[seed] = run_model(model, seed, steps, args.epochs, args.num_samples, num_tokens)
                print(f"{model} seed {seed}: training accuracy " + ", ".join(
                    f"{per_seed[seed]['fit'][str(s)]['train_accuracy']:.3f} (request at {s})" for s in steps),
                    flush=True)
            summary[model] = summarise(per_seed, args.seeds, steps)
    finally:
        torch.set_num_threads(threads)
    grid = grid_curve(results, summary["rnn"]["clock"]["seeds"] if "rnn" in summary else [])
    _, val_positions = make_task("memorygen", 30)  # the request at step 29
    command = " ".join(["python -m scripts.exercise1_delays", *argv])
    analysis = {"command": command, "seeds": args.seeds, "epochs": args.epochs, "num_samples": args.num_samples,
                "request_steps": steps, "train_positions": [TRAIN_POSITIONS[0], TRAIN_POSITIONS[-1]],
                "val_delays": [29 - val_positions[-1], 29 - val_positions[0]],
                "fitted_loss_share_of_chance": FITTED, "solved": SOLVED, "models": summary, "grid": grid,
                "same_as_grid": same_as_grid(results, summary)}
    (folder / "delays.json").write_text(json.dumps(analysis, indent=1) + "\n", encoding="utf-8")
    (folder / "delays.md").write_text(markdown(analysis, command), encoding="utf-8")
    print(f"wrote {folder / 'delays.json'}, {folder / 'delays.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
