"""The baselines a prediction has to beat, in one registry: BASELINES, name -> Baseline.

A new baseline is its prediction in model.metrics and its entry here. The evaluator (model.evaluate), the closed
loop (model.rollout), the experiment runner's tables and figures, the learning curves, the search, the diagnosis
and predict read this registry. The name keys a baseline's numbers everywhere (copy_last_psnr in a validation
record, one_step_copy_last in a summary); the label names it in tables and figures.

A baseline's predictor has the model's signature (model.evaluate):

    predict(frames (B, T, H, W) in [0, 1], token_mask (B, T*h*w) bool or None) -> (B, H, W) in [0, 1]

One that predicts from the seen frames alone, context (B, T-1, H, W) -> (B, H, W), rolls out: it runs in
closed loop on its own predictions, and the evaluation protocol (model.protocol) scores it on the training part
and maps its error.
"""
from dataclasses import dataclass
from functools import partial
from typing import Callable

from model.metrics import (continue_motion_baseline, copy_last_frame_baseline, neighbour_fill_baseline,
                           player_held_baseline)

# What a baseline may need beyond the windows: the mean and the median training frame (H, W), the player's box
# (top, bottom, left, right: model.data.player_box) and, for masked reconstruction, the model whose patch
# embedding turns a token mask into hidden pixels.
INPUTS = ("mean_frame", "median_frame", "player_box", "masker")


@dataclass(frozen=True)
class Baseline:
    """One baseline: how it is named and drawn, the windows it applies to, and how it predicts.

    label: its name in tables and figures; short: one word for a narrow table's header; grey, hatch: its shade
    (and a bar's hatching) in figures; drawn: whether figures draw it beside the model (every table lists it);
    min_frames, max_frames: the num_frames it takes (max_frames None: no upper bound); needs: the INPUTS it takes.
    Exactly one of from_context (inputs -> predict(context (B, T-1, H, W)) -> (B, H, W): it rolls out) and
    from_window (inputs -> predict(frames, token_mask)) is given.
    """
    label: str
    short: str
    grey: str
    hatch: str | None = None
    drawn: bool = True
    min_frames: int = 1
    max_frames: int | None = None
    needs: tuple = ()
    from_context: Callable | None = None
    from_window: Callable | None = None

    @property
    def rolls_out(self):
        """Whether it predicts from the seen frames alone (and so runs in closed loop)."""
        return self.from_context is not None

    def takes_frames(self, num_frames):
        """Whether it applies to windows of num_frames frames."""
        return self.min_frames <= num_frames and (self.max_frames is None or num_frames <= self.max_frames)

    def applies(self, num_frames, inputs):
        """Whether it applies to windows of num_frames frames with inputs {name: value or None}."""
        return self.takes_frames(num_frames) and all(inputs.get(need) is not None for need in self.needs)

    def predictor(self, inputs):
        """-> predict(frames (B, T, H, W), token_mask) -> (B, H, W), the model's signature."""
        if not self.rolls_out:
            return self.from_window(inputs)
        predict = self.from_context(inputs)
        return lambda frames, token_mask: predict(frames[:, :-1])


def _training_frame(key):
    """-> from_window showing the input ``key`` (a frame (H, W)) for every window."""
    def make(inputs):
        frame = inputs[key]
        return lambda frames, token_mask: frame.to(frames.device).expand_as(frames[:, -1])
    return make


def _neighbour_fill(inputs):
    """from_window: each hidden pixel of the masked reconstruction from the visible pixels around it."""
    masker = inputs["masker"]
    return lambda frames, token_mask: neighbour_fill_baseline(frames[:, -1],
                                                              masker.embedding.pixel_mask(token_mask)[:, -1])


BASELINES = {
    "copy_last": Baseline("copy-last frame", "copy", grey="0.45", min_frames=2,
                          from_context=lambda inputs: copy_last_frame_baseline),
    "continue_motion": Baseline("continue motion", "motion", grey="0.2", hatch="//", min_frames=3,
                                from_context=lambda inputs: continue_motion_baseline),
    "player_held": Baseline("held player", "held", grey="0.05", hatch="\\\\", min_frames=3, needs=("player_box",),
                            from_context=lambda inputs: partial(player_held_baseline, player_box=inputs["player_box"])),
    "mean_frame": Baseline("mean frame", "mean", grey="0.7", needs=("mean_frame",),
                           from_window=_training_frame("mean_frame")),
    "median_frame": Baseline("median frame", "median", grey="0.85", drawn=False, needs=("median_frame",),
                             from_window=_training_frame("median_frame")),
    "neighbour_fill": Baseline("neighbour fill", "fill", grey="0.3", drawn=False, max_frames=1, needs=("masker",),
                               from_window=_neighbour_fill),
}
LABELS = {"model": "model", **{name: baseline.label for name, baseline in BASELINES.items()}}
ROLLS_OUT = tuple(name for name, baseline in BASELINES.items() if baseline.rolls_out)
DRAWN = tuple(name for name, baseline in BASELINES.items() if baseline.drawn)


def baseline_predictors(num_frames, mean_frame=None, player_box=None, median_frame=None, masker=None):
    """The baselines that apply to windows of num_frames frames with these inputs (None: not given) -> {name:
    predictor}, in the registry's order. See INPUTS for what each input is."""
    inputs = {"mean_frame": mean_frame, "median_frame": median_frame, "player_box": player_box, "masker": masker}
    return {name: baseline.predictor(inputs) for name, baseline in BASELINES.items()
            if baseline.applies(num_frames, inputs)}


def context_predictors(num_frames, player_box=None):
    """The baselines that roll out and apply to windows of num_frames frames -> {name: predict(context (B,
    num_frames - 1, H, W)) -> (B, H, W)}, in the registry's order."""
    inputs = {"player_box": player_box}
    return {name: BASELINES[name].from_context(inputs) for name in ROLLS_OUT
            if BASELINES[name].applies(num_frames, inputs)}
