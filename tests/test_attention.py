"""Hand-written self-attention against independent computations: values and gradients."""
import math

import pytest
import torch
from torch import nn as tnn

from nn.attention import AttentionBlock, FeedForwardLayer, SelfAttentionLayer

# (dtype, tolerance): float64 shows the maths is the same, float32 that it stays accurate in practice.
PRECISIONS = [(torch.float64, 1e-10), (torch.float32, 1e-5)]
B, N, C, HEADS = 3, 7, 12, 3


def make_layer(dtype, fused=False, seed=0):
    torch.manual_seed(seed)
    return SelfAttentionLayer(C, HEADS, fused=fused).to(dtype)


def make_input(dtype, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(B, N, C, generator=generator, dtype=dtype).requires_grad_()


def reference_attention(x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads):
    """Multi-head self-attention with plain tensor ops: one head at a time, softmax spelled out."""
    embed = x.shape[-1]
    head = embed // num_heads
    q_all = x @ qkv_weight[:embed].T + qkv_bias[:embed]
    k_all = x @ qkv_weight[embed:2 * embed].T + qkv_bias[embed:2 * embed]
    v_all = x @ qkv_weight[2 * embed:].T + qkv_bias[2 * embed:]
    outputs, weights = [], []
    for i in range(num_heads):
        cols = slice(i * head, (i + 1) * head)
        scores = q_all[..., cols] @ k_all[..., cols].transpose(1, 2) / math.sqrt(head)
        exp = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
        attention = exp / exp.sum(dim=-1, keepdim=True)
        outputs.append(attention @ v_all[..., cols])
        weights.append(attention)
    return torch.cat(outputs, dim=-1) @ proj_weight.T + proj_bias, torch.stack(weights, dim=1)


def layer_grads(layer, x):
    return [x.grad, layer.qkv.weight.grad, layer.qkv.bias.grad, layer.proj.weight.grad, layer.proj.bias.grad]


@pytest.mark.parametrize("dtype,tol", PRECISIONS)
def test_matches_reference_values_and_gradients(dtype, tol):
    layer, x = make_layer(dtype), make_input(dtype)
    y, attention = layer(x, return_attention=True)
    upstream = torch.randn_like(y)
    (y * upstream).sum().backward()

    params = [p.detach().clone().requires_grad_() for p in
              (layer.qkv.weight, layer.qkv.bias, layer.proj.weight, layer.proj.bias)]
    x_ref = x.detach().clone().requires_grad_()
    y_ref, attention_ref = reference_attention(x_ref, *params, num_heads=HEADS)
    (y_ref * upstream).sum().backward()

    torch.testing.assert_close(y, y_ref, atol=tol, rtol=tol)
    torch.testing.assert_close(attention, attention_ref, atol=tol, rtol=tol)
    for grad, grad_ref in zip(layer_grads(layer, x), [x_ref.grad] + [p.grad for p in params]):
        torch.testing.assert_close(grad, grad_ref, atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype,tol", PRECISIONS)
def test_matches_torch_multihead_attention(dtype, tol):
    layer, x = make_layer(dtype), make_input(dtype)
    mha = tnn.MultiheadAttention(C, HEADS, batch_first=True, dtype=dtype)
    with torch.no_grad():
        mha.in_proj_weight.copy_(layer.qkv.weight)
        mha.in_proj_bias.copy_(layer.qkv.bias)
        mha.out_proj.weight.copy_(layer.proj.weight)
        mha.out_proj.bias.copy_(layer.proj.bias)
    x_ref = x.detach().clone().requires_grad_()

    y, attention = layer(x, return_attention=True)
    y_ref, attention_ref = mha(x_ref, x_ref, x_ref, need_weights=True, average_attn_weights=False)
    upstream = torch.randn_like(y)
    (y * upstream).sum().backward()
    (y_ref * upstream).sum().backward()

    torch.testing.assert_close(y, y_ref, atol=tol, rtol=tol)
    torch.testing.assert_close(attention, attention_ref, atol=tol, rtol=tol)
    mha_grads = [x_ref.grad, mha.in_proj_weight.grad, mha.in_proj_bias.grad,
                 mha.out_proj.weight.grad, mha.out_proj.bias.grad]
    for grad, grad_ref in zip(layer_grads(layer, x), mha_grads):
        torch.testing.assert_close(grad, grad_ref, atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype,tol", PRECISIONS)
def test_fused_path_matches_hand_written(dtype, tol):
    hand, fused = make_layer(dtype), make_layer(dtype, fused=True)
    torch.testing.assert_close(fused.state_dict(), hand.state_dict(), atol=0, rtol=0)
    x_hand, x_fused = make_input(dtype), make_input(dtype)
    y_hand, y_fused = hand(x_hand), fused(x_fused)
    upstream = torch.randn_like(y_hand)
    (y_hand * upstream).sum().backward()
    (y_fused * upstream).sum().backward()

    torch.testing.assert_close(y_fused, y_hand, atol=tol, rtol=tol)
    for grad, grad_ref in zip(layer_grads(fused, x_fused), layer_grads(hand, x_hand)):
        torch.testing.assert_close(grad, grad_ref, atol=tol, rtol=tol)


def test_fused_layer_returns_the_hand_written_attention():
    hand, fused = make_layer(torch.float64), make_layer(torch.float64, fused=True)
    x = make_input(torch.float64)
    _, attention = fused(x, return_attention=True)
    _, attention_ref = hand(x, return_attention=True)
    torch.testing.assert_close(attention, attention_ref, atol=0, rtol=0)


def test_attention_rows_sum_to_one():
    _, attention = make_layer(torch.float64)(make_input(torch.float64), return_attention=True)
    assert attention.shape == (B, HEADS, N, N)
    assert (attention >= 0).all()
    torch.testing.assert_close(attention.sum(dim=-1), torch.ones(B, HEADS, N, dtype=torch.float64),
                               atol=1e-12, rtol=0)


def test_heads_are_independent():
    """Changing head 1's query, key and value weights leaves head 0's output columns unchanged."""
    layer, x = make_layer(torch.float64), make_input(torch.float64).detach()
    head = C // HEADS
    with torch.no_grad():
        # An identity output projection exposes the merged head outputs (h d) directly.
        layer.proj.weight.copy_(torch.eye(C, dtype=torch.float64))
        layer.proj.bias.zero_()
        before = layer(x)
        for part in range(3):  # q, k, v blocks of the fused qkv projection
            rows = slice(part * C + head, part * C + 2 * head)
            layer.qkv.weight[rows] += torch.randn_like(layer.qkv.weight[rows])
        after = layer(x)
    torch.testing.assert_close(after[..., :head], before[..., :head], atol=0, rtol=0)
    torch.testing.assert_close(after[..., 2 * head:], before[..., 2 * head:], atol=0, rtol=0)
    assert (after[..., head:2 * head] - before[..., head:2 * head]).abs().max() > 1e-3


def test_attention_block_is_pre_norm_residual():
    torch.manual_seed(0)
    block = AttentionBlock(C, HEADS).double()
    x = make_input(torch.float64).detach()
    h = x + block.mixer(block.norm1(x))
    expected = h + block.ff(block.norm2(h))
    torch.testing.assert_close(block(x), expected, atol=0, rtol=0)
    y, attention = block(x, return_attention=True)
    torch.testing.assert_close(y, expected, atol=0, rtol=0)
    assert attention.shape == (B, HEADS, N, N)


@pytest.mark.parametrize("attention", [True, False])
def test_token_mixing_only_with_attention(attention):
    """Perturbing token j moves other tokens only when the block has self-attention."""
    torch.manual_seed(0)
    block = AttentionBlock(C, HEADS, attention=attention).double()
    assert isinstance(block.mixer, SelfAttentionLayer if attention else FeedForwardLayer)
    x = make_input(torch.float64).detach()
    j = 4
    x_perturbed = x.clone()
    x_perturbed[:, j] += torch.randn(B, C, dtype=torch.float64)
    with torch.no_grad():
        change = (block(x_perturbed) - block(x)).abs().amax(dim=(0, 2))  # (N,)
    assert change[j] > 1e-3
    others = torch.cat([change[:j], change[j + 1:]])
    if attention:
        assert (others > 1e-6).all()
    else:
        assert (others == 0).all()


def test_block_without_attention_returns_no_weights():
    block = AttentionBlock(C, HEADS, attention=False)
    y, attention = block(make_input(torch.float32), return_attention=True)
    assert y.shape == (B, N, C) and attention is None


@pytest.mark.parametrize("kwargs,name", [
    (dict(embed_size=10, num_heads=3), "embed_size"),
    (dict(embed_size=0, num_heads=1), "embed_size"),
    (dict(embed_size=8, num_heads=0), "num_heads"),
    (dict(embed_size=8, num_heads=2.0), "num_heads"),
])
def test_invalid_attention_options_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SelfAttentionLayer(**kwargs)
