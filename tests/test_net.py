"""The hand-written RNNCell, LSTMCell, Conv1d and TCN against PyTorch's own modules: values and gradients."""

import pytest
import torch
from torch import nn

from net import LSTM, RNN, TCN, Conv1d, LSTMCell, RNNCell, tcn_kernel_slots, tcn_num_layers

B, I, H, T = 4, 5, 7, 30
DTYPES = [torch.float32, torch.float64]


def assert_close(actual, expected):
    tol = 1e-5 if expected.dtype == torch.float32 else 1e-10
    torch.testing.assert_close(actual, expected, atol=tol, rtol=tol)


def leaf(*shape, dtype):
    return torch.randn(*shape, dtype=dtype, requires_grad=True)


def backward_of(outputs, seed=1):
    """Backpropagate a random projection of the outputs, so every output element gets its own weight."""
    g = torch.Generator().manual_seed(seed)
    sum(((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outputs)).backward()


def split_grad(cell, m):
    """The own cell's Linear gradients, laid out like the PyTorch cell's (W_ih, W_hh, b)."""
    w_x, w_h = cell.linear.weight.grad.split([m.input_size, m.hidden_size], dim=1)
    return w_x, w_h, cell.linear.bias.grad


def assert_cell_grads_equal(cell, m):
    w_x, w_h, b = split_grad(cell, m)
    assert_close(w_x, m.weight_ih.grad)
    assert_close(w_h, m.weight_hh.grad)
    assert_close(b, m.bias_ih.grad)
    assert_close(b, m.bias_hh.grad)  # the two biases enter as a sum: equal gradients


@pytest.mark.parametrize("dtype", DTYPES)
def test_rnn_cell_step_matches_torch(dtype):
    torch.manual_seed(0)
    m = nn.RNNCell(I, H, dtype=dtype)
    cell = RNNCell.from_torch(m)
    x, h = leaf(B, I, dtype=dtype), leaf(B, H, dtype=dtype)
    x2, h2 = x.detach().clone().requires_grad_(), h.detach().clone().requires_grad_()

    out, expected = cell(x, h), m(x2, h2)
    assert out.shape == (B, H)
    assert_close(out, expected)
    backward_of([out])
    backward_of([expected])
    assert_close(x.grad, x2.grad)
    assert_close(h.grad, h2.grad)
    assert_cell_grads_equal(cell, m)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_cell_step_matches_torch(dtype):
    torch.manual_seed(0)
    m = nn.LSTMCell(I, H, dtype=dtype)
    cell = LSTMCell.from_torch(m)
    x, h, c = (leaf(B, n, dtype=dtype) for n in (I, H, H))
    x2, h2, c2 = (t.detach().clone().requires_grad_() for t in (x, h, c))

    out, expected = cell(x, (h, c)), m(x2, (h2, c2))
    assert [o.shape for o in out] == [(B, H), (B, H)]
    for o, e in zip(out, expected):
        assert_close(o, e)
    backward_of(out)
    backward_of(expected)
    for a, b in [(x, x2), (h, h2), (c, c2)]:
        assert_close(a.grad, b.grad)
    assert_cell_grads_equal(cell, m)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["step by step", "forward_sequence"])
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_cells_over_a_30_step_sequence_match_torch(kind, path, dtype):
    torch.manual_seed(0)
    m = nn.RNNCell(I, H, dtype=dtype) if kind == "rnn" else nn.LSTMCell(I, H, dtype=dtype)
    cell = (RNNCell if kind == "rnn" else LSTMCell).from_torch(m)
    x = leaf(B, T, I, dtype=dtype)
    x2 = x.detach().clone().requires_grad_()
    zero = torch.zeros(B, H, dtype=dtype)
    state = expected = (zero, zero) if kind == "lstm" else zero

    for x_t in x2.unbind(dim=1):
        expected = m(x_t, expected)
    if path == "forward_sequence":
        state = cell.forward_sequence(x, state)
    else:
        for x_t in x.unbind(dim=1):
            state = cell(x_t, state)

    state, expected = (state, expected) if kind == "lstm" else ((state,), (expected,))
    for s, e in zip(state, expected):
        assert_close(s, e)
    backward_of(state)
    backward_of(expected)
    assert_close(x.grad, x2.grad)
    assert_cell_grads_equal(cell, m)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kernel_size, stride, length",
    [(1, 1, 5), (2, 1, 7), (3, 1, 3), (3, 3, 30), (3, 3, 31), (3, 2, 10), (4, 3, 4), (5, 2, 17), (7, 4, 30)],
)
def test_conv1d_matches_torch(kernel_size, stride, length, dtype):
    torch.manual_seed(0)
    m = nn.Conv1d(4, 6, kernel_size, stride=stride, dtype=dtype)
    conv = Conv1d.from_torch(m)
    x = leaf(B, 4, length, dtype=dtype)
    x2 = x.detach().clone().requires_grad_()

    out, expected = conv(x), m(x2)
    assert out.shape == expected.shape == (B, 6, (length - kernel_size) // stride + 1)
    assert_close(out, expected)
    backward_of([out])
    backward_of([expected])
    assert_close(x.grad, x2.grad)
    assert_close(conv.linear.weight.grad, m.weight.grad.reshape(6, 4 * kernel_size))
    assert_close(conv.linear.bias.grad, m.bias.grad)


def own_copy(torch_model):
    """The impl="own" twin of an impl="torch" model, built from its weights with from_torch."""
    if isinstance(torch_model, TCN):
        own = TCN(I, H, 3, sequence_length=torch_model.sequence_length, impl="own")
        own.convs = nn.ModuleList(Conv1d.from_torch(c) for c in torch_model.convs)
    else:
        own = type(torch_model)(I, H, 3, impl="own")
        own.cell = (RNNCell if isinstance(torch_model, RNN) else LSTMCell).from_torch(torch_model.cell)
    own.readout = nn.Linear(H, 3).to(torch_model.readout.weight)
    own.readout.load_state_dict(torch_model.readout.state_dict())
    return own


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model_class", [RNN, LSTM, TCN])
def test_own_and_torch_models_compute_the_same_function(model_class, dtype):
    torch.manual_seed(0)
    torch_model = model_class(I, H, 3, impl="torch").to(dtype)
    own = own_copy(torch_model)
    x = leaf(B, T, I, dtype=dtype)
    x2 = x.detach().clone().requires_grad_()

    out, expected = own(x), torch_model(x2)
    assert out.shape == (B, 3)
    assert_close(out, expected)
    backward_of([out])
    backward_of([expected])
    assert_close(x.grad, x2.grad)


@pytest.mark.parametrize("length, layers", [(3, 1), (9, 2), (10, 3), (27, 3), (30, 4), (81, 4), (82, 5)])
def test_tcn_layer_count(length, layers):
    assert tcn_num_layers(length) == layers
    assert len(TCN(I, H, 3, sequence_length=length).convs) == layers


@pytest.mark.parametrize("impl", ["own", "torch"])
@pytest.mark.parametrize("length", [3, 10, 30, 82])
def test_tcn_output_depends_on_every_input_step(length, impl):
    torch.manual_seed(0)
    model = TCN(I, H, 3, sequence_length=length, impl=impl)
    x = leaf(8, length, I, dtype=torch.float32)
    out = model(x)
    assert out.shape == (8, 3)
    out.sum().backward()
    assert (x.grad.abs().sum(dim=(0, 2)) > 0).all()  # per time step


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="impl"):
        RNN(I, H, 3, impl="cuda")
    with pytest.raises(ValueError, match="shorter than kernel_size"):
        Conv1d(2, 3, kernel_size=5)(torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="sequence_length 30"):
        TCN(I, H, 3)(torch.zeros(1, 29, I))
    with pytest.raises(ValueError, match="padding 0"):
        Conv1d.from_torch(nn.Conv1d(2, 3, 3, padding=1))
    with pytest.raises(ValueError, match="tanh"):
        RNNCell.from_torch(nn.RNNCell(2, 3, nonlinearity="relu"))


