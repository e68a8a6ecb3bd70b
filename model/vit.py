"""The predictive Vision Transformer: next-frame prediction as masked patch prediction.

A window of T frames is cut into patches, the last frame's patches are hidden (or, with T == 1, a
random share of the single frame's patches), and a stack of pre-norm transformer blocks fills them
in from the visible ones. The reverse patch embedding turns the tokens back into frames.

    frames (B, T, H, W) -> tokens (B, T*h*w, C) -> blocks -> LayerNorm -> frames (B, T, H, W)
"""
import dataclasses

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn as tnn

from nn.attention import AttentionBlock, PatchEmbedding, ReversePatchEmbedding


# Initial logit of "no shift" in the warp head (the other shifts start at 0): with the 25 shifts of
# radius 2 the copy of the last frame gets e^6 / (e^6 + 24) = 94 % of the weight. Larger values start
# closer to the copy but pass almost no gradient to the other shifts (softmax saturation).
WARP_IDENTITY_LOGIT = 6.0
# A pixel "changed" between two seen frames when it moved by at least one 8-bit gray level.
CHANGE_THRESHOLD = 0.5 / 255


class VisionTransformer(tnn.Module):
    """Predicts the masked pixels of a window of frames.

    Ablations of the sheet are constructor options: ``attention=False`` replaces self-attention by
    per-token feed-forward layers (2 (d)); ``positional_embedding=False`` drops the positional
    embedding (2 (e)). ``residual=True`` (num_frames > 1 only) predicts the change from the last
    seen frame: prediction of frame T-1 = frame T-2 + output. Its output projection then starts at
    zero, so an untrained residual model already predicts the copy of the last frame and learns
    only what moves (``zero_init_output=False`` keeps the default initialisation, so the blocks get
    gradients from the first step). ``positional_init_std`` is the spread of the initial positional
    embedding.

    ``warp_radius=r > 0`` (with residual) moves the last seen frame before the change is added: a
    second head predicts, for every pixel of the target frame, softmax weights over the integer
    shifts (dy, dx) in [-r, r]^2, and the frame is replaced by that weighted sum of its shifted
    copies (a learned per-pixel warp, the dynamic filters of Finn et al., 2016). A scrolling scene
    then costs the model one choice per pixel instead of every moved pixel value. The head starts
    at the weight ``WARP_IDENTITY_LOGIT`` on "no shift" and 0 on the others, so the untrained model
    predicts close to the copy of the last frame.

    ``change_radius=k > 0`` (with residual, num_frames > 2) uses the output only near recent change:
    a pixel with no pixel within k (a (2k+1)^2 square) that changed between the last two seen frames
    keeps the last frame's value exactly. Where the scene stands still the prediction is then the
    copy, without the small residue a linear output head leaves everywhere; the price is that motion
    starting in a still region is not predicted.
    """

    def __init__(self, num_frames, image_height, image_width, patch_size, channels, num_heads, layers,
                 attention=True, positional_embedding=True, residual=False, mask_percentage=0.5,
                 fused_attention=True, positional_init_std=0.02, zero_init_output=True,
                 positional_init="normal", warp_radius=0, change_radius=0):
        super().__init__()
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers must be a positive integer, got {layers!r}")
        if residual and num_frames < 2:
            raise ValueError("residual=True needs num_frames > 1 (a previous frame to add the change to)")
        if isinstance(warp_radius, bool) or not isinstance(warp_radius, int) or warp_radius < 0:
            raise ValueError(f"warp_radius must be a non-negative integer, got {warp_radius!r}")
        if warp_radius and not residual:
            raise ValueError("warp_radius > 0 needs residual=True (the warp moves the frame the change is added to)")
        if isinstance(change_radius, bool) or not isinstance(change_radius, int) or change_radius < 0:
            raise ValueError(f"change_radius must be a non-negative integer, got {change_radius!r}")
        if change_radius and not (residual and num_frames > 2):
            raise ValueError("change_radius > 0 needs residual=True and num_frames > 2 (two seen frames to compare)")
        self.num_frames = num_frames
        self.residual = residual
        self.embedding = PatchEmbedding(num_frames, channels, patch_size, image_height, image_width,
                                        positional_embedding=positional_embedding,
                                        mask_percentage=mask_percentage,
                                        positional_init_std=positional_init_std,
                                        positional_init=positional_init)
        self.blocks = tnn.ModuleList(
            AttentionBlock(channels, num_heads, attention=attention, fused=fused_attention)
            for _ in range(layers))
        self.norm = tnn.LayerNorm(channels)  # pre-norm blocks leave the residual stream unnormalised
        self.reverse_embedding = ReversePatchEmbedding(num_frames, channels, patch_size, image_height,
                                                       image_width)
        if residual and zero_init_output:
            for parameter in self.reverse_embedding.parameters():
                tnn.init.zeros_(parameter)
        self.warp_radius = warp_radius
        self.change_radius = change_radius
        self.shifts = [(dy, dx) for dy in range(-warp_radius, warp_radius + 1)
                       for dx in range(-warp_radius, warp_radius + 1)]
        self.warp = None
        if warp_radius:
            # Per token: one logit per shift for each of its p x p pixels (shift-major).
            self.warp = tnn.Linear(channels, len(self.shifts) * patch_size * patch_size)
            tnn.init.zeros_(self.warp.weight)
            with torch.no_grad():
                bias = torch.zeros(len(self.shifts), patch_size * patch_size)
                bias[self.shifts.index((0, 0))] = WARP_IDENTITY_LOGIT
                self.warp.bias.copy_(bias.flatten())

    @classmethod
    def from_config(cls, model_cfg):
        """Build from the config's ``model`` section (a ModelConfig)."""
        return cls(**model_kwargs(model_cfg))

    def forward(self, frames, generator=None, return_attention=False):
        """frames (B, T, H, W) in [0, 1] -> dict with

        prediction (B, T, H, W): raw output (not clamped); only the masked pixels are predictions,
        pixel_mask (B, T, H, W) bool: True where the input was hidden,
        attention: list of (B, heads, N, N) per block (None for blocks without attention) when
        return_attention, else None.
        ``generator`` draws the random patch mask when num_frames == 1.
        """
        tokens, mask = self.embedding(frames, generator=generator)  # (B, N, C), (B, N)
        attention = [] if return_attention else None
        for block in self.blocks:
            if return_attention:
                tokens, weights = block(tokens, return_attention=True)
                attention.append(weights)
            else:
                tokens = block(tokens)
        tokens = self.norm(tokens)
        prediction = self.reverse_embedding(tokens)  # (B, T, H, W)
        if self.residual:
            base = frames[:, -2]  # (B, H, W): the last seen frame
            if self.warp is not None:
                base = self.warp_frame(base, tokens[:, -self.embedding.patches_per_frame:])
            last = prediction[:, -1] + base  # the change added to the (moved) last seen frame
            if self.change_radius:
                support = change_support(frames[:, -3], frames[:, -2], self.change_radius)
                last = torch.where(support, last, frames[:, -2])
            prediction = torch.cat([prediction[:, :-1], last[:, None]], dim=1)
        return {"prediction": prediction, "pixel_mask": self.embedding.pixel_mask(mask),
                "attention": attention}

    def warp_weights(self, target_tokens):
        """Tokens of the target frame (B, h*w, C) -> per-pixel shift weights (B, S, H, W), summing to 1.

        S = (2 r + 1)^2 shifts in the order of ``self.shifts``.
        """
        embedding = self.embedding
        logits = rearrange(self.warp(target_tokens), "b (h w) (s p1 p2) -> b s (h p1) (w p2)",
                           h=embedding.grid_height, w=embedding.grid_width, s=len(self.shifts),
                           p1=embedding.patch_size, p2=embedding.patch_size)
        return logits.softmax(dim=1)

    def warp_frame(self, frame, target_tokens):
        """frame (B, H, W) -> (B, H, W): at every pixel the weighted sum of the frame moved by each shift.

        Moving by (dy, dx) takes pixel (y - dy, x - dx), the borders repeated (as model.metrics.shift_frame).
        """
        r = self.warp_radius
        height, width = frame.shape[-2:]
        padded = F.pad(frame[:, None], (r, r, r, r), mode="replicate")[:, 0]  # (B, H + 2r, W + 2r)
        moved = torch.stack([padded[:, r - dy: r - dy + height, r - dx: r - dx + width]
                             for dy, dx in self.shifts], dim=1)  # (B, S, H, W)
        return (self.warp_weights(target_tokens) * moved).sum(dim=1)

    def predict_next_frame(self, context):
        """context (B, T-1, H, W) in [0, 1] -> next frame (B, H, W) clamped to [0, 1].

        A blank frame takes the place of the unknown one; it is masked anyway.
        """
        if self.num_frames < 2:
            raise ValueError("predict_next_frame needs a model with num_frames > 1")
        if context.dim() != 4 or context.shape[1] != self.num_frames - 1:
            raise ValueError(f"context must have shape (B, {self.num_frames - 1}, H, W), "
                             f"got {tuple(context.shape)}")
        frames = torch.cat([context, torch.zeros_like(context[:, :1])], dim=1)  # (B, T, H, W)
        return self(frames)["prediction"][:, -1].clamp(0, 1)


def change_support(before, last, radius):
    """Frames (B, H, W) -> bool (B, H, W): True within ``radius`` pixels (a (2 radius + 1)^2 square) of a
    pixel that changed by at least one gray level from ``before`` to ``last``."""
    changed = ((last - before).abs() > CHANGE_THRESHOLD).to(last.dtype)[:, None]
    size = 2 * radius + 1  # the square's maximum as a row maximum, then a column maximum
    rows = F.max_pool2d(changed, (1, size), stride=1, padding=(0, radius))
    return F.max_pool2d(rows, (size, 1), stride=1, padding=(radius, 0))[:, 0] > 0


def model_kwargs(model_cfg):
    """The VisionTransformer arguments held by a ModelConfig (stored in checkpoints)."""
    names = ("num_frames", "image_height", "image_width", "patch_size", "channels", "num_heads", "layers",
             "attention", "positional_embedding", "residual", "mask_percentage", "fused_attention",
             "positional_init_std", "zero_init_output", "positional_init", "warp_radius",
             "change_radius")
    values = dataclasses.asdict(model_cfg)
    return {name: values[name] for name in names}
