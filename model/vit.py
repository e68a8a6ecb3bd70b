"""The predictive Vision Transformer: next-frame prediction as masked patch prediction.

A window of T frames is cut into patches, the last frame's patches are hidden (or, with T == 1, a
random share of the single frame's patches), and a stack of pre-norm transformer blocks fills them
in from the visible ones. The reverse patch embedding turns the tokens back into frames, and an
output head (the frames as they are, or the change from the last seen frame) makes the prediction.

    frames (B, T, H, W) -> tokens (B, T*h*w, C) -> blocks -> LayerNorm -> pixels (B, T, H, W) -> head
"""
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn as tnn

from nn.attention import AttentionBlock, OptionError, PatchEmbedding, ReversePatchEmbedding


# Initial logit of "no shift" in the warp head (the other shifts start at 0): with the 25 shifts of
# radius 2 the copy of the last frame gets e^6 / (e^6 + 24) = 94 % of the weight. Larger values start
# closer to the copy but pass almost no gradient to the other shifts (softmax saturation).
WARP_IDENTITY_LOGIT = 6.0
# A pixel "changed" between two seen frames when it moved by at least one 8-bit gray level.
CHANGE_THRESHOLD = 0.5 / 255


OUTPUTS = ("frame", "residual", "warp")
WARP_RADIUS = 2  # the default shift range of the warp output: (2 * 2 + 1)^2 = 25 shifts


class VisionTransformer(tnn.Module):
    """Predicts the masked pixels of a window of frames: the sheet's ViT followed by an output head.

    Ablations of the sheet are constructor options: ``attention=False`` replaces self-attention by
    per-token feed-forward layers (2 (d)); ``positional_embedding=False`` drops the positional
    embedding (2 (e)). ``positional_init`` ("normal" with spread ``positional_init_std``, or "sincos")
    is how that embedding starts.

    ``output`` chooses the head after the reverse patch embedding (see the head classes below):
    "frame" (the sheet's: the frames as the reverse embedding gives them), "residual" (the change
    from the last seen frame) or "warp" (the change from the last seen frame moved by a learned
    per-pixel mixture of shifts within ``warp_radius`` pixels). With "residual" and "warp" the
    reverse embedding starts at zero, so the untrained model predicts (close to) the copy of the last
    frame, and ``change_radius=k > 0`` (num_frames > 2) keeps the last frame exactly wherever no pixel
    within k changed between the last two seen frames.
    """

    def __init__(self, num_frames, image_height, image_width, patch_size, channels, num_heads, layers,
                 attention=True, positional_embedding=True, output="frame", warp_radius=None, change_radius=0,
                 mask_percentage=0.5, fused_attention=True, positional_init="normal", positional_init_std=0.02):
        super().__init__()
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers must be a positive integer, got {layers!r}")
        check_head_options(output, num_frames, warp_radius, change_radius)
        self.num_frames = num_frames
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
        self.head = make_head(output, num_frames=num_frames, channels=channels, patch_size=patch_size,
                              grid=(self.embedding.grid_height, self.embedding.grid_width),
                              warp_radius=warp_radius, change_radius=change_radius)
        if output != "frame":  # the change starts at zero: the untrained model is the copy of the last frame
            for parameter in self.reverse_embedding.parameters():
                tnn.init.zeros_(parameter)

    @classmethod
    def from_config(cls, model_cfg):
        """Build from the config's ``model`` section (a ModelConfig)."""
        return cls(**model_cfg.model_kwargs())

    def forward(self, frames, generator=None, return_attention=False, mask=None, last_frame_only=False):
        """frames (B, T, H, W) in [0, 1] -> dict with

        prediction (B, T, H, W): raw output (not clamped); only the masked pixels are predictions,
        pixel_mask (B, T, H, W) bool: True where the input was hidden,
        attention: list of (B, heads, N, N) per block (None for blocks without attention) when
        return_attention, else None.
        ``generator`` draws the random patch mask when num_frames == 1; ``mask`` (B, T*h*w) bool gives it instead.
        ``last_frame_only``: prediction and pixel_mask of the last frame alone, (B, 1, H, W), the only one
        that holds masked pixels (training needs no more: the final norm and the reverse embedding then run
        on that frame's tokens only; per token, so its values are those of the full output).
        """
        tokens, mask = self.embedding(frames, generator=generator, mask=mask)  # (B, N, C), (B, N)
        attention = [] if return_attention else None
        for block in self.blocks:
            if return_attention:
                tokens, weights = block(tokens, return_attention=True)
                attention.append(weights)
            else:
                tokens = block(tokens)
        if last_frame_only:
            tokens, mask = tokens[:, -self.embedding.patches_per_frame:], mask[:, -self.embedding.patches_per_frame:]
        tokens = self.norm(tokens)
        pixels = self.reverse_embedding(tokens)  # (B, T, H, W), or (B, 1, H, W) of the last frame alone
        prediction = self.head(pixels, frames, tokens[:, -self.embedding.patches_per_frame:])
        return {"prediction": prediction, "pixel_mask": self.embedding.pixel_mask(mask),
                "attention": attention}

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
        return self(frames, last_frame_only=True)["prediction"][:, -1].clamp(0, 1)


