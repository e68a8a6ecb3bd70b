#!/usr/bin/env bash
# Regenerate every committed result, figure and the documentation PDF from a clean clone.
#
#   bash scripts/reproduce.sh                 # everything, at the budgets of the committed results
#   SEEDS="0" TRIALS=4 bash scripts/reproduce.sh   # fewer seeds and trials (other numbers than committed)
#
# Expected time on 2 CPU cores: about 25 one-thread hours of training, ~13 h with two runs side by side (README).
#
# Environment overrides (defaults are the committed results' budgets):
#   TS_SEEDS="0 1 2 3 4 5 6 7 8 9"  JOBS=2     Exercise 1 seeds and parallel processes
#   SEEDS="0 1 2"                    seeds of the sheet's model, its ablations, masked reconstruction, the warp model
#   TRIALS=20  TRIAL_STEPS=3000      size of the Optuna study (sheet 2 (f)): finished trials (complete or
#                                    pruned); every trial trains the FLOPs of TRIAL_STEPS steps of config/vit_cpu.json
#   BENCH_ARGS=""                    extra flags of scripts/bench.py (e.g. --quick)
#   SOURCE_DATE_EPOCH                date printed in the PDF
#
# Resumable: stop it at any time and start it again. The Exercise 2 runners skip finished runs and
# resume unfinished ones from their quicksave.ckpt; the Optuna study runs only the trials its journal
# (out/tune_sheet/sheet.journal) still lacks (tune.py --until); the data file is written only when
# missing; an Exercise 1 grid stopped here continues with its finished runs kept (main.py --resume); the
# Exercise 1 grids and the benchmark rerun unless out/reproduce/ records that the same command finished.
# Run folders go to out/, the results the report cites to results/.
set -euo pipefail
cd "$(dirname "$0")/.."

read -ra TS_SEEDS <<< "${TS_SEEDS:-0 1 2 3 4 5 6 7 8 9}"
JOBS=${JOBS:-2}
read -ra SEEDS <<< "${SEEDS:-0 1 2}"
TRIALS=${TRIALS:-20}
TRIAL_STEPS=${TRIAL_STEPS:-3000}
STAMPS=out/reproduce

# grid OUT FLAGS...: the Exercise 1 grid of FLAGS into OUT. It replaces the grid OUT holds (the committed one)
# once it has finished (main.py --overwrite); one this script left unfinished continues instead (--resume).
grid() {
    local out=$1
    shift
    if [[ -f $out/.new_grid/results.json ]] || grep -qs '"finished": false' "$out/results.json"; then
        python main.py "$@" --out "$out" --resume
    else
        python main.py "$@" --out "$out" --overwrite
    fi
}

# once NAME COMMAND...: run COMMAND unless out/reproduce/NAME.done records that this exact command finished.
once() {
    local stamp=$STAMPS/$1.done
    shift
    if [[ -f $stamp && "$(cat "$stamp")" == "$*" ]]; then
        echo "(finished before: $*)"
        return 0
    fi
    "$@"
    mkdir -p "$STAMPS"
    printf '%s' "$*" > "$stamp"
}

echo "== Exercise 1: every model on every task, ${#TS_SEEDS[@]} seeds"
once timeseries grid results/timeseries --tasks memory memorygen memorygen_reverse --seeds "${TS_SEEDS[@]}" \
    --jobs "$JOBS"
once timeseries_default grid results/timeseries/default   # the template's command: seed 0
python -m scripts.exercise1_analysis --results results/timeseries
OMP_NUM_THREADS=1 python -m scripts.exercise1_delays   # 1(d): the explanation tested (results/timeseries/delays.*)

echo "== Exercise 2: data (written only when missing)"
[[ -f gameplay-data.hdf5 ]] || python -m model.scripts.make_gameplay --out gameplay-data.hdf5
python -m scripts.patch_code gameplay-data.hdf5 --out results/vit/patch_code.json   # the frame output's ceiling

echo "== Exercise 2 (c): what makes the sheet's model learn (3000 steps per recipe, one-batch fits)"
python -m scripts.run_experiments --set diagnosis --seeds 0 --runs-dir out/diagnosis --threads 1 --no-figures
python -m scripts.diagnose --threads 1

