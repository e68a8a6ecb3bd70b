"""Vision Transformer building blocks for next-frame prediction (sheet 2 (a), (b), (d), (e)).

Frames are cut into non-overlapping patches per frame and the tokens are ordered ``(t h w)``:
all patches of frame 0 row by row, then frame 1, and so on. With ``h = H // patch_size`` and
``w = W // patch_size`` a clip of ``T`` frames becomes ``N = T * h * w`` tokens of width ``C``.
"""
import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn as tnn


class OptionError(ValueError):
    """A bad argument of a module: ``name`` is the argument (as the caller spells it), ``message`` says why.

    The module checks below are the one place each option is checked: the modules call them with the
    arguments' own names, model.config with its keys (``key=lambda name: f"model.{name}"``) to name the key.
    """

    def __init__(self, name, message):
        super().__init__(f"{name}: {message}")
        self.name, self.message = name, message


def _require_positive(**sizes):
    """Raise ValueError naming the first argument that is not a positive int."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_patch_grid(image_height, image_width, patch_size, key=str):
    """The patch size must divide both sides of the frame."""
    for side, size in (("image_height", image_height), ("image_width", image_width)):
        if size % patch_size:
            raise OptionError(key("patch_size"), f"{patch_size} does not divide {key(side)} {size}")


def check_heads(embed_size, num_heads, key=str):
    """The width must split into num_heads heads (``embed_size`` is spelled ``key("embed_size")``)."""
    if embed_size % num_heads:
        raise OptionError(key("embed_size"), f"{embed_size} is not divisible by {key('num_heads')} {num_heads}")


def check_positions(embed_size, mask_percentage, positional_init, positional_init_std, key=str):
    """The options of PatchEmbedding's masking and positional embedding."""
    if not 0.0 <= mask_percentage <= 1.0:
        raise OptionError(key("mask_percentage"), f"must lie in [0, 1], got {mask_percentage!r}")
    if not positional_init_std > 0:
        raise OptionError(key("positional_init_std"), f"must be positive, got {positional_init_std!r}")
    if positional_init not in ("normal", "sincos"):
        raise OptionError(key("positional_init"), f"must be 'normal' or 'sincos', got {positional_init!r}")
    if positional_init == "sincos" and (embed_size % 2 or embed_size < 6):
        raise OptionError(key("positional_init"), f"'sincos' needs an even {key('embed_size')} >= 6, got {embed_size}")


def _patch_grid(num_frames, embed_size, patch_size, image_height, image_width):
    """Validate the frame geometry shared by PatchEmbedding and ReversePatchEmbedding.

    Returns the patch grid ``(h, w)`` of one frame.
    """
    _require_positive(num_frames=num_frames, embed_size=embed_size, patch_size=patch_size,
                      image_height=image_height, image_width=image_width)
    check_patch_grid(image_height, image_width, patch_size)
    return image_height // patch_size, image_width // patch_size


@contextmanager
def written_out_attention(model):
    """Every SelfAttentionLayer of model takes the hand-written path inside the block, e.g. to count FLOPs:
    torch.utils.flop_counter has no formula for the fused CPU attention kernel and counts its products as
    zero. Both paths compute the same products with the same weights."""
    layers = [m for m in model.modules() if isinstance(m, SelfAttentionLayer)]
    fused = [layer.fused for layer in layers]
    for layer in layers:
        layer.fused = False
    try:
        yield model
    finally:
        for layer, was in zip(layers, fused):
            layer.fused = was


class SelfAttentionLayer(tnn.Module):
    """Multi-head self-attention, written out by hand (sheet 2 (a)).

    x (B, N, C) -> y (B, N, C). Every head attends over all N tokens with head size d = C / heads:
    ``softmax(q k^T / sqrt(d)) v``. ``fused=True`` computes the same thing with
    ``F.scaled_dot_product_attention``; the weights (``qkv``, ``proj``) are identical in both paths,
    so a checkpoint trained with one runs with the other.
    """

    def __init__(self, embed_size, num_heads, fused=False):
        super().__init__()
        _require_positive(embed_size=embed_size, num_heads=num_heads)
        check_heads(embed_size, num_heads)
        self.num_heads = num_heads
        self.head_size = embed_size // num_heads
        self.fused = fused
        self.qkv = tnn.Linear(embed_size, 3 * embed_size)  # queries, keys and values of all heads at once
        self.proj = tnn.Linear(embed_size, embed_size)

    def forward(self, x, return_attention=False):
        """x (B, N, C) -> y (B, N, C), or (y, attention (B, heads, N, N)) when return_attention.

        The attention weights are only materialised by the hand-written path, so asking for
        them uses that path even when the layer is fused.
        """
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        if self.fused and not return_attention:
            out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d)
        else:
            # Scaling q (N x d numbers) is cheaper than scaling the scores (N x N numbers).
            scores = (q * (1.0 / math.sqrt(self.head_size))) @ k.transpose(-2, -1)  # (B, heads, N, N)
            attention = torch.softmax(scores, dim=-1)  # each query's weights over the keys sum to 1
            out = attention @ v  # (B, heads, N, d)
        y = self.proj(rearrange(out, "b h n d -> b n (h d)"))
        return (y, attention) if return_attention else y


