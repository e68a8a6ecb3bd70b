"""The training loop and its command line: learning, run folder, exact resume, signals, bad checkpoints."""
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import model.engine as engine
from model import main as train_cli
from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import config_from_dict, load_config, with_overrides
from model.distributed import Ranks, StopFlag
from model.evaluate import evaluate
from model.data import FrameWindows, Video, load_frames

REPO = Path(__file__).resolve().parents[1]


def bouncing_square(num_frames=40, size=32):
    """uint8 (N, size, size): a 6x6 square bouncing off the walls below a static grey bar."""
    frames = np.zeros((num_frames, size, size), np.uint8)
    frames[:, :3] = 80
    x, y, vx, vy = 4, 10, 1, 1
    for frame in frames:
        frame[y: y + 6, x: x + 6] = 255
        x, y = x + vx, y + vy
        vx = -vx if not 0 < x < size - 6 else vx
        vy = -vy if not 3 < y < size - 6 else vy
    return frames


def tiny_setup(tmp_path, model=None, training=None, **top):
    """A 40-frame 32x32 video and a config for a 1-layer, 16-channel model -> config path."""
    video = tmp_path / "video.hdf5"
    if not video.exists():
        with h5py.File(video, "w") as file:
            file.create_dataset("rgb_images", data=bouncing_square())
    raw = {"model_path": "tiny", "num_workers": 0, "learning_rate": 3e-3,
           "data": {"hdf5_file": str(video), "validation_fraction": 0.2, "test_fraction": 0.0},
           "model": {"batch_size": 4, "image_height": 32, "image_width": 32, "num_frames": 3, "channels": 16,
                     "num_heads": 2, "layers": 1, "patch_size": 8, **(model or {})},
           "training": {"warmup_steps": 2, "max_steps": 8, "quicksave_every": 4, "validate_every": 4,
                        "validation_batches": 2, "log_every": 1, **(training or {})}, **top}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(raw))
    return path