def check_head_options(output, num_frames, warp_radius=None, change_radius=0, key=str):
    """The output head's options and their combinations with num_frames (model.config checks a config's with
    this too, ``key`` spelling the names as its keys)."""
    if output not in OUTPUTS:
        raise OptionError(key("output"), f"{output!r} is not one of {', '.join(OUTPUTS)}")
    if output != "frame" and num_frames < 2:
        raise OptionError(key("output"), f"{output!r} needs {key('num_frames')} > 1 (a previous frame to add "
                                         f"the change to)")
    if warp_radius is not None:
        if output != "warp":
            raise OptionError(key("warp_radius"), f"applies to {key('output')} 'warp' only, not {output!r} (leave it "
                                                  f"out or set it to null)")
        if isinstance(warp_radius, bool) or not isinstance(warp_radius, int) or warp_radius < 1:
            raise OptionError(key("warp_radius"), f"must be a positive integer, got {warp_radius!r}")
    if isinstance(change_radius, bool) or not isinstance(change_radius, int) or change_radius < 0:
        raise OptionError(key("change_radius"), f"must be a non-negative integer, got {change_radius!r}")
    if change_radius and (output == "frame" or num_frames < 3):
        raise OptionError(key("change_radius"), f"{change_radius} needs {key('output')} 'residual' or 'warp' and "
                                                f"{key('num_frames')} > 2 (two seen frames to compare)")


def make_head(output, *, num_frames, channels, patch_size, grid, warp_radius=None, change_radius=0):
    """The output head for ``output`` (one of OUTPUTS), its options checked."""
    check_head_options(output, num_frames, warp_radius, change_radius)
    if output == "frame":
        return FrameHead()
    if output == "residual":
        return ResidualHead(change_radius)
    return WarpHead(channels, patch_size, grid, WARP_RADIUS if warp_radius is None else warp_radius, change_radius)


class FrameHead(tnn.Module):
    """The sheet's output: the frames of the reverse patch embedding as they are."""

    def forward(self, pixels, frames, target_tokens):
        return pixels


class ResidualHead(tnn.Module):
    """The change from the last seen frame: prediction of frame T-1 = frame T-2 + output.

    ``change_radius=k > 0`` uses the output only near recent change: a pixel with no pixel within k
    (a (2k+1)^2 square) that changed between the last two seen frames keeps the last frame's value
    exactly. Where the scene stands still the prediction is then the copy, without the small residue
    a linear output leaves everywhere; the price is that motion starting in a still region is missed.
    """

    def __init__(self, change_radius=0):
        super().__init__()
        self.change_radius = change_radius

    def base(self, last_seen, target_tokens):
        """The frame the change is added to: the last seen frame (B, H, W)."""
        return last_seen

    def forward(self, pixels, frames, target_tokens):
        last_seen = frames[:, -2]  # (B, H, W)
        last = pixels[:, -1] + self.base(last_seen, target_tokens)
        if self.change_radius:
            last = torch.where(change_support(frames[:, -3], last_seen, self.change_radius), last, last_seen)
        return torch.cat([pixels[:, :-1], last[:, None]], dim=1)


