"""The named sets of Exercise 2 experiments and their config files, shared by the experiment scripts."""
from pathlib import Path

from model.config import ConfigError, load_config, with_budget

# Every variant is a config file: config/long/{variant}.json (the runs of the report) or
# config/diagnosis/{variant}.json (the recipes of the diagnosis). `python -m model.main -cfg <that file> --train`
# trains the same run; --steps replaces the file's budget (model.config.with_budget).
VARIANT_FOLDERS = ("config/long", "config/diagnosis")
SETS = {
    # The sheet's model (config/vit_cpu.json: frame output, MSE) trained 30 000 steps: the headline numbers of 2 (c)
    # and the published checkpoint; its ablations (2 (d), (e)) at 10 000 steps.
    "sheet": ["sheet30k"],
    "sheet_ablation": ["sheet10k_full", "sheet10k_noattention", "sheet10k_nopos"],
    "sheet_masked": ["sheet_masked10k_full", "sheet_masked10k_noattention"],  # config/vit_masked.json: 1 frame
    # 2 (f): the search's pick and the sheet's model at width 128, each trained the FLOPs of the sheet's model's
    # 30 000 steps, beside it.
    "sheet_tuned": ["sheet30k", "tuned", "sheet_wide"],
    # 2 (f): memorising the training part (config/vit_memorise.json: width 256, 15 000 steps).
    "memorise": ["vit_memorise"],
    "memorise_long": ["vit_memorise_long"],  # the same at 40 000 steps, toward the 30 dB aim
    # Beyond the sheet: the warp model (config/vit_best.json) at 30 000 steps (seed 0) and 10 000 (3 seeds).
    "warp": ["best_long", "ablation10k_full"],
    # What makes the sheet's model (frame output) learn: one recipe change each, 3000 steps (1500 at batch 32).
    "diagnosis": ["diag_template", "diag_l1", "diag_mse", "diag_mse_lr3e-4", "diag_mse_lr3e-3", "diag_mse_sincos",
                  "diag_mse_warmup1000", "diag_mse_batch32", "diag_mse_lr1e-2", "diag_mse_lr3e-3_sincos"],
}

# What the tables call a variant (its config file's stem goes beside it).
VARIANT_LABELS = {
    "sheet30k": "sheet's model", "sheet10k_full": "sheet's model", "sheet10k_noattention": "without attention",
    "sheet10k_nopos": "without positions", "sheet_masked10k_full": "masked, with attention",
    "sheet_masked10k_noattention": "masked, without attention", "best_long": "warp model",
    "ablation10k_full": "warp model", "tuned": "search's pick", "sheet_wide": "width 128",
    "vit_memorise": "memorising", "vit_memorise_long": "memorising, 40 000 steps",
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