def records(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def cli(config, out, *flags):
    return train_cli.main(["-cfg", str(config), "--out-dir", str(out), *flags])


def test_tiny_config_overfits_a_tiny_video(tmp_path):
    cfg = config_from_dict({"model_path": "overfit", "num_workers": 0, "learning_rate": 3e-3,
                            "data": {"validation_fraction": 0.0},
                            "model": {"batch_size": 8, "image_height": 32, "image_width": 32, "channels": 32,
                                      "layers": 1, "patch_size": 8},
                            "training": {"warmup_steps": 10, "max_steps": 120, "log_every": 10}})
    summary = engine.train(cfg, Video.of_config(cfg, bouncing_square()), tmp_path, log=lambda line: None)
    losses = [record["train_loss"] for record in records(tmp_path)]
    assert summary["step"] == 120 and summary["val"] is None
    assert losses[-1] < 0.6 * losses[0], losses


def test_cli_trains_and_writes_the_run_folder(tmp_path, capsys):
    config = tiny_setup(tmp_path)
    assert cli(config, tmp_path / "out", "--train", "--max-steps", "6") == 0
    run_dir = tmp_path / "out" / "tiny.device0"
    files = sorted(p.name for p in run_dir.iterdir())
    assert files == ["best.ckpt", "cfg.json", "final.ckpt", "metrics.jsonl", "quicksave.ckpt"]
    saved_cfg = json.loads((run_dir / "cfg.json").read_text())
    assert saved_cfg["training"]["max_steps"] == 6 and config_from_dict(saved_cfg).model.channels == 16
    log = records(run_dir)
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert {"epoch", "lr", "seconds", "train_loss", "train_l1", "train_ssim", "train_psnr"} <= set(log[0])
    for r in (log[3], log[5]):  # validated at step 4 and at the end
        assert {"val_loss", "val_l1", "val_mse", "val_psnr", "val_ssim", "val_copy_last_l1",
                "val_copy_last_psnr", "val_copy_last_ssim"} <= set(r)
    payload = torch.load(run_dir / "quicksave.ckpt", weights_only=True)
    assert payload["step"] == 6 and payload["config"] == saved_cfg
    final = torch.load(run_dir / "final.ckpt", weights_only=True)  # the finished run's weights alone
    assert final["step"] == 6 and "optimizer" not in final and "optimizer" in payload
    assert all(torch.equal(final["model"][name], payload["model"][name]) for name in payload["model"])
    assert "trained 6 steps" in capsys.readouterr().out


def test_a_run_resumed_at_its_last_step_still_gets_its_final_weights(tmp_path):
    config = tiny_setup(tmp_path, training={"max_steps": 3})
    cfg, frames = load_config(config), load_frames(tmp_path / "video.hdf5")
    run_dir = tmp_path / "run"
    engine.train(cfg, Video.of_config(cfg, frames), run_dir, seed=1234, log=lambda line: None)
    (run_dir / "final.ckpt").unlink()  # e.g. killed between the last quicksave and the export
    summary = engine.train(cfg, Video.of_config(cfg, frames), run_dir, seed=1234, resume=run_dir / "quicksave.ckpt",
                           log=lambda line: None)
    assert summary["step"] == 3 and load_checkpoint(run_dir / "final.ckpt")["step"] == 3


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    config = tiny_setup(tmp_path, model={"gradient_accumulation_steps": 2}, training={"max_steps": 9})
    cfg, frames = load_config(config), load_frames(tmp_path / "video.hdf5")
    engine.train(cfg, Video.of_config(cfg, frames), tmp_path / "whole", seed=1234, log=lambda line: None)

    stop = StopFlag()

    def stop_at_step_5(record):  # mid-epoch, between quicksaves, after a validation
        if record["step"] == 5:
            stop.request("test")

    run_dir = tmp_path / "out" / "tiny.device0"
    summary = engine.train(cfg, Video.of_config(cfg, frames), run_dir, seed=1234, ranks=Ranks(requested=stop),
                           on_record=stop_at_step_5, log=lambda line: None)
    assert summary["stopped"] == "test" and summary["step"] == 5
    assert load_checkpoint(run_dir / "quicksave.ckpt")["step"] == 5
    assert not (run_dir / "final.ckpt").exists()  # not finished
    assert cli(config, tmp_path / "out", "--train", "--load", str(run_dir / "quicksave.ckpt")) == 0

    whole, resumed = records(tmp_path / "whole"), records(run_dir)
    assert [r["step"] for r in resumed] == list(range(1, 10))
    for a, b in zip(whole, resumed):
        assert (a["train_loss"], a["lr"], a.get("val_loss")) == (b["train_loss"], b["lr"], b.get("val_loss"))
    final_whole = load_checkpoint(tmp_path / "whole" / "quicksave.ckpt")["model"]
    final_resumed = load_checkpoint(run_dir / "quicksave.ckpt")["model"]
    assert all(torch.equal(final_whole[name], final_resumed[name]) for name in final_whole)


def test_compiled_training_matches_the_plain_model(tmp_path):
    """training.compile runs the same steps: the same losses and validation metrics within float noise,
    checkpoints with the plain model's parameter names (loadable without compiling)."""
    config = tiny_setup(tmp_path, model={"output": "warp", "gradient_accumulation_steps": 2},
                        training={"max_steps": 6}, learning_rate=3e-4)
    cfg, frames = load_config(config), load_frames(tmp_path / "video.hdf5")
    summaries = {}
    for compiled in (False, True):
        run_cfg = with_overrides(cfg, {"training.compile": compiled})
        summaries[compiled] = engine.train(run_cfg, Video.of_config(run_cfg, frames), tmp_path / str(compiled),
                                           log=lambda line: None)
    plain, compiled = records(tmp_path / "False"), records(tmp_path / "True")
    assert [r["step"] for r in compiled] == [r["step"] for r in plain] == list(range(1, 7))
    # Fused kernels round differently, so the runs drift apart by float noise only.
    for a, b in zip(plain, compiled):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
    for key in ("loss", "l1", "psnr", "ssim"):
        assert summaries[True]["val"][key] == pytest.approx(summaries[False]["val"][key], rel=1e-3)
    state = load_checkpoint(tmp_path / "True" / "quicksave.ckpt")["model"]
    assert set(state) == set(load_checkpoint(tmp_path / "False" / "quicksave.ckpt")["model"])


def test_bf16_autocast_training_reaches_the_plain_models_validation_metrics(tmp_path):
    """model.mixed_precision (bf16 autocast on the CPU, 1.3x the fp32 step in the bench) learns as fp32 does:
    after the same 150 steps of the sheet's recipe the validation PSNR is within noise of fp32's."""
    config = tiny_setup(tmp_path, model={"output": "frame"}, training={"max_steps": 150, "loss": "mse",
                                                                         "validate_every": 150}, learning_rate=3e-3)
    cfg, frames = load_config(config), load_frames(tmp_path / "video.hdf5")
    fast_paths = {"fp32": {}, "bf16": {"model.mixed_precision": True},
                  "bf16 compiled": {"model.mixed_precision": True, "training.compile": True}}  # vit_memorise's
    val = {name: engine.train(with_overrides(cfg, overrides), Video.of_config(cfg, frames),
                              tmp_path / name.replace(" ", "_"), log=lambda line: None)["val"]
           for name, overrides in fast_paths.items()}
    assert val["fp32"]["psnr"] > val["fp32"]["mean_frame_psnr"]  # it learned something at all
    assert val["bf16"]["psnr"] == pytest.approx(val["fp32"]["psnr"], abs=0.5)
    assert val["bf16 compiled"]["psnr"] == pytest.approx(val["fp32"]["psnr"], abs=0.5)


def test_train_part_batches_scores_the_training_part_at_each_validation(tmp_path):
    """training.train_part_batches: the memorisation curve, the model's metrics on the training windows it
    trains on, beside the validation's, equal to an evaluation of the saved weights on that part."""
    config = tiny_setup(tmp_path, training={"max_steps": 4, "train_part_batches": None})
    cfg, frames = load_config(config), load_frames(tmp_path / "video.hdf5")
    engine.train(cfg, Video.of_config(cfg, frames), tmp_path / "run", log=lambda line: None)
    validated = [r for r in records(tmp_path / "run") if "val_psnr" in r]
    assert [r["step"] for r in validated] == [4] and all("train_part_psnr" in r for r in validated)
    assert not any("train_part_psnr" in r for r in records(tmp_path / "run") if "val_psnr" not in r)
    model, _ = engine.load_model(tmp_path / "run" / "quicksave.ckpt", cfg.model)
    train_windows = FrameWindows(torch.as_tensor(frames[:32]), 3)  # the training part: the first 80 % of 40 frames
    expected = evaluate(model, train_windows, batch_size=4, loss="mse", baselines={})
    assert validated[0]["train_part_windows"] == expected["windows"] == 30
    assert validated[0]["train_part_psnr"] == pytest.approx(expected["psnr"], rel=1e-5)
    untracked = tiny_setup(tmp_path, training={"max_steps": 4})  # off by default
    engine.train(load_config(untracked), Video.of_config(cfg, frames), tmp_path / "off", log=lambda line: None)
    assert not any("train_part_psnr" in r for r in records(tmp_path / "off"))


@pytest.mark.parametrize("signal_name, exit_code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_finishes_the_step_and_quicksaves(tmp_path, signal_name, exit_code):
    config = tiny_setup(tmp_path, training={"quicksave_every": 100000, "validate_every": 100000})
    process = subprocess.Popen([sys.executable, "-m", "model.main", "-cfg", str(config), "--train",
                                "--max-steps", "100000", "--out-dir", str(tmp_path / "out")],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "out" / "tiny.device0" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    process.send_signal(getattr(signal, signal_name))
    out, err = process.communicate(timeout=120)
    assert process.returncode == exit_code, err
    assert "Traceback" not in err
    saved = load_checkpoint(tmp_path / "out" / "tiny.device0" / "quicksave.ckpt")
    assert saved["step"] == records(metrics.parent)[-1]["step"] >= 2
    assert f"stopped by {signal_name} after step {saved['step']}" in out
    assert out.splitlines()[-1] == (f"resume with: python -m model.main -cfg {config} --train --max-steps 100000 "
                                    f"--out-dir {tmp_path / 'out'} --resume")  # continues from that quicksave


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    config = tiny_setup(tmp_path, training={"quicksave_every": 2})
    loss_fn, calls = engine.masked_loss, []

    def failing_loss(kind, prediction, target, mask, **options):
        loss, l1, ssim_value = loss_fn(kind, prediction, target, mask, **options)
        if torch.is_grad_enabled():  # training steps only, not validation
            calls.append(1)
            if len(calls) == 5:
                loss = loss * math.nan
        return loss, l1, ssim_value

    monkeypatch.setattr(engine, "masked_loss", failing_loss)
    assert cli(config, tmp_path / "out", "--train") == 1
    quicksave = tmp_path / "out" / "tiny.device0" / "quicksave.ckpt"
    err = capsys.readouterr().err.splitlines()[-1]  # after the progress bar
    assert err == (f"error: the loss became nan at step 5; training stopped, "
                   f"the last good checkpoint is {quicksave}")
    assert load_checkpoint(quicksave)["step"] == 4


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "quicksave.ckpt"
    save_checkpoint(path, {"step": 1, "weights": torch.ones(3)})

    def crash(payload, file):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2, "weights": torch.zeros(3)})
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["quicksave.ckpt"]  # no temporary file left


def test_bad_checkpoints_give_one_line(tmp_path, capsys):
    config = tiny_setup(tmp_path)
    assert cli(config, tmp_path / "out", "--train", "--max-steps", "1") == 0
    good = tmp_path / "out" / "tiny.device0" / "quicksave.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:1000])
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.ones(2)}, foreign)
    capsys.readouterr()
    cases = [(tmp_path / "missing.ckpt", "checkpoint not found"), (truncated, "is truncated or corrupt"),
             (foreign, "is not a checkpoint of this project")]
    for path, message in cases:
        assert cli(config, tmp_path / "out", "--validate", "--load", str(path)) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1

    (tmp_path / "other").mkdir()
    other = tiny_setup(tmp_path / "other", model={"channels": 32, "layers": 2})
    assert cli(other, tmp_path / "out", "--validate", "--load", str(good)) == 1
    assert ("belongs to another model: model.channels 16 (checkpoint) vs 32 (config); "
            "model.layers 1 (checkpoint) vs 2 (config)") in capsys.readouterr().err


