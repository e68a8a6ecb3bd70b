"""Exercise 1: a vanilla RNN, an LSTM and a temporal convolution network (TCN), built from nn.Linear.

Every learnable weight of the hand-written modules (RNNCell, LSTMCell, Conv1d) lives in an nn.Linear.
The sequence models take `impl="own"` (the hand-written cells, the default) or `impl="torch"`
(torch.nn.RNNCell, torch.nn.LSTMCell, torch.nn.Conv1d), so both can be trained and compared with the
same code. `from_torch(m)` builds a hand-written module that computes exactly what the PyTorch module `m`
computes; tests/test_net.py uses it to prove values and gradients equal.

Shapes: B batch, T time steps, I input size, H hidden size, O output size, C channels, L length.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

IMPLS = ("own", "torch")


def _check_impl(impl):
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")


class RNNCell(nn.Module):
    """One step of an Elman RNN: h' = tanh(W [x; h] + b), one Linear over the concatenation.

    forward(x (B, I), h (B, H)) -> h' (B, H)
    """

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size + hidden_size, hidden_size)

    def forward(self, x, h):
        return torch.tanh(self.linear(torch.cat([x, h], dim=1)))

    def forward_sequence(self, x, h):
        """forward applied step by step over x (B, T, I), starting from h (B, H); returns the last h (B, H).

        The same recurrence, arranged for speed: W [x_t; h] + b = (W_x x_t + b) + W_h h, where W_x and W_h
        are the column blocks of the one Linear's weight. The input part does not depend on h, so it is
        computed for all T steps in one matmul before the loop; each step is then one addmm and one tanh.
        """
        w_x, w_h = self.linear.weight.split([self.input_size, self.hidden_size], dim=1)
        x_proj = F.linear(x, w_x, self.linear.bias)  # (B, T, H)
        w_h = w_h.t()  # (H, H), transposed once, outside the loop
        for x_t in x_proj.unbind(dim=1):  # T steps of (B, H)
            h = torch.addmm(x_t, h, w_h).tanh()
        return h

    @classmethod
    def from_torch(cls, m):
        """The hand-written cell computing what `m` (a torch.nn.RNNCell with tanh and biases) computes."""
        if m.nonlinearity != "tanh" or not m.bias:
            raise ValueError("RNNCell.from_torch needs a torch.nn.RNNCell with nonlinearity='tanh' and bias=True")
        cell = cls(m.input_size, m.hidden_size).to(m.weight_ih)
        with torch.no_grad():
            # W [x; h] = W_ih x + W_hh h; PyTorch's two biases only ever appear as a sum.
            cell.linear.weight.copy_(torch.cat([m.weight_ih, m.weight_hh], dim=1))
            cell.linear.bias.copy_(m.bias_ih + m.bias_hh)
        return cell


class LSTMCell(nn.Module):
    """One step of an LSTM; a single Linear computes all four gates, in PyTorch's order (i, f, g, o).

    forward(x (B, I), (h (B, H), c (B, H))) -> (h' (B, H), c' (B, H))
    """

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size + hidden_size, 4 * hidden_size)

    def forward(self, x, state):
        h, c = state
        return self._update(self.linear(torch.cat([x, h], dim=1)), c)

    def forward_sequence(self, x, state):
        """forward applied step by step over x (B, T, I), starting from state (h, c); returns the last (h, c).

        As in RNNCell.forward_sequence, the input half of the gates' affine map, W_x x_t + b, is computed
        for all T steps in one matmul before the loop; each step adds W_h h with one addmm.
        """
        h, c = state
        w_x, w_h = self.linear.weight.split([self.input_size, self.hidden_size], dim=1)
        x_proj = F.linear(x, w_x, self.linear.bias)  # (B, T, 4H)
        w_h = w_h.t()  # (H, 4H), transposed once, outside the loop
        for x_t in x_proj.unbind(dim=1):  # T steps of (B, 4H)
            h, c = self._update(torch.addmm(x_t, h, w_h), c)
        return h, c

    def _update(self, gates, c):
        """gates (B, 4H) pre-activations in the order (i, f, g, o), c (B, H) -> (h', c')."""
        # One sigmoid over all four gates costs less than three calls on a small batch;
        # the sigmoid of the g slot is computed but not used.
        i, f, _, o = gates.sigmoid().chunk(4, dim=1)  # each (B, H)
        g = gates[:, 2 * self.hidden_size : 3 * self.hidden_size].tanh()  # (B, H)
        c = torch.addcmul(f * c, i, g)  # f * c + i * g
        return o * c.tanh(), c

    @classmethod
    def from_torch(cls, m):
        """The hand-written cell computing what `m` (a torch.nn.LSTMCell with biases) computes."""
        if not m.bias:
            raise ValueError("LSTMCell.from_torch needs a torch.nn.LSTMCell with bias=True")
        cell = cls(m.input_size, m.hidden_size).to(m.weight_ih)
        with torch.no_grad():
            cell.linear.weight.copy_(torch.cat([m.weight_ih, m.weight_hh], dim=1))
            cell.linear.bias.copy_(m.bias_ih + m.bias_hh)
        return cell


class RNN(nn.Module):
    """An RNN over the whole sequence with a Linear readout of the last hidden state.

    The hidden state starts at zero in every forward call. impl="own" runs the hand-written RNNCell
    (its forward_sequence, the same recurrence as calling it step by step), impl="torch" steps torch.nn.RNNCell.

    forward(x (B, T, I)) -> logits (B, O) for the last time step only
    last_state(x (B, T, I)) -> h (B, H), the hidden state the readout reads
    """

    def __init__(self, input_size, hidden_size, output_size, impl="own"):
        super().__init__()
        _check_impl(impl)
        self.hidden_size = hidden_size
        self.cell = RNNCell(input_size, hidden_size) if impl == "own" else nn.RNNCell(input_size, hidden_size)
        self.readout = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        return self.readout(self.last_state(x))  # (B, O)

    def last_state(self, x):
        h = x.new_zeros(x.shape[0], self.hidden_size)  # (B, H)
        if isinstance(self.cell, RNNCell):
            return self.cell.forward_sequence(x, h)
        for x_t in x.unbind(dim=1):  # torch.nn.RNNCell: one call per step, T steps of (B, I)
            h = self.cell(x_t, h)
        return h


class LSTM(nn.Module):
    """An LSTM over the whole sequence with a Linear readout of the last hidden state.

    The hidden and cell states start at zero in every forward call. impl="own" runs the hand-written LSTMCell
    (its forward_sequence, the same recurrence as calling it step by step), impl="torch" steps torch.nn.LSTMCell.

    forward(x (B, T, I)) -> logits (B, O) for the last time step only
    last_state(x (B, T, I)) -> h (B, H), the hidden state the readout reads
    """

    def __init__(self, input_size, hidden_size, output_size, impl="own"):
        super().__init__()
        _check_impl(impl)
        self.hidden_size = hidden_size
        self.cell = LSTMCell(input_size, hidden_size) if impl == "own" else nn.LSTMCell(input_size, hidden_size)
        self.readout = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        return self.readout(self.last_state(x))  # (B, O)

    def last_state(self, x):
        h = x.new_zeros(x.shape[0], self.hidden_size)  # (B, H)
        c = torch.zeros_like(h)  # (B, H)
        if isinstance(self.cell, LSTMCell):
            return self.cell.forward_sequence(x, (h, c))[0]
        for x_t in x.unbind(dim=1):  # torch.nn.LSTMCell: one call per step, T steps of (B, I)
            h, c = self.cell(x_t, (h, c))
        return h


class Conv1d(nn.Module):
    """torch.nn.Conv1d (no padding, dilation 1, one group) without a loop: unfold the windows, one matmul.

    The Linear's weight is the convolution kernel flattened to (out_channels, in_channels * kernel_size),
    in the order of torch.nn.Conv1d's weight (out, in, k); like it, this is a cross-correlation.

    forward(x (B, C_in, L)) -> (B, C_out, L') with L' = (L - kernel_size) // stride + 1
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1):
        super().__init__()
        if kernel_size < 1 or stride < 1:
            raise ValueError(f"kernel_size and stride must be >= 1, got {kernel_size} and {stride}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.linear = nn.Linear(in_channels * kernel_size, out_channels)

    def forward(self, x):
        if x.shape[-1] < self.kernel_size:
            raise ValueError(f"Conv1d input length {x.shape[-1]} is shorter than kernel_size {self.kernel_size}")
        windows = x.unfold(2, self.kernel_size, self.stride)  # (B, C_in, L', k), a view
        windows = rearrange(windows, "b c l k -> b l (c k)")
        return rearrange(self.linear(windows), "b l o -> b o l")  # (B, C_out, L')

    @classmethod
    def from_torch(cls, m):
        """The hand-written convolution computing what `m` (a plain torch.nn.Conv1d) computes."""
        if m.padding != (0,) or m.dilation != (1,) or m.groups != 1 or m.bias is None:
            raise ValueError("Conv1d.from_torch needs a torch.nn.Conv1d with padding 0, dilation 1, groups 1, bias")
        conv = cls(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]).to(m.weight)
        with torch.no_grad():
            conv.linear.weight.copy_(rearrange(m.weight, "o c k -> o (c k)"))
            conv.linear.bias.copy_(m.bias)
        return conv