class FeedForwardLayer(tnn.Module):
    """Per-token MLP: x (B, N, C) -> (B, N, C) via Linear(C, e*C) -> SiLU -> Linear(e*C, C).

    Each token is transformed on its own; no information moves between tokens.
    """

    def __init__(self, embed_size, expansion=4):
        super().__init__()
        _require_positive(embed_size=embed_size, expansion=expansion)
        self.net = tnn.Sequential(
            tnn.Linear(embed_size, expansion * embed_size),
            tnn.SiLU(),
            tnn.Linear(expansion * embed_size, embed_size),
        )

    def forward(self, x):
        return self.net(x)


class AttentionBlock(tnn.Module):
    """Pre-norm transformer block: ``x = x + mixer(norm1(x)); x = x + ff(norm2(x))``.

    The mixer is self-attention, or with ``attention=False`` a second per-token feed-forward
    layer (sheet 2 (d)): the block then has the same structure but cannot mix tokens.
    """

    def __init__(self, embed_size, num_heads, attention=True, fused=False):
        super().__init__()
        self.attention = attention
        self.norm1 = tnn.LayerNorm(embed_size)
        if attention:
            self.mixer = SelfAttentionLayer(embed_size, num_heads, fused=fused)
        else:
            self.mixer = FeedForwardLayer(embed_size)
        self.norm2 = tnn.LayerNorm(embed_size)
        self.ff = FeedForwardLayer(embed_size)

    def forward(self, x, return_attention=False):
        """x (B, N, C) -> (B, N, C), or (x, attention (B, heads, N, N) | None) when return_attention.

        Without self-attention there are no weights to return, so the second item is None.
        """
        attention = None
        if self.attention and return_attention:
            mixed, attention = self.mixer(self.norm1(x), return_attention=True)
        else:
            mixed = self.mixer(self.norm1(x))
        x = x + mixed
        x = x + self.ff(self.norm2(x))
        return (x, attention) if return_attention else x