def test_validate_writes_the_metrics(tmp_path, capsys):
    config = tiny_setup(tmp_path)
    assert cli(config, tmp_path / "out", "--train", "--max-steps", "2", "--seed", "7") == 0
    best = tmp_path / "out" / "tiny.device0" / "best.ckpt"
    assert cli(config, tmp_path / "out", "--validate", "--load", str(best)) == 0
    result = json.loads((best.parent / "validation_val.json").read_text())  # next to the checkpoint
    assert result["windows"] == 8 and result["split"] == "val"  # every frame of the 8-frame validation part
    assert result["step"] == 2 and result["checkpoint"] == str(best) and result["seed"] == 7  # which run it was
    expected = {"loss", "l1", "mse", "psnr", "ssim", "copy_last_l1", "copy_last_psnr", "mean_frame_ssim"}
    assert expected <= set(result)
    assert "copy-last" in capsys.readouterr().out


def test_validate_writes_next_to_a_checkpoint_elsewhere_or_to_output(tmp_path, capsys):
    config = tiny_setup(tmp_path)
    assert cli(config, tmp_path / "out", "--train", "--max-steps", "1") == 0
    run_dir = tmp_path / "out" / "tiny.device0"
    assert "trained 1 step in" in capsys.readouterr().out
    published = tmp_path / "published" / "model.ckpt"  # outside the config's run folder
    published.parent.mkdir()
    published.write_bytes((run_dir / "quicksave.ckpt").read_bytes())
    capsys.readouterr()
    assert cli(config, tmp_path / "out", "--validate", "--load", str(published), "--split", "test") == 1  # no test part
    capsys.readouterr()
    assert cli(config, tmp_path / "out", "--validate", "--load", str(published)) == 0
    assert (published.parent / "validation_val.json").is_file()
    assert not any(p.name.startswith("validation") for p in run_dir.iterdir())  # the run folder is left alone
    printed = capsys.readouterr().out
    assert " MSE " in printed and f"wrote {published.parent / 'validation_val.json'}" in printed
    output = tmp_path / "metrics" / "mine.json"
    assert cli(config, tmp_path / "out", "--validate", "--load", str(published), "--output", str(output)) == 0
    assert json.loads(output.read_text())["checkpoint"] == str(published)


