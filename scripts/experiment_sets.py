"""The named sets of Exercise 2 experiments and their config files, shared by the experiment scripts."""
from pathlib import Path

from model.config import ConfigError, load_config, with_budget

# Every variant is a config file: config/long/{variant}.json (the long runs) or config/short/{variant}.json
# (the short study of the project's first version). `python -m model.main -cfg <that file> --train`
# trains the same run; --steps replaces the file's budget (model.config.with_budget).
VARIANT_FOLDERS = ("config/long", "config/diagnosis", "config/short")
SETS = {
    # The sheet's model (config/vit_cpu.json: frame output, MSE) trained 30 000 steps: the headline numbers of 2 (c)
    # and the published checkpoint; its ablations (2 (d), (e)) at 10 000 steps.
    "sheet": ["sheet30k"],
    "sheet_ablation": ["sheet10k_full", "sheet10k_noattention", "sheet10k_nopos"],
    "sheet_masked": ["sheet_masked10k_full", "sheet_masked10k_noattention"],  # config/vit_masked.json: 1 frame
    # Beyond the sheet: the warp model (config/vit_best.json) at 30 000 steps (seed 0) and 10 000 (3 seeds).
    "warp": ["best_long", "ablation10k_full"],
    # What makes the sheet's model (frame output) learn: one recipe change each, 3000 steps (1500 at batch 32).
    "diagnosis": ["diag_template", "diag_l1", "diag_mse", "diag_mse_lr3e-4", "diag_mse_lr3e-3", "diag_mse_sincos",
                  "diag_mse_warmup1000", "diag_mse_batch32", "diag_mse_lr1e-2", "diag_mse_lr3e-3_sincos"],
    # Long runs: learning curves of the sheet's model and of the best configuration (30 000 steps); best3k: a
    # shorter budget for the compute frontier; sheet_l1_5k: the sheet's model with the L1 loss; sheet_sincos_5k:
    # with its positional embedding started from sines and cosines.
    "long": ["sheet_cpu_long", "best_long", "best3k", "sheet_l1_5k", "sheet_sincos_5k"],
    # 2 (d), (e) at 10 000 steps on the model that leaves the copy of the last frame, and what its learned warp
    # adds (the residual output instead); masked reconstruction.
    "long_ablation": ["ablation10k_full", "ablation10k_noattention", "ablation10k_nopos", "ablation10k_residual"],
    "long_masked": ["masked10k_full", "masked10k_noattention"],
    # Other footage at 10 000 steps, one set per video (a table's baselines are those of one video).
    "long_pong": ["pong10k"],
    "long_riverraid": ["riverraid10k"],
    # The short study (600 steps unless the file says otherwise); an appendix, not the evidence.
    "ablation": ["full", "noattention", "nopos"],
    "ablation_warp": ["warp_l1", "warp_l1_noattention", "warp_l1_nopos"],
    "masked": ["masked", "masked_noattention"],
    # "full" is vit_cpu.json as it is: the residual model with the template's loss.
    "study": ["plain", "full", "pos1", "sincos", "loss_l1", "loss_mse", "patch8", "frames5", "long", "warp",
              "warp_l1"],
    "atari": ["pong_full", "pong_plain"],
    "best": ["best_1500"],
    "atari_best": ["pong_best"],  # its own set: the baselines of a table are those of one video
    "atari_best_long": ["pong_best_3000"],
    "best_gate": ["best_gate"],
    "atari_best_gate": ["pong_best_gate"],
}

# What the tables call a variant (its config file's stem goes beside it).
VARIANT_LABELS = {
    "sheet30k": "sheet's model", "sheet10k_full": "sheet's model", "sheet10k_noattention": "without attention",
    "sheet10k_nopos": "without positions", "sheet_masked10k_full": "masked, with attention",
    "sheet_masked10k_noattention": "masked, without attention", "best_long": "warp model",
    "ablation10k_full": "warp model", "ablation10k_noattention": "warp, without attention",
    "ablation10k_nopos": "warp, without positions", "ablation10k_residual": "residual output",
}


def variant_names(root="."):
    """The names of every variant (config file stems under VARIANT_FOLDERS)."""
    return {path.stem for folder in VARIANT_FOLDERS for path in (Path(root) / folder).glob("*.json")}


def variant_file(variant, root="."):
    """The config file of a variant."""
    for folder in VARIANT_FOLDERS:
        path = Path(root) / folder / f"{variant}.json"
        if path.is_file():
            return path
    raise ConfigError(f"no config file for variant {variant!r} in {', '.join(VARIANT_FOLDERS)}")


def run_config(variant, steps=None, root="."):
    """The Config of one variant: its file, or with steps its file at that budget (model.config.with_budget)."""
    cfg = load_config(variant_file(variant, root))
    return cfg if steps is None else with_budget(cfg, steps)