class WarpHead(ResidualHead):
    """The change added to the last seen frame moved by a learned per-pixel warp.

    A linear map of each target token predicts, for every pixel of its patch, softmax weights over the
    integer shifts (dy, dx) in [-r, r]^2, and the frame is replaced by that weighted sum of its shifted
    copies (the dynamic filters of Finn et al., 2016). A scrolling scene then costs the model one choice
    per pixel instead of every moved pixel value. The map starts at the weight WARP_IDENTITY_LOGIT on
    "no shift" and 0 on the others, so the untrained head is close to the copy of the last frame.
    """

    def __init__(self, channels, patch_size, grid, warp_radius, change_radius=0):
        super().__init__(change_radius)
        check_head_options("warp", 2, warp_radius)
        self.warp_radius, self.patch_size, (self.grid_height, self.grid_width) = warp_radius, patch_size, grid
        self.shifts = [(dy, dx) for dy in range(-warp_radius, warp_radius + 1)
                       for dx in range(-warp_radius, warp_radius + 1)]
        # Per token: one logit per shift for each of its p x p pixels (shift-major).
        self.warp = tnn.Linear(channels, len(self.shifts) * patch_size * patch_size)
        tnn.init.zeros_(self.warp.weight)
        with torch.no_grad():
            bias = torch.zeros(len(self.shifts), patch_size * patch_size)
            bias[self.shifts.index((0, 0))] = WARP_IDENTITY_LOGIT
            self.warp.bias.copy_(bias.flatten())

    def weights(self, target_tokens):
        """Tokens of the target frame (B, h*w, C) -> per-pixel shift weights (B, S, H, W), summing to 1.

        S = (2 r + 1)^2 shifts in the order of ``self.shifts``.
        """
        logits = rearrange(self.warp(target_tokens), "b (h w) (s p1 p2) -> b s (h p1) (w p2)",
                           h=self.grid_height, w=self.grid_width, s=len(self.shifts),
                           p1=self.patch_size, p2=self.patch_size)
        return logits.softmax(dim=1)

    def base(self, last_seen, target_tokens):
        """frame (B, H, W) -> (B, H, W): at every pixel the weighted sum of the frame moved by each shift.

        Moving by (dy, dx) takes pixel (y - dy, x - dx), the borders repeated (as model.metrics.shift_frame).
        """
        r = self.warp_radius
        height, width = last_seen.shape[-2:]
        padded = F.pad(last_seen[:, None], (r, r, r, r), mode="replicate")[:, 0]  # (B, H + 2r, W + 2r)
        moved = torch.stack([padded[:, r - dy: r - dy + height, r - dx: r - dx + width]
                             for dy, dx in self.shifts], dim=1)  # (B, S, H, W)
        return (self.weights(target_tokens) * moved).sum(dim=1)


def change_support(before, last, radius):
    """Frames (B, H, W) -> bool (B, H, W): True within ``radius`` pixels (a (2 radius + 1)^2 square) of a
    pixel that changed by at least one gray level from ``before`` to ``last``."""
    changed = ((last - before).abs() > CHANGE_THRESHOLD).to(last.dtype)[:, None]
    size = 2 * radius + 1  # the square's maximum as a row maximum, then a column maximum
    rows = F.max_pool2d(changed, (1, size), stride=1, padding=(0, radius))
    return F.max_pool2d(rows, (size, 1), stride=1, padding=(radius, 0))[:, 0] > 0