def test_a_missing_best_checkpoint_points_to_the_quicksave(tmp_path, capsys):
    config = tiny_setup(tmp_path)
    assert cli(config, tmp_path / "out", "--train", "--max-steps", "1") == 0
    run_dir = tmp_path / "out" / "tiny.device0"
    (run_dir / "best.ckpt").unlink()  # as before the first validation (training.validate_every steps)
    capsys.readouterr()
    assert cli(config, tmp_path / "out", "--validate", "--load", str(run_dir / "best.ckpt")) == 1
    assert capsys.readouterr().err == (
        f"error: checkpoint not found: {run_dir / 'best.ckpt'} (a run writes best.ckpt at its first validation, "
        f"after training.validate_every steps; until then load {run_dir / 'quicksave.ckpt'})\n")


def test_a_run_says_how_long_a_step_takes_and_points_a_cpu_to_the_cpu_config(tmp_path, capsys, monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    sheet_cfg, cpu_cfg = load_config(REPO / "config/vit.json"), load_config(REPO / train_cli.CPU_CONFIG)
    sheet = train_cli.speed_note(2.5, 167_997, cpu, REPO / "config/vit.json", sheet_cfg)
    assert sheet.startswith("note: a step takes 2.50 s on cpu (median of 10 steps): about 4.9 days for the "
                            "167997 steps left; for a CPU use -cfg config/vit_cpu.json (the same model at CPU size): "
                            "its 30000 steps would take about ")
    # The estimate: this step's time scaled by the FLOP per step of the two configs.
    ratio = train_cli.step_flops(cpu_cfg) / train_cli.step_flops(sheet_cfg)
    assert f"about {train_cli.describe_duration(2.5 * ratio * 30000)} here (estimated from the FLOP per step)" in sheet
    assert "vit_cpu.json" not in train_cli.speed_note(2.5, 167_997, gpu, REPO / "config/vit.json", sheet_cfg)
    assert "for a CPU" not in train_cli.speed_note(0.11, 100_000, cpu, train_cli.CPU_CONFIG, cpu_cfg)  # already it
    assert train_cli.speed_note(0.1, 1, cpu, "x.json", sheet_cfg).endswith("about 0 s for the 1 step left")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU, also on a machine with a GPU
    config = tiny_setup(tmp_path)
    assert cli(config, tmp_path / "out", "--train", "--max-steps", "14") == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "a step takes" in line]
    assert len(lines) == 1 and lines[0].startswith("note: a step takes ")
    assert "on cpu (median of 10 steps)" in lines[0]  # steps 2 to 11 (the first warms up)
    assert lines[0].endswith("for the 3 steps left") and "vit_cpu.json" not in lines[0]  # a short run: no advice
    monkeypatch.setattr(train_cli, "CPU_ADVICE_SECONDS", 0)  # as if the run took hours
    assert cli(config, tmp_path / "out", "--train", "--max-steps", "14", "--overwrite") == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "a step takes" in line)
    assert "; for a CPU use -cfg config/vit_cpu.json (the same model at CPU size): its 30000 steps would take" in line


