"""The memory-task data: one-hot invariants, allowed positions, task splits, reproducibility."""

import numpy as np
import pytest

from data import TASKS, generate_memory_task_data, make_task, token_positions


def generate(num_samples=500, sequence_length=30, allowed_positions=range(29), num_tokens=3, seed=0):
    return generate_memory_task_data(
        num_samples, sequence_length, allowed_positions, num_tokens, np.random.default_rng(seed)
    )


@pytest.mark.parametrize("sequence_length, num_tokens", [(30, 3), (3, 1), (10, 5)])
def test_one_hot_invariants(sequence_length, num_tokens):
    positions = range(sequence_length - 1)
    x, y = generate(sequence_length=sequence_length, allowed_positions=positions, num_tokens=num_tokens)
    n = len(x)
    assert x.shape == (n, sequence_length, num_tokens + 2) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    assert set(np.unique(x)) == {0.0, 1.0}
    assert (x.sum(axis=2) == 1).all()  # exactly one category per step
    category = x.argmax(axis=2)  # (N, T): 0 empty, 1..num_tokens, num_tokens + 1 request
    assert (category[:, -1] == num_tokens + 1).all()  # the request, and only the request, at the last step
    assert (category[:, :-1] <= num_tokens).all()
    is_token = (category >= 1) & (category <= num_tokens)
    assert (is_token.sum(axis=1) == 1).all()  # one token per sequence, never on the request step
    assert (category[np.arange(n), token_positions(x)] == y + 1).all()  # the label is the token
    assert set(np.unique(y)) == set(range(num_tokens))


def test_allowed_positions_are_honoured():
    allowed = [0, 4, 7, 28]
    x, _ = generate(num_samples=400, allowed_positions=allowed)
    assert set(token_positions(x)) == set(allowed)


def test_reproducible_for_a_seed():
    x1, y1 = generate(seed=3)
    x2, y2 = generate(seed=3)
    x3, y3 = generate(seed=4)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)


@pytest.mark.parametrize("sequence_length", [3, 4, 29, 30, 31])
def test_task_splits(sequence_length):
    candidates = set(range(sequence_length - 1))
    train, val = make_task("memory", sequence_length)
    assert set(train) == set(val) == candidates
    first, second = make_task("memorygen", sequence_length)
    assert first and second and set(first) | set(second) == candidates and not set(first) & set(second)
    assert max(first) < min(second)  # the sheet: train on the first half, validate on the second
    assert make_task("memorygen_reverse", sequence_length) == (second, first)  # the template's direction


def test_memorygen_halves_for_the_default_length():
    train, val = make_task("memorygen", 30)
    assert (train, val) == (range(0, 15), range(15, 29))


def test_all_tasks_generate():
    for task in TASKS:
        for positions in make_task(task, 30):
            x, _ = generate(num_samples=50, allowed_positions=positions)
            assert set(token_positions(x)) <= set(positions)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sequence_length": 2, "allowed_positions": [0]}, "sequence_length"),
        ({"num_tokens": 0}, "num_tokens"),
        ({"num_samples": 0}, "num_samples"),
        ({"allowed_positions": []}, "empty"),
        ({"allowed_positions": [29]}, "request"),
        ({"allowed_positions": [-1]}, "0..28"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(**kwargs)


def test_rng_is_required_and_tasks_are_checked():
    with pytest.raises(ValueError, match="rng"):
        generate_memory_task_data(10, 30, range(29), 3, None)
    with pytest.raises(ValueError, match="unknown task"):
        make_task("memorise", 30)
    with pytest.raises(ValueError, match="sequence_length"):
        make_task("memory", 2)