echo "== Exercise 2 (c)-(e): the sheet's model, its ablations, masked reconstruction (hours each; one thread per run)"
python -m scripts.run_experiments --set sheet --seeds "${SEEDS[@]}" --threads 1
python -m scripts.run_experiments --set sheet_ablation --seeds "${SEEDS[@]}" --threads 1
python -m scripts.run_experiments --set sheet_masked --seeds "${SEEDS[@]}" --threads 1
for set in sheet sheet_ablation sheet_masked; do
    python -m scripts.learning_curves --set $set --seeds "${SEEDS[@]}"
done
# The published checkpoints: of each model's seeds the one chosen on validation.
python -m model.scripts.export_checkpoint $(printf 'out/experiments/sheet30k.seed%s/final.ckpt ' "${SEEDS[@]}") \
    results/vit/vit_cpu.ckpt
python -m model.scripts.export_checkpoint $(printf 'out/experiments/sheet_masked10k_full.seed%s/final.ckpt ' "${SEEDS[@]}") \
    results/vit/vit_masked.ckpt
# The sheet's model's attention, head by head, from its published checkpoint (report Figure 5 and the shares per head).
python -m scripts.attention results/vit/vit_cpu.ckpt --out results/vit/sheet/attention_sheet30k
python -m scripts.targets   # where the targets stand (results/vit/targets.md)

echo "== Exercise 2 (f): hyperparameter search of the sheet's model; its pick, and width 128, at the sheet's budget"
python -m scripts.tune --until "$TRIALS" --steps-per-trial "$TRIAL_STEPS" --threads 1 --best-config config/vit_tuned.json
# How far seeds alone move the search's objective: the sheet's model at the search's budget, three seeds.
python -m scripts.run_experiments --runs sheet30k --steps "$TRIAL_STEPS" --seeds "${SEEDS[@]}" --runs-dir out/search_spread \
    --threads 1 --no-figures --results out/search_spread_results
python -m scripts.learning_curves --variants sheet30k --seeds "${SEEDS[@]}" --runs-dir out/search_spread \
    --out results/vit/search_spread
python -m scripts.run_experiments --runs tuned --seeds 0 --threads 1 --no-figures --results out/reproduce/sheet_tuned
python -m scripts.run_experiments --runs sheet_wide --seeds 0 1 --threads 1 --no-figures --results out/reproduce/sheet_tuned
python -m scripts.run_experiments --set sheet_tuned --seeds "${SEEDS[@]}" --no-train  # the sheet's model: every seed
python -m scripts.learning_curves --set sheet_tuned --seeds "${SEEDS[@]}"
python -m model.scripts.export_checkpoint out/experiments/sheet_wide.seed{0,1}/final.ckpt results/vit/vit_wide.ckpt

echo "== Exercise 2 (f): memorising the training part (config/vit_memorise.json, ~1.7 h a seed on one thread)"
python -m scripts.run_experiments --set memorise --seeds "${SEEDS[@]}" --threads 1 --no-figures
python -m scripts.memorisation   # the curves of every seed: results/vit/memorise/curve.json, curve.png
python -m model.scripts.export_checkpoint out/experiments/vit_memorise.seed*/final.ckpt results/vit/vit_memorise.ckpt
for split in train val test; do
    python -m model.main -cfg config/vit_memorise.json --validate --load results/vit/vit_memorise.ckpt --split $split \
        --output results/vit/memorise/validation_$split.json
done
python -m scripts.artifacts      # the visible artifacts of every published model: results/vit/artifacts/

echo "== Beyond the sheet: the warp model (config/vit_best.json)"
# best_long (30 000 steps) has one seed, ablation10k_full (10 000 steps) three; then the set's report.
python -m scripts.run_experiments --runs best_long --seeds 0 --threads 1 --no-figures --results out/reproduce/warp
python -m scripts.run_experiments --runs ablation10k_full --seeds "${SEEDS[@]}" --threads 1 --no-figures \
    --results out/reproduce/warp
python -m scripts.run_experiments --set warp --seeds "${SEEDS[@]}" --no-train
python -m model.scripts.export_checkpoint out/experiments/best_long.seed0/final.ckpt results/vit/vit_best_long.ckpt

echo "== Performance"
read -ra BENCH_ARGS <<< "${BENCH_ARGS:-}"
once bench python -m scripts.bench ${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"} --json results/bench/bench.json

echo "== Documentation: docs/report.md -> docs/report.pdf"
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1732700000} python -m scripts.build_report