def test_missing_video_exits_1(tmp_path, capsys):
    config = tiny_setup(tmp_path, data={"hdf5_file": str(tmp_path / "nope.hdf5")})
    assert cli(config, tmp_path / "out", "--train") == 1
    assert capsys.readouterr().err == f"error: data file not found: {tmp_path / 'nope.hdf5'}\n"


def test_masked_reconstruction_and_accumulation(tmp_path):
    cfg = config_from_dict({"num_workers": 0, "data": {"validation_fraction": 0.2},
                            "model": {"batch_size": 4, "image_height": 32, "image_width": 32, "num_frames": 1,
                                      "channels": 16, "layers": 1, "patch_size": 8,
                                      "gradient_accumulation_steps": 2},
                            "training": {"optimizer": "radam", "max_steps": 2, "log_every": 1}})
    summary = engine.train(cfg, Video.of_config(cfg, bouncing_square()), tmp_path, log=lambda line: None)
    assert load_checkpoint(tmp_path / "quicksave.ckpt")["sampler"]["position"] == 4  # 2 steps x 2 batches
    assert "copy_last_l1" not in summary["val"] and "mean_frame_l1" in summary["val"]
    model, _ = engine.load_model(tmp_path / "quicksave.ckpt", cfg.model)
    windows = FrameWindows(bouncing_square()[32:], 1)
    first, second = (evaluate(model, windows, batch_size=4) for _ in range(2))
    assert first == second  # the evaluation masks come from a fixed seed