def sincos_positions(num_frames, grid_height, grid_width, embed_size):
    """(T*h*w, C) sine-cosine codes of (frame, row, column), tokens in (t h w) order.

    The channels are split into three even groups (rows and columns get the same share, the frame
    index the rest); each group holds sin and cos of its index at geometrically spaced
    frequencies, as in the Transformer's positional encoding (2D in MAE, here 3D).
    """
    if embed_size % 2 or embed_size < 6:
        raise ValueError(f"sincos positions need an even embed_size >= 6, got {embed_size}")
    spatial = embed_size // 3 // 2 * 2
    sizes = {"t": embed_size - 2 * spatial, "h": spatial, "w": spatial}

    def codes(count, size):  # (count, size)
        frequencies = 1.0 / 10000 ** (torch.arange(size // 2, dtype=torch.float64) / (size // 2))
        angles = torch.arange(count, dtype=torch.float64)[:, None] * frequencies[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    t, h, w = codes(num_frames, sizes["t"]), codes(grid_height, sizes["h"]), codes(grid_width, sizes["w"])
    grid = torch.cat([repeat(t, "t c -> t h w c", h=grid_height, w=grid_width),
                      repeat(h, "h c -> t h w c", t=num_frames, w=grid_width),
                      repeat(w, "w c -> t h w c", t=num_frames, h=grid_height)], dim=-1)
    return rearrange(grid, "t h w c -> (t h w) c").float()


class PatchEmbedding(tnn.Module):
    """Frames to masked, position-tagged patch tokens (sheet 2 (b)).

    frames (B, T, H, W) -> tokens (B, T*h*w, C), mask (B, T*h*w) bool (True = masked).

    Masking hides what the model has to predict. With ``num_frames > 1`` the last frame is the
    target, so all of its tokens are zeroed; with ``num_frames == 1`` (masked reconstruction)
    ``round(mask_percentage * h * w)`` random patches of each sample are zeroed. Masking happens
    after the projection and before the positional embedding, so a masked token carries only
    its position: the model knows where to predict, but not what.

    ``positional_init_std`` sets the spread of the initial positional embedding (0.02 as in ViT).
    Next to patch tokens of norm ~1 a spread of 0.02 leaves the masked tokens almost identical, so
    a larger one (1.0) lets attention tell the masked positions apart from the first step.
    ``positional_init="sincos"`` starts the (still learned) embedding from sines and cosines of
    the frame, row and column index instead (see ``sincos_positions``): tokens of the same place
    in different frames, and of neighbouring places, then look alike from the first step.
    """

    def __init__(self, num_frames, embed_size, patch_size, image_height, image_width,
                 positional_embedding=True, mask_percentage=0.5, positional_init_std=0.02,
                 positional_init="normal"):
        super().__init__()
        self.grid_height, self.grid_width = _patch_grid(num_frames, embed_size, patch_size,
                                                        image_height, image_width)
        check_positions(embed_size, mask_percentage, positional_init, positional_init_std)
        self.num_frames = num_frames
        self.patch_size = patch_size
        self.image_height = image_height
        self.image_width = image_width
        self.patches_per_frame = self.grid_height * self.grid_width
        # Python's round (half to even) fixes the count once, so every sample hides the same number.
        self.num_masked_patches = round(mask_percentage * self.patches_per_frame)
        self.proj = tnn.Linear(patch_size * patch_size, embed_size)
        if positional_embedding:
            self.positional_embedding = tnn.Parameter(
                torch.zeros(1, num_frames * self.patches_per_frame, embed_size))
            if positional_init == "sincos":
                with torch.no_grad():
                    self.positional_embedding.copy_(sincos_positions(
                        num_frames, self.grid_height, self.grid_width, embed_size)[None])
            else:
                tnn.init.trunc_normal_(self.positional_embedding, std=positional_init_std)  # cut at +-2
        else:
            # No parameter at all, so 2 (e) models neither train nor store position weights.
            self.positional_embedding = None

    def forward(self, frames, generator=None, mask=None):
        """frames (B, T, H, W) in [0, 1] -> (tokens (B, T*h*w, C), mask (B, T*h*w) bool).

        ``mask``: the tokens to hide, (B, T*h*w) bool; by default drawn by ``draw_mask`` (``generator``
        draws the random patch mask when num_frames == 1; it is unused otherwise).
        """
        expected = (self.num_frames, self.image_height, self.image_width)
        if frames.dim() != 4 or tuple(frames.shape[1:]) != expected:
            raise ValueError(f"frames must have shape (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(frames.shape)}")
        patches = rearrange(frames, "b t (h p1) (w p2) -> b (t h w) (p1 p2)",
                            p1=self.patch_size, p2=self.patch_size)
        tokens = self.proj(patches)  # (B, N, C)
        if mask is None:
            mask = self.draw_mask(frames.shape[0], frames.device, generator)  # (B, N)
        tokens = tokens.masked_fill(mask.unsqueeze(-1), 0.0)
        if self.positional_embedding is not None:
            tokens = tokens + self.positional_embedding
        return tokens, mask

    def draw_mask(self, batch_size, device, generator=None):
        """(B, T*h*w) bool, True for the tokens the model must predict."""
        if self.num_frames > 1:
            mask = torch.zeros(batch_size, self.num_frames, self.patches_per_frame,
                               dtype=torch.bool, device=device)
            mask[:, -1] = True  # the whole last frame
            return rearrange(mask, "b t n -> b (t n)")
        # Rank uniform noise per sample and hide the lowest-ranked patches (as in MAE).
        # The noise is drawn where the generator lives, so a CPU generator also serves a GPU model.
        noise_device = generator.device if generator is not None else device
        noise = torch.rand(batch_size, self.patches_per_frame, generator=generator, device=noise_device)
        hidden = noise.argsort(dim=1)[:, : self.num_masked_patches].to(device)
        mask = torch.zeros(batch_size, self.patches_per_frame, dtype=torch.bool, device=device)
        return mask.scatter(1, hidden, True)

    def pixel_mask(self, mask):
        """Token mask (B, t*h*w) -> pixel mask (B, t, H, W) of those t frames: every pixel of a masked patch is True."""
        return repeat(mask, "b (t h w) -> b t (h p1) (w p2)", h=self.grid_height, w=self.grid_width,
                      p1=self.patch_size, p2=self.patch_size)


class ReversePatchEmbedding(tnn.Module):
    """Tokens back to frames: tokens (B, T*h*w, C) -> frames (B, T, H, W).

    The transposed convolution with kernel = stride = patch size: each token becomes exactly its
    own p x p patch of pixels through a shared linear map C -> p*p (plus bias), frame by frame.
    With non-overlapping patches that convolution is one ``nn.Linear`` and a rearrange, which runs
    as a single matrix multiply (``tests/test_patch_embedding.py`` checks it against
    ``nn.ConvTranspose2d``).
    """

    def __init__(self, num_frames, embed_size, patch_size, image_height, image_width):
        super().__init__()
        self.grid_height, self.grid_width = _patch_grid(num_frames, embed_size, patch_size,
                                                        image_height, image_width)
        self.num_frames = num_frames
        self.patch_size = patch_size
        self.to_pixels = tnn.Linear(embed_size, patch_size * patch_size)

    def forward(self, tokens):
        pixels = self.to_pixels(tokens)  # (B, T*h*w, p*p)
        return rearrange(pixels, "b (t h w) (p1 p2) -> b t (h p1) (w p2)",
                         h=self.grid_height, w=self.grid_width, p1=self.patch_size, p2=self.patch_size)
