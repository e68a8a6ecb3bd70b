"""Patch embedding: token order, masking, positional parameters; and the reverse embedding."""
import pytest
import torch

from nn.attention import PatchEmbedding, ReversePatchEmbedding

B, C, P, H, W = 2, 8, 4, 12, 16
GRID_H, GRID_W = H // P, W // P  # 3 x 4 patches per frame


def make_frames(num_frames, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(B, num_frames, H, W, generator=generator, dtype=torch.float64)


def make_embedding(num_frames, **kwargs):
    torch.manual_seed(0)
    return PatchEmbedding(num_frames, C, P, H, W, **kwargs).double()


def patch(frames, t, i, j):
    """Patch (i, j) of frame t, flattened row by row: (B, P*P)."""
    return frames[:, t, i * P:(i + 1) * P, j * P:(j + 1) * P].reshape(B, P * P)


def token_index(t, i, j):
    return (t * GRID_H + i) * GRID_W + j


def test_token_order_is_frame_row_column():
    num_frames = 3
    embedding = make_embedding(num_frames, positional_embedding=False)
    frames = make_frames(num_frames)
    tokens, _ = embedding(frames)
    assert tokens.shape == (B, num_frames * GRID_H * GRID_W, C)
    proj = embedding.proj
    for t in range(num_frames - 1):  # the last frame is masked
        for i in range(GRID_H):
            for j in range(GRID_W):
                expected = patch(frames, t, i, j) @ proj.weight.T + proj.bias
                torch.testing.assert_close(tokens[:, token_index(t, i, j)], expected, atol=1e-12, rtol=0)


def test_single_frame_without_masking_projects_every_patch():
    embedding = make_embedding(1, positional_embedding=False, mask_percentage=0.0)
    frames = make_frames(1)
    tokens, mask = embedding(frames)
    assert not mask.any()
    for i in range(GRID_H):
        for j in range(GRID_W):
            expected = embedding.proj(patch(frames, 0, i, j))
            torch.testing.assert_close(tokens[:, token_index(0, i, j)], expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("num_frames", [2, 3])
def test_exactly_the_last_frame_is_masked(num_frames):
    embedding = make_embedding(num_frames)
    frames = make_frames(num_frames)
    tokens, mask = embedding(frames)
    per_frame = GRID_H * GRID_W
    assert mask.shape == (B, num_frames * per_frame) and mask.dtype == torch.bool
    assert mask[:, -per_frame:].all() and not mask[:, :-per_frame].any()
    # A masked token carries its position and nothing else.
    position = embedding.positional_embedding.expand(B, -1, -1)
    torch.testing.assert_close(tokens[:, -per_frame:], position[:, -per_frame:], atol=0, rtol=0)

    # The last frame's pixels reach no token: the model cannot peek at its target.
    changed = frames.clone()
    changed[:, -1] = torch.rand(B, H, W, dtype=torch.float64)
    tokens_changed, mask_changed = embedding(changed)
    torch.testing.assert_close(tokens_changed, tokens, atol=0, rtol=0)
    assert torch.equal(mask_changed, mask)


@pytest.mark.parametrize("mask_percentage", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_single_frame_masks_a_fixed_random_fraction(mask_percentage):
    embedding = make_embedding(1, mask_percentage=mask_percentage)
    per_frame = GRID_H * GRID_W
    expected_count = round(mask_percentage * per_frame)
    tokens, mask = embedding(make_frames(1), generator=torch.Generator().manual_seed(3))
    assert mask.shape == (B, per_frame)
    assert mask.sum(dim=1).tolist() == [expected_count] * B
    position = embedding.positional_embedding.expand(B, -1, -1)
    torch.testing.assert_close(tokens[mask], position[mask], atol=0, rtol=0)
    assert (tokens[~mask] != position[~mask]).any(dim=-1).all()


def test_random_mask_is_reproducible_with_a_seeded_generator():
    embedding = make_embedding(1, mask_percentage=0.5)
    frames = torch.rand(16, 1, H, W, dtype=torch.float64)

    def mask_for(seed):
        return embedding(frames, generator=torch.Generator().manual_seed(seed))[1]

    first = mask_for(7)
    assert torch.equal(mask_for(7), first)
    assert not torch.equal(mask_for(8), first)
    assert len({tuple(row.tolist()) for row in first}) > 1  # each sample draws its own mask


def test_positional_embedding_parameter():
    num_frames = 3
    with_positions = make_embedding(num_frames)
    position = with_positions.positional_embedding
    assert isinstance(position, torch.nn.Parameter)
    assert position.shape == (1, num_frames * GRID_H * GRID_W, C)
    assert 0.01 < position.std().item() < 0.03  # trunc_normal_(std=0.02)

    without = make_embedding(num_frames, positional_embedding=False)
    assert without.positional_embedding is None
    assert [name for name, _ in without.named_parameters()] == ["proj.weight", "proj.bias"]
    assert set(without.state_dict()) == {"proj.weight", "proj.bias"}


@pytest.mark.parametrize("num_frames,mask_percentage", [(3, 0.5), (1, 0.5)])
def test_pixel_mask_covers_exactly_the_masked_patches(num_frames, mask_percentage):
    embedding = make_embedding(num_frames, mask_percentage=mask_percentage)
    _, mask = embedding(make_frames(num_frames), generator=torch.Generator().manual_seed(0))
    pixels = embedding.pixel_mask(mask)
    expected = torch.zeros(B, num_frames, H, W, dtype=torch.bool)
    for t in range(num_frames):
        for i in range(GRID_H):
            for j in range(GRID_W):
                expected[:, t, i * P:(i + 1) * P, j * P:(j + 1) * P] = \
                    mask[:, token_index(t, i, j), None, None]
    assert pixels.dtype == torch.bool
    assert torch.equal(pixels, expected)


def test_reverse_embedding_shapes():
    num_frames = 3
    reverse = ReversePatchEmbedding(num_frames, C, P, H, W)
    frames = reverse(torch.randn(B, num_frames * GRID_H * GRID_W, C))
    assert frames.shape == (B, num_frames, H, W)


def test_reverse_embedding_writes_each_token_into_its_own_patch():
    num_frames = 2
    torch.manual_seed(0)
    reverse = ReversePatchEmbedding(num_frames, C, P, H, W).double()
    weight = reverse.to_pixels.weight.T  # (C, P*P): one p x p stamp per channel
    with torch.no_grad():
        reverse.to_pixels.bias.zero_()
    for t, i, j in [(0, 0, 0), (0, 2, 1), (1, 1, 3)]:
        tokens = torch.zeros(B, num_frames * GRID_H * GRID_W, C, dtype=torch.float64)
        tokens[:, token_index(t, i, j)] = torch.randn(B, C, dtype=torch.float64)
        frames = reverse(tokens)
        rows, cols = slice(i * P, (i + 1) * P), slice(j * P, (j + 1) * P)
        expected = (tokens[:, token_index(t, i, j)] @ weight).reshape(B, P, P)
        torch.testing.assert_close(frames[:, t, rows, cols], expected, atol=1e-12, rtol=0)
        outside = frames.clone()
        outside[:, t, rows, cols] = 0
        assert (outside == 0).all()


def test_reverse_embedding_equals_torch_conv_transpose():
    """The Linear + rearrange is nn.ConvTranspose2d(C, 1, kernel=stride=P) per frame: values and gradients."""
    num_frames = 3
    torch.manual_seed(0)
    reverse = ReversePatchEmbedding(num_frames, C, P, H, W).double()
    conv = torch.nn.ConvTranspose2d(C, 1, kernel_size=P, stride=P).double()
    with torch.no_grad():
        conv.weight.copy_(reverse.to_pixels.weight.T.reshape(C, 1, P, P))
        conv.bias.copy_(reverse.to_pixels.bias.mean().expand(1))
        reverse.to_pixels.bias.fill_(conv.bias.item())  # the convolution has one bias for its one channel
    tokens = torch.randn(B, num_frames * GRID_H * GRID_W, C, dtype=torch.float64, requires_grad=True)
    ours = reverse(tokens)
    grid = tokens.reshape(B, num_frames, GRID_H, GRID_W, C).permute(0, 1, 4, 2, 3).reshape(-1, C, GRID_H, GRID_W)
    theirs = conv(grid).reshape(B, num_frames, H, W)
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)
    upstream = torch.randn_like(ours)
    (grad_ours,) = torch.autograd.grad(ours, tokens, upstream)
    (grad_theirs,) = torch.autograd.grad(theirs, tokens, upstream)
    torch.testing.assert_close(grad_ours, grad_theirs, atol=1e-12, rtol=0)


def test_patch_then_reverse_round_trip_with_matching_weights():
    """With an identity projection and its transpose as the reverse map, frames come back unchanged."""
    num_frames, width = 2, P * P
    embedding = PatchEmbedding(num_frames, width, P, H, W, positional_embedding=False).double()
    reverse = ReversePatchEmbedding(num_frames, width, P, H, W).double()
    with torch.no_grad():
        embedding.proj.weight.copy_(torch.eye(width))
        embedding.proj.bias.zero_()
        reverse.to_pixels.weight.copy_(torch.eye(width))
        reverse.to_pixels.bias.zero_()
    frames = make_frames(num_frames)
    tokens, _ = embedding(frames)
    restored = reverse(tokens)
    torch.testing.assert_close(restored[:, :-1], frames[:, :-1], atol=1e-12, rtol=0)
    assert (restored[:, -1] == 0).all()  # the masked frame came through as zeros


@pytest.mark.parametrize("kwargs,name", [
    (dict(image_height=13), "image_height"),
    (dict(image_width=18), "image_width"),
    (dict(patch_size=0), "patch_size"),
    (dict(num_frames=0), "num_frames"),
    (dict(embed_size=-1), "embed_size"),
    (dict(mask_percentage=1.5), "mask_percentage"),
    (dict(mask_percentage=-0.1), "mask_percentage"),
])
def test_invalid_geometry_names_the_argument(kwargs, name):
    args = dict(num_frames=2, embed_size=C, patch_size=P, image_height=H, image_width=W) | kwargs
    with pytest.raises(ValueError, match=name):
        PatchEmbedding(**args)
    if name != "mask_percentage":
        with pytest.raises(ValueError, match=name):
            ReversePatchEmbedding(**args)


def test_wrong_frame_shape_is_rejected():
    embedding = make_embedding(3)
    with pytest.raises(ValueError, match="frames must have shape"):
        embedding(make_frames(2))


def test_sincos_positions_are_the_transformer_codes_of_frame_row_and_column():
    from nn.attention import sincos_positions
    num_frames, width = 3, 16  # channel groups: frame 8, row 4, column 4
    grid_h, grid_w = GRID_H, GRID_W
    codes = sincos_positions(num_frames, grid_h, grid_w, width)
    assert codes.shape == (num_frames * grid_h * grid_w, width)
    spatial = width // 3 // 2 * 2
    frame_part = width - 2 * spatial
    t, i, j = 2, 1, 3
    assert (frame_part, spatial) == (8, 4)
    token = codes[token_index(t, i, j)]
    freq = lambda size: 1.0 / 10000 ** (torch.arange(size // 2, dtype=torch.float64) / (size // 2))  # noqa: E731
    expected_t = torch.cat([(t * freq(frame_part)).sin(), (t * freq(frame_part)).cos()]).float()
    expected_j = torch.cat([(j * freq(spatial)).sin(), (j * freq(spatial)).cos()]).float()
    torch.testing.assert_close(token[:frame_part], expected_t)
    torch.testing.assert_close(token[-spatial:], expected_j)
    # The same place in two frames agrees on the row and column channels.
    other = codes[token_index(0, i, j)]
    torch.testing.assert_close(token[frame_part:], other[frame_part:])


def test_sincos_init_is_learned_and_optional():
    embedding = PatchEmbedding(2, C, P, H, W, positional_init="sincos")
    assert embedding.positional_embedding.requires_grad
    from nn.attention import sincos_positions
    torch.testing.assert_close(embedding.positional_embedding[0], sincos_positions(2, GRID_H, GRID_W, C))
    with pytest.raises(ValueError, match="positional_init"):
        PatchEmbedding(2, C, P, H, W, positional_init="fourier")
