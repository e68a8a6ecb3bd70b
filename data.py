"""Exercise 1 data: the memory task.

A sequence of `sequence_length` steps is empty except for one token (1..num_tokens) at some position and
the request token at the last step; the model has to answer with the token it saw. Every step is a one-hot
vector over num_tokens + 2 categories, in this order:

    0 = empty, 1..num_tokens = the tokens, num_tokens + 1 = request

so with the default 3 tokens a step has 5 features. The class label is token - 1 (0..num_tokens-1).

Tasks differ only in which positions the token may take in training and in validation (make_task):
    memory             anywhere before the request, in training and validation alike (there are only
                       (T - 1) * num_tokens distinct sequences, so validation repeats training sequences:
                       this task tests memory, memorygen tests generalisation to unseen positions)
    memorygen          training in the first half of the sequence, validation in the second (the sheet's text)
    memorygen_reverse  training in the second half, validation in the first (the course template's code)
"""

import numpy as np

TASKS = ("memory", "memorygen", "memorygen_reverse")
SOLVED = 0.99  # validation accuracy at which a run counts as having solved its task
FITTED = 0.75  # a seed fitted its training set: final training loss below this share of chance (ln tokens)


def make_task(task, sequence_length):
    """The token positions allowed in training and in validation: (train_positions, val_positions), two ranges.

    Candidate positions are 0 .. sequence_length - 2 (the last step holds the request). The halves are the
    halves of the sequence, split at sequence_length // 2: first half 0 .. T//2 - 1, second half
    T//2 .. T - 2. For an even T the request step belongs to the second half, so of the odd number T - 1 of
    candidates the middle one, T//2 - 1, goes to the first half: for T = 30, positions 0..14 (15) and 15..28 (14).
    """
    if sequence_length < 3:
        raise ValueError(f"sequence_length must be at least 3, got {sequence_length}")
    anywhere = range(sequence_length - 1)
    first_half, second_half = range(sequence_length // 2), range(sequence_length // 2, sequence_length - 1)
    if task == "memory":
        return anywhere, anywhere
    if task == "memorygen":
        return first_half, second_half
    if task == "memorygen_reverse":
        return second_half, first_half
    raise ValueError(f"unknown task {task!r}, expected one of {TASKS}")


def generate_memory_task_data(num_samples, sequence_length, allowed_positions, num_tokens, rng):
    """num_samples memory-task sequences, the token's position drawn uniformly from allowed_positions.

    rng: a numpy Generator (or a seed for one); all randomness comes from it.
    Returns x float32 (N, T, num_tokens + 2), one-hot per step, and y int64 (N,), the token's class 0..num_tokens-1.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if sequence_length < 3:
        raise ValueError(f"sequence_length must be at least 3, got {sequence_length}")
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be at least 1, got {num_tokens}")
    positions = np.unique(np.asarray(allowed_positions, dtype=np.int64))
    if positions.size == 0:
        raise ValueError("allowed_positions is empty")
    if positions[0] < 0 or positions[-1] > sequence_length - 2:
        raise ValueError(
            f"allowed_positions must lie in 0..{sequence_length - 2} (the last step holds the request token), "
            f"got {positions[0]}..{positions[-1]}"
        )
    if rng is None:
        raise ValueError("rng is required: pass a numpy Generator or a seed, so the data are reproducible")
    rng = np.random.default_rng(rng)
    request = num_tokens + 1

    position = rng.choice(positions, size=num_samples)  # (N,)
    token = rng.integers(1, num_tokens + 1, size=num_samples)  # (N,) in 1..num_tokens
    category = np.zeros((num_samples, sequence_length), dtype=np.int64)  # (N, T), all empty
    category[np.arange(num_samples), position] = token
    category[:, -1] = request
    x = np.eye(num_tokens + 2, dtype=np.float32)[category]  # (N, T, num_tokens + 2)
    return x, token - 1


def every_sequence(sequence_length, positions, num_tokens):
    """Every distinct memory-task sequence with its token at one of positions: each token at each position once.

    The task's sequences are deterministic given the token and its position, so these are all there are
    (len(positions) * num_tokens of them); an accuracy over them weighs every position and token alike.
    Returns x float32 (N, T, num_tokens + 2), y int64 (N,) and the token's position (N,), ordered by position,
    then token.
    """
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size == 0 or positions.min() < 0 or positions.max() > sequence_length - 2:
        raise ValueError(f"positions must be non-empty and lie in 0..{sequence_length - 2}")
    position = np.repeat(positions, num_tokens)  # (N,)
    token = np.tile(np.arange(1, num_tokens + 1), len(positions))  # (N,)
    category = np.zeros((len(position), sequence_length), dtype=np.int64)  # (N, T), all empty
    category[np.arange(len(position)), position] = token
    category[:, -1] = num_tokens + 1  # the request
    return np.eye(num_tokens + 2, dtype=np.float32)[category], token - 1, position


def token_positions(x):
    """The step holding the token in each sequence: x (N, T, num_tokens + 2) one-hot -> (N,) int64."""
    x = np.asarray(x)
    is_token = x[:, :, 1:-1].any(axis=2)  # (N, T): a token category is set
    return is_token.argmax(axis=1).astype(np.int64)


def epochs_to_solve(val_accuracy):
    """Validation accuracy per epoch -> the first epoch (1-based) that reaches SOLVED, or None."""
    return next((epoch for epoch, value in enumerate(val_accuracy, 1) if value >= SOLVED), None)


def seed_summary(runs):
    """Runs of one task and model (main.py's records) -> their final numbers over the seeds.

    Mean, sample std (0 for one seed), min and max of the final validation accuracy; mean and std of the
    final losses; how many seeds solved the task at some epoch (the median, first and last of their first such
    epochs) and how many are at SOLVED at the end; CPU seconds.
    """
    def mean_std(values):
        values = np.asarray(values, dtype=float)
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0

    accuracy = [run["final_accuracy"] for run in runs]
    solved = [e for e in (epochs_to_solve(run["val_accuracy"]) for run in runs) if e is not None]
    (acc_mean, acc_std), (val_mean, val_std), (train_mean, train_std) = (
        mean_std(accuracy), mean_std([run["val_loss"][-1] for run in runs]),
        mean_std([run["train_loss"][-1] for run in runs]))
    return {"seeds": len(runs), "final_accuracy_mean": acc_mean, "final_accuracy_std": acc_std,
            "final_accuracy_min": min(accuracy), "final_accuracy_max": max(accuracy),
            "final_val_loss_mean": val_mean, "final_val_loss_std": val_std,
            "final_train_loss_mean": train_mean, "final_train_loss_std": train_std,
            "solved": len(solved), "median_epochs_to_solve": float(np.median(solved)) if solved else None,
            "epochs_to_solve_min": min(solved) if solved else None, "epochs_to_solve_max": max(solved) if solved else None,
            "solved_at_end": sum(value >= SOLVED for value in accuracy),
            "cpu_seconds_mean": float(np.mean([run["cpu_seconds"] for run in runs]))}
