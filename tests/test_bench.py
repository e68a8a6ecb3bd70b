"""Smoke test of scripts/bench.py: it runs and writes its table and JSON. Nothing here is timed."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "bench.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_writes_table_and_json(tmp_path):
    path = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "scripts.bench", "--quick", "--only", "gpu", "--json", str(path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "| section | measurement | value | target | status |" in result.stdout
    written = json.loads(path.read_text())
    assert written["machine"]["torch"] and written["rows"]


def test_attention_variants_run_and_compare():
    bench = load_bench()
    times = bench.interleaved(bench.attention_pair(tokens=16, batch=2, width=8), reps=2, warmup=1)
    assert set(times) == {"hand-written", "sdpa"} and all(t > 0 for t in times.values())


def test_check_marks_pass_and_miss():
    table = load_bench().Table()
    assert table.check("x", "faster", 1.0, 1.1, higher_is_better=False)
    assert not table.check("x", "speed-up", 1.2, 1.7, higher_is_better=True)
    assert [row[-1] for row in table.rows] == ["PASS", "MISS"]


def test_jobs_grid_is_long_enough_to_measure_throughput():
    """The --jobs 1 / --jobs 2 grid of the full run: training, not process start-up (~3 s), must dominate."""
    bench = load_bench()
    args, runs = bench.grid_args(quick=False)
    epochs = int(args[args.index("--epochs") + 1])
    seeds = args[args.index("--seeds") + 1:args.index("--epochs")]
    assert runs >= 16 and epochs >= 50 and len(seeds) > 1  # >= 40 s of training in one thread
    quick_args, quick_runs = bench.grid_args(quick=True)
    assert quick_runs >= 2 and "--seeds" in quick_args


def test_the_training_loop_is_timed_and_its_profile_grouped():
    from types import SimpleNamespace

    from model.config import config_from_dict, with_overrides

    bench = load_bench()
    cfg = config_from_dict({"num_workers": 0, "model": {"batch_size": 2, "image_height": 16, "image_width": 16,
                                                         "patch_size": 8, "channels": 8, "layers": 1}})
    seconds = bench.train_seconds_per_step(cfg, steps=4, skip=1)
    assert 0 < seconds < 10
    val, windows, shares = bench.validation_seconds(with_overrides(cfg, {"training.validation_batches": 3}))
    assert 0 < val < 10 and windows == 3 * 2 and 0 < shares["baselines (once per run)"] < 1  # 3 batches of 2
    events = [SimpleNamespace(key="aten::mm", self_cpu_time_total=2e5),
              SimpleNamespace(key="aten::_scaled_dot_product_flash_attention_for_cpu", self_cpu_time_total=1e5),
              SimpleNamespace(key="aten::mul", self_cpu_time_total=1e5),
              SimpleNamespace(key="aten::something_else", self_cpu_time_total=1e5)]
    shares = bench.group_profile(events, wall=1.0)
    assert shares["matrix products"] == 0.2 and shares["attention"] == 0.1 and shares["element-wise"] == 0.1
    assert shares["other ops"] == 0.1 and abs(shares["Python and framework"] - 0.5) < 1e-9


def test_time_to_quality_stops_at_the_bar_and_keeps_samples_fixed(monkeypatch):
    """The run stops at the first validation past copy-last + the margin; batch size scales the learning rate
    by its square root and the step counts inversely, so the budget and the bar are the same in samples."""
    import numpy as np

    from model.config import config_from_dict

    bench = load_bench()
    cfg = config_from_dict({"num_workers": 0, "learning_rate": 1e-3,
                            "model": {"batch_size": 4, "image_height": 16, "image_width": 16, "num_frames": 2,
                                      "patch_size": 8, "channels": 8, "layers": 1},
                            "training": {"warmup_steps": 4}})
    frames = np.random.default_rng(0).integers(0, 256, (120, 16, 16), dtype=np.uint8)
    settings = dict(validate_every=4, validation_batches=2, max_samples=48, compile_=False)
    monkeypatch.setattr(bench, "QUALITY_MARGIN_DB", -100.0)  # every validation passes: stop at the first
    first = bench.time_to_quality(cfg, frames, 8, **settings)
    assert first["reached"] and first["step"] == 2 and first["samples"] == 16
    assert abs(first["learning_rate"] - 1e-3 * 2 ** 0.5) < 1e-12 and first["steps_budget"] == 6
    assert 0 < first["train_seconds"] <= first["seconds"]
    monkeypatch.setattr(bench, "QUALITY_MARGIN_DB", 100.0)  # never passes: the whole budget
    never = bench.time_to_quality(cfg, frames, 2, **settings)
    assert not never["reached"] and never["step"] == never["steps_budget"] == 24 and never["samples"] == 48


def test_the_plain_reference_vit_predicts_the_last_frame_and_both_steps_train():
    import torch

    from model.config import with_overrides
    bench = load_bench()
    cfg = with_overrides(bench.load_config(bench.ROOT / "config/vit_cpu.json"),
                         {"model.image_height": 32, "model.image_width": 32, "model.channels": 16, "model.layers": 1,
                          "model.batch_size": 4})
    model = bench.PlainViT(cfg.model)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 32, 32)
    assert sum(p.numel() for p in model.parameters()) == sum(  # the same sizes as the project's model
        p.numel() for p in bench.VisionTransformer.from_config(cfg.model).parameters())
    windows = bench.FrameWindows(bench.synthetic_video(cfg, 40), cfg.model.num_frames)
    bench.plain_step(cfg, windows, bench.WindowSampler(len(windows), 4, 0))()
    bench.project_step(cfg, windows)()