def test_each_input_step_passes_through_the_kernel_slots_tcn_kernel_slots_names():
    """Zeroing slot s of layer l cuts exactly the input steps whose path uses that slot: with positive weights
    and inputs every ReLU is active, so the output's gradient is zero for a step iff its path is cut."""
    T = 30
    torch.manual_seed(0)
    model = TCN(2, 4, 1, sequence_length=T).double()
    for layer, conv in enumerate(model.convs):
        for slot in range(3):
            with torch.no_grad():
                for module in model.modules():
                    if isinstance(module, torch.nn.Linear):
                        module.weight.uniform_(0.1, 1.0)
                        module.bias.fill_(0.1)
                conv.linear.weight.view(4, -1, 3)[:, :, slot] = 0  # (out, in, k): slot s of every channel
            x = torch.rand(1, T, 2, dtype=torch.float64) + 0.1
            x.requires_grad_(True)
            model(x).sum().backward()
            reached = x.grad[0].abs().sum(dim=1) > 0  # (T,)
            expected = torch.tensor([tcn_kernel_slots(p, T)[layer] != slot for p in range(T)])
            assert torch.equal(reached, expected), (layer, slot)
    assert tcn_kernel_slots(16, 30) == (1, 2, 1, 0) and tcn_kernel_slots(27, 30) == (0, 0, 0, 1)