def tcn_num_layers(sequence_length, kernel_size=3):
    """Layers a TCN with kernel_size == stride needs so that its single last output sees every input step.

    Each layer divides the length by kernel_size (rounding up after zero padding), so L layers cover
    kernel_size**L steps: the answer is the smallest L with kernel_size**L >= sequence_length,
    i.e. ceil(log3(T)) for kernel 3: 1 for T = 3, 2 for 9, 3 for 10 and 27, 4 for 28..81 (the default 30).
    Counted with integers, as float logarithms misround at exact powers.
    """
    if sequence_length < 2:
        raise ValueError(f"a TCN needs a sequence_length of at least 2, got {sequence_length}")
    layers, receptive_field = 0, 1
    while receptive_field < sequence_length:
        layers += 1
        receptive_field *= kernel_size
    return layers


def tcn_kernel_slots(position, sequence_length, kernel_size=3):
    """The kernel slot of every layer that input step ``position`` passes through on its way to the output.

    With kernel_size == stride every step has exactly one path: in layer l (0-based) it lies in slot
    (position // kernel_size**l) % kernel_size of its window. Returns a tuple, one slot per layer.
    """
    return tuple((position // kernel_size ** layer) % kernel_size
                 for layer in range(tcn_num_layers(sequence_length, kernel_size)))


class TCN(nn.Module):
    """A temporal convolution network: convolutions with kernel_size == stride == 3, ReLU after each, no pooling.

    Every layer shortens the sequence threefold, so after tcn_num_layers(sequence_length) layers one step is
    left, whose receptive field covers the whole input; a Linear reads the logits out of it. Before each layer
    the sequence is zero-padded at the end to the next multiple of 3 (on the fly, as the sheet says): the
    padding sits after the request token, so it cannot hide anything, and padding per layer computes only
    ceil(L / 3) outputs per layer instead of padding the input once to 3**layers (81 steps for T = 30).
    For T = 30 the lengths run 30 -> 10 -> (12 ->) 4 -> (6 ->) 2 -> (3 ->) 1.

    forward(x (B, T, I)) -> logits (B, O)
    """

    kernel_size = 3

    def __init__(self, input_size, hidden_size, output_size, sequence_length=30, impl="own"):
        super().__init__()
        _check_impl(impl)
        self.sequence_length = sequence_length
        conv = Conv1d if impl == "own" else nn.Conv1d
        k = self.kernel_size
        channels = [input_size] + [hidden_size] * tcn_num_layers(sequence_length, k)
        self.convs = nn.ModuleList(conv(c_in, c_out, k, stride=k) for c_in, c_out in zip(channels, channels[1:]))
        self.readout = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        if x.shape[1] != self.sequence_length:
            raise ValueError(f"TCN built for sequence_length {self.sequence_length}, got {x.shape[1]} step{'s' if x.shape[1] != 1 else ''}")
        x = rearrange(x, "b t i -> b i t")  # (B, I, T): channels first, as Conv1d expects
        for conv in self.convs:
            x = F.pad(x, (0, -x.shape[-1] % self.kernel_size))  # (B, C, 3 * ceil(L / 3)), zeros at the end
            x = F.relu(conv(x))  # (B, H, ceil(L / 3))
        return self.readout(x[:, :, -1])  # (B, H) -> (B, O); the length is 1 here


# The template's hidden sizes, chosen for similar parameter counts of the recurrent models.
HIDDEN_SIZES = {"rnn": 34, "lstm": 16, "tcn": 14}
MODELS = tuple(HIDDEN_SIZES)


def build_model(model, num_tokens, sequence_length, impl="own"):
    """The named model for one-hot inputs of num_tokens + 2 categories and num_tokens output classes."""
    input_size, hidden_size = num_tokens + 2, HIDDEN_SIZES[model]
    if model == "rnn":
        return RNN(input_size, hidden_size, num_tokens, impl=impl)
    if model == "lstm":
        return LSTM(input_size, hidden_size, num_tokens, impl=impl)
    return TCN(input_size, hidden_size, num_tokens, sequence_length=sequence_length, impl=impl)