def test_warmup_then_cosine():
    factor = engine.warmup_cosine(warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(60) == pytest.approx(0.55)
    assert factor(110) == pytest.approx(0.1) and factor(500) == pytest.approx(0.1)


def test_a_format_1_checkpoint_is_refused_with_a_hint_and_converts_to_the_same_predictions(tmp_path, capsys):
    from model.scripts import convert_checkpoint

    config = tiny_setup(tmp_path, model={"output": "warp"})
    assert cli(config, tmp_path / "out", "--train", "--max-steps", "1") == 0
    good = tmp_path / "out" / "tiny.device0" / "quicksave.ckpt"
    assert cli(config, tmp_path / "out", "--validate", "--load", str(good)) == 0
    expected = json.loads((good.parent / "validation_val.json").read_text())
    payload = load_checkpoint(good)  # written as format 1 did: residual + warp_radius, the warp under warp.*
    kwargs = {k: v for k, v in payload["model_kwargs"].items() if k != "output"}
    model_section = {k: v for k, v in payload["config"]["model"].items() if k != "output"}
    old = {**payload, "format_version": 1,
           "model": {key.removeprefix("head."): value for key, value in payload["model"].items()},
           "model_kwargs": {**kwargs, "residual": True, "zero_init_output": True},
           "config": {**payload["config"], "model": {**model_section, "residual": True, "zero_init_output": True}}}
    old_path = tmp_path / "old.ckpt"
    save_checkpoint(old_path, old)
    capsys.readouterr()
    assert cli(config, tmp_path / "out", "--validate", "--load", str(old_path)) == 1
    assert "has checkpoint format 1, this version reads format 2 (convert it with" in capsys.readouterr().err
    assert convert_checkpoint.main([str(old_path)]) == 0
    assert cli(config, tmp_path / "out", "--validate", "--load", str(old_path)) == 0
    converted = json.loads((tmp_path / "validation_val.json").read_text())
    assert {k: v for k, v in converted.items() if k != "checkpoint"} == \
        {k: v for k, v in expected.items() if k != "checkpoint"}
    assert convert_checkpoint.main([str(old_path)]) == 0  # already converted: left as it is
    assert "already format 2" in capsys.readouterr().out




def test_a_config_from_before_the_test_part_keeps_its_split_when_converted():
    from model.scripts.convert_checkpoint import convert_config

    old = {"model_path": "x", "data": {"validation_fraction": 0.1},
           "model": {"residual": True, "warp_radius": 2, "zero_init_output": True}}
    new = convert_config(old)
    assert new["data"] == {"validation_fraction": 0.1, "test_fraction": 0.0}  # trained on all but the last 10 %
    assert (new["model"]["output"], new["model"]["warp_radius"]) == ("warp", 2)
    assert convert_config(new) == new
    later = {"data": {"validation_fraction": 0.1, "test_fraction": 0.1}, "model": {"output": "frame"}}
    assert convert_config(later) == later  # a config that has the test part is left as it is


def test_a_step_of_micro_batches_records_their_mean(tmp_path):
    """Two micro-batches of 2 windows log the same first-step loss, L1, MSE and SSIM as one batch of the
    same 4 windows (the metrics of a step are means over its micro-batches, SSIM included)."""
    logged = {}
    for batch, accumulation in ((4, 1), (2, 2)):
        config = tiny_setup(tmp_path, model={"batch_size": batch, "gradient_accumulation_steps": accumulation},
                            training={"max_steps": 1, "loss": "l1_ssim"})
        cfg, frames = load_config(config), load_frames(tmp_path / "video.hdf5")
        engine.train(cfg, Video.of_config(cfg, frames), tmp_path / f"b{batch}", seed=7, log=lambda line: None)
        logged[batch] = records(tmp_path / f"b{batch}")[0]
    for key in ("train_loss", "train_l1", "train_mse", "train_ssim"):
        assert logged[2][key] == pytest.approx(logged[4][key], rel=1e-5), key


def test_a_second_training_command_never_destroys_the_run_it_finds(tmp_path, capsys):
    config = tiny_setup(tmp_path)
    out = tmp_path / "out"
    run_dir = out / "tiny.device0"
    assert cli(config, out, "--train", "--max-steps", "4") == 0
    before = {name: (run_dir / name).read_bytes() for name in ("quicksave.ckpt", "metrics.jsonl", "best.ckpt")}
    capsys.readouterr()
    assert cli(config, out, "--train", "--max-steps", "8") == 2  # the same command again: refused, one line
    error = capsys.readouterr().err.strip()
    assert error == (f"error: {run_dir} holds a run (step 4): continue it with --resume, start another beside it "
                     f"with -n 2, or start it over with --overwrite")
    assert {name: (run_dir / name).read_bytes() for name in before} == before  # nothing lost
    assert cli(config, out, "--train", "--max-steps", "8", "--resume") == 0  # continues: steps 5-8 appended
    assert "resuming from" in capsys.readouterr().out and [r["step"] for r in records(run_dir)] == list(range(1, 9))
    assert cli(config, out, "--train", "--max-steps", "2", "-n", "2") == 0  # beside it
    assert (out / "tiny.device0.run2" / "final.ckpt").exists() and torch.load(
        run_dir / "quicksave.ckpt", weights_only=True)["step"] == 8
    assert cli(config, out, "--train", "--max-steps", "2", "--overwrite") == 0  # asked for: starts over
    assert [r["step"] for r in records(run_dir)] == [1, 2]
    assert torch.load(run_dir / "quicksave.ckpt", weights_only=True)["step"] == 2


def test_training_on_the_cpu_flushes_subnormal_floats(tmp_path):
    """A trained model's activations and gradients go subnormal, which the CPU computes ~100x slower (docs/bench.md,
    section subnormals): engine.train flushes them to zero. In a fresh process: the flag is per thread and stays."""
    config = tiny_setup(tmp_path, training={"max_steps": 1})
    script = (
        "import sys, torch\n"
        "from model import engine\nfrom model.config import load_config\nfrom model.data import Video, load_frames\n"
        f"cfg = load_config({str(config)!r})\n"
        "small = torch.tensor([1e-36])\n"
        "kept = (small * 1e-3).item()\n"  # 1e-39: a subnormal result
        f"engine.train(cfg, Video.of_config(cfg, load_frames({str(tmp_path / 'video.hdf5')!r})), "
        f"{str(tmp_path / 'run')!r}, log=lambda line: None)\n"
        "print(kept > 0, (small * 1e-3).item() == 0.0)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["True", "True"]  # kept before training, flushed after


def test_the_resume_command_and_the_launched_workers_drop_the_flags_they_replace():
    argv = ["-cfg", "c.json", "--train", "--load", "a.ckpt", "--load=b.ckpt", "--overwrite", "--num-gpus", "4"]
    assert train_cli.resume_command(argv) == "-cfg c.json --train --num-gpus 4 --resume"
    assert train_cli.without_flags(["-cfg", "c.json", "--num-gpus", "4", "--port=29501", "--train"],
                                   ("--num-gpus", "--port")) == ["-cfg", "c.json", "--train"]
