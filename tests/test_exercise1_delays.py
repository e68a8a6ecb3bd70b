"""scripts/exercise1_delays: every sequence, the state the readout reads, the refitted readout, the RNN's
oscillation period and band lag, and the script's files."""
import json
import math

import numpy as np
import pytest
import torch

import train
from data import every_sequence, token_positions
from net import RNN, build_model
from scripts import exercise1_delays


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_sequence_holds_each_token_at_each_position_once():
    x, y, positions = every_sequence(10, range(3, 6), 3)
    assert x.shape == (9, 10, 5) and y.tolist() == [0, 1, 2] * 3 and positions.tolist() == [3, 3, 3, 4, 4, 4, 5, 5, 5]
    assert token_positions(x).tolist() == positions.tolist()
    assert (x[np.arange(9), positions].argmax(axis=1) == y + 1).all()  # the token's category at its step
    assert (x[:, -1].argmax(axis=1) == 4).all() and x.sum() == 9 * 10  # the request last, one-hot everywhere
    with pytest.raises(ValueError, match="0..8"):
        every_sequence(10, [9], 3)  # the last step holds the request


@pytest.mark.parametrize("model", ["rnn", "lstm"])
@pytest.mark.parametrize("impl", ["own", "torch"])
def test_the_readout_reads_the_last_state(model, impl):
    torch.manual_seed(0)
    net = build_model(model, 3, 12, impl)
    x = torch.from_numpy(every_sequence(12, range(11), 3)[0])
    assert torch.equal(net(x), net.readout(net.last_state(x)))


def rotating_rnn(gain, period):
    """An RNN of two units whose recurrent weight is a rotation by 2 pi / period, scaled by gain, driven by a
    constant bias: above gain 1 its state circles with about that period, below it settles."""
    rnn = RNN(5, 2, 3)
    angle = 2 * math.pi / period
    with torch.no_grad():
        rnn.cell.linear.weight.zero_()
        rnn.cell.linear.weight[:, 5:] = gain * torch.tensor([[math.cos(angle), -math.sin(angle)],
                                                             [math.sin(angle), math.cos(angle)]])
        rnn.cell.linear.bias.copy_(torch.tensor([0.1, 0.0]))
    return rnn


@pytest.mark.parametrize("period", [6, 10])
def test_the_oscillation_period_of_a_rotating_state(period):
    found, amplitude = exercise1_delays.oscillation_period(rotating_rnn(1.5, period), 3)
    assert found == pytest.approx(period, abs=0.5) and amplitude > 0.5
    assert exercise1_delays.oscillation_period(rotating_rnn(0.5, period), 3)[0] is None  # it settles


def test_band_lag_finds_the_period_of_a_pattern():
    right = [p % 10 < 5 for p in range(29)]  # five right, five wrong, again and again
    assert exercise1_delays.band_lag(right) == (10, 1.0)
    assert exercise1_delays.band_lag([p % 6 < 2 for p in range(29)])[0] == 6
    assert exercise1_delays.band_lag([False] * 29) == (None, None)  # nothing right: no pattern to repeat
    assert exercise1_delays.pattern([True, False, True]) == "#.#"


def test_a_refitted_readout_reads_what_the_states_hold():
    y = torch.tensor([0, 1, 2] * 4)
    noise = 0.1 * torch.randn(12, 3, generator=torch.Generator().manual_seed(0))
    separable = torch.nn.functional.one_hot(y, 3).float() + noise
    assert torch.equal(exercise1_delays.fit_readout(separable, y, 3), y)
    same = torch.ones(12, 3)  # a state that holds nothing: one answer for all
    assert exercise1_delays.fit_readout(same, y, 3).unique().numel() == 1


def test_at_initialisation_little_gradient_reaches_a_distant_token():
    torch.manual_seed(0)
    ratio = exercise1_delays.gradient_by_delay(build_model("rnn", 3, 30), 3)
    assert ratio[29] < ratio[15] < 1e-2  # the error shrinks with every step it passes back


def grid(tmp_path):
    """main.py's results.json of memorygen RNN and LSTM runs of seed 0, 1 epoch on 32 samples."""
    runs = [train.train_run(train.RunConfig(task="memorygen", model=model, seed=0, epochs=1, num_samples=32))[0]
            for model in ("rnn", "lstm")]
    (tmp_path / "results.json").write_text(json.dumps({"config": {"num_tokens": 3}, "runs": runs}))
    return runs[0]["val_accuracy_by_position"]


def test_the_script_writes_its_three_tests(tmp_path, capsys):
    by_position = grid(tmp_path)
    argv = ["--results", str(tmp_path), "--seeds", "0", "--epochs", "1", "--num-samples", "32"]
    assert exercise1_delays.main(argv) == 0
    analysis = json.loads((tmp_path / "delays.json").read_text())
    assert analysis["request_steps"] == [15, 22, 29] and analysis["val_delays"] == [1, 14]
    assert analysis["command"].endswith("--num-samples 32")
    for model in ("rnn", "lstm"):
        entry = analysis["models"][model]
        assert [entry["fit"][s]["delays"] for s in ("15", "22", "29")] == [[1, 15], [8, 22], [15, 29]]
        assert 0 <= entry["fit"]["29"]["train_accuracy"]["mean"] <= 1
        assert {"own_readout", "refit_readout", "refit_readout_at_init"} <= entry.keys()
        assert len(entry["pattern"]["0"]) == 29
    assert analysis["models"]["rnn"]["clock"]["seeds"] == []  # one epoch: nothing fitted
    def mean(values):  # over the positions with a validation token (32 samples leave some without)
        return pytest.approx(np.mean([v for v in values if v is not None]))

    assert analysis["grid"]["others"] == {"seeds": [0], "15-17": mean(by_position[15:18]),
                                          "18-24": mean(by_position[18:25])}
    assert analysis["same_as_grid"] == {"rnn": [0], "lstm": [0]}  # retrained from the seed: the grid's runs
    text = (tmp_path / "delays.md").read_text()
    assert "| RNN | own |" in text and "request at 15 (delays 1-15)" in text
    assert exercise1_delays.main([*argv, "--request-steps", "12", "29"]) == 2  # a token after the request
    assert exercise1_delays.main(["--results", str(tmp_path / "nowhere")]) == 1
    assert "error:" in capsys.readouterr().err
