"""Exercise 1 (time series): the training of one run, written once; main.py runs a grid of them.

A run trains one model on one task from one seed (the seed fixes the data, the initial weights and the batch
order) with Adam on the cross-entropy of the logits at the last step, and validates after every epoch:

    train_model(cfg)   the run's data from its seed, its model, train() -> model, history, validation data
    train_run(cfg)     train_model, then the run's record: final accuracy, accuracy by token position, timings
    train(...)         the one training loop; evaluate(...) the validation it calls

Nothing here draws: worker processes of `python main.py --jobs N` import this module and never matplotlib.
"""

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from data import generate_memory_task_data, make_task, token_positions
from net import build_model


@torch.no_grad()
def evaluate(model, x, y):
    """Mean cross-entropy, accuracy (both floats) and class probabilities (N, O) on x (N, T, I), y (N,)."""
    model.eval()
    logits = model(x)  # (N, O)
    loss = F.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(dim=1) == y).sum().item() / len(y)  # a Python float: prints as 0.987
    return loss, accuracy, logits.softmax(dim=1)


def train(model, train_data, val_data, *, epochs, lr, batch_size, generator, progress=None):
    """The one training loop: Adam on the cross-entropy, shuffled mini-batches, validation after every epoch.

    train_data, val_data: (x (N, T, I) float, y (N,) int64) on the model's device.
    generator: a torch.Generator fixing the batch order. progress: a tqdm description, or None for silence.
    Returns the history: per epoch the mean training loss, the validation loss and the validation accuracy.
    """
    x, y = train_data
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = {"train_loss": [], "val_loss": [], "val_accuracy": []}
    for _ in tqdm(range(epochs), desc=progress, disable=progress is None, leave=False, unit="epoch"):
        model.train()
        order = torch.randperm(len(x), generator=generator).to(x.device)
        total = torch.zeros((), device=x.device)  # summed on the device: no host sync per batch
        for batch in order.split(batch_size):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(batch)
        val_loss, val_accuracy, _ = evaluate(model, *val_data)
        history["train_loss"].append(total.item() / len(x))
        history["val_loss"].append(val_loss)
        history["val_accuracy"].append(val_accuracy)
    return history


def accuracy_by_position(correct, positions, sequence_length):
    """Accuracy per token position 0..T-2 from correct (N,) bool and positions (N,); None where no sample
    has its token at that position (memorygen validates on half of them)."""
    hits = [correct[positions == p] for p in range(sequence_length - 1)]
    return [float(h.mean()) if h.size else None for h in hits]


def count_by_position(positions, sequence_length):
    """How many samples have their token at each position 0..T-2, from positions (N,) -> list of ints."""
    return np.bincount(positions, minlength=sequence_length - 1).tolist()


@dataclass(frozen=True)
class RunConfig:
    """Everything one run depends on; picklable, so runs can go to worker processes."""

    task: str
    model: str
    seed: int
    impl: str = "own"
    epochs: int = 50
    lr: float = 5e-4
    batch_size: int = 32
    num_samples: int = 1000
    sequence_length: int = 30
    num_tokens: int = 3
    device: str = "cpu"
    figure_dir: str = "out/timeseries"
    show_progress: bool = False


def train_run(cfg):
    """Train and validate one run; return its record and the validation example its prediction figure shows.

    This is the part of main.run() that goes to worker processes with --jobs > 1: no figures (matplotlib is
    never imported there), and the example is small (one sequence, its target, the predicted probabilities).
    """
    model, history, (x_val, y_val), (wall_seconds, cpu_seconds) = train_model(cfg)
    _, accuracy, probabilities = evaluate(model, torch.from_numpy(x_val).to(cfg.device),
                                          torch.from_numpy(y_val).to(cfg.device))
    probabilities = probabilities.cpu().numpy()  # (N, O)
    correct = probabilities.argmax(axis=1) == y_val  # (N,)

    token_steps = token_positions(x_val)  # (N,) where each validation sequence has its token
    per_position = accuracy_by_position(correct, token_steps, cfg.sequence_length)
    record = {
        "task": cfg.task,
        "model": cfg.model,
        "impl": cfg.impl,
        "seed": cfg.seed,
        "num_params": sum(p.numel() for p in model.parameters()),
        **history,
        "final_accuracy": accuracy,
        "val_accuracy_by_position": per_position,
        "val_count_by_position": count_by_position(token_steps, cfg.sequence_length),
        "wall_seconds": wall_seconds,  # of the training loop (data generation and figures not included)
        "cpu_seconds": cpu_seconds,  # the same loop's CPU time (one thread): what a busy machine does not inflate
    }
    example = {"x": x_val[0].copy(), "target": int(y_val[0]), "probabilities": probabilities[0].copy()}
    return record, example


def train_model(cfg, train_positions=None, val_positions=None):
    """Generate one run's data from its seed, train its model -> (model, history, (x_val, y_val) as numpy,
    (wall seconds, CPU seconds) of the training loop).

    The token positions default to the task's (make_task); others (scripts.exercise1_delays) keep the draws of
    the data, the initial weights and the batch order, which all follow from the seed alone.
    """
    device = torch.device(cfg.device)
    task_train, task_val = make_task(cfg.task, cfg.sequence_length)
    train_positions = task_train if train_positions is None else train_positions
    val_positions = task_val if val_positions is None else val_positions
    rng = np.random.default_rng(cfg.seed)
    x_train, y_train = generate_memory_task_data(
        cfg.num_samples, cfg.sequence_length, train_positions, cfg.num_tokens, rng
    )
    x_val, y_val = generate_memory_task_data(cfg.num_samples, cfg.sequence_length, val_positions, cfg.num_tokens, rng)
    train_data = (torch.from_numpy(x_train).to(device), torch.from_numpy(y_train).to(device))
    val_data = (torch.from_numpy(x_val).to(device), torch.from_numpy(y_val).to(device))

    torch.manual_seed(cfg.seed)  # the initial weights
    model = build_model(cfg.model, cfg.num_tokens, cfg.sequence_length, cfg.impl).to(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    history = train(
        model,
        train_data,
        val_data,
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        generator=torch.Generator().manual_seed(cfg.seed),
        progress=f"{cfg.task} {cfg.model} seed {cfg.seed}" if cfg.show_progress else None,
    )
    seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return model, history, (x_val, y_val), seconds
