"""Bad input through the real command lines: one line that names the problem, no traceback, no damage.

Every case runs `python -m model.main` or `python -m model.scripts.predict` in a subprocess and checks
that it exits non-zero, that the last line on stderr is `error: ...` naming the problem, that stderr holds
no traceback, and that no file that existed before (a good run folder, the config, the video) changed.

    BAD_INPUT_TABLE=docs/bad_inputs.md python -m pytest tests/test_bad_input.py

also writes what each case printed into that table (the cases that ran, in their order).
"""
import os
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from model import main as train_cli
from tests.test_training import bouncing_square

REPO = Path(__file__).resolve().parents[1]
TRAIN = ("model.main", "--train")
PREDICT = ("model.scripts.predict",)


def write_config(folder, video, name="tiny.json", **model):
    """A config for a 1-layer, 16-channel model on 32x32 frames; model overrides the model section."""
    raw = {"model_path": "tiny", "num_workers": 0,
           "data": {"hdf5_file": str(video), "validation_fraction": 0.2},
           "model": {"batch_size": 4, "image_height": 32, "image_width": 32, "num_frames": 3, "channels": 16,
                     "num_heads": 2, "layers": 1, "patch_size": 8, **model},
           "training": {"max_steps": 1, "validate_every": 1, "validation_batches": 1}}
    path = Path(folder) / name
    path.write_text(json.dumps(raw))
    return path


def write_video(path, frames=None, encoded=None):
    """An HDF5 file with /rgb_images: raw uint8 frames (N, H, W) or a list of encoded PNG byte strings."""
    with h5py.File(path, "w") as file:
        if encoded is None:
            file.create_dataset("rgb_images", data=bouncing_square() if frames is None else frames)
        else:
            rows = file.create_dataset("rgb_images", (len(encoded),), dtype=h5py.vlen_dtype(np.uint8))
            for i, data in enumerate(encoded):
                rows[i] = np.frombuffer(data, np.uint8)
    return path


def png(height, width):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_good_run(root):
    """Fill root with a video, its config and a finished one-step run: out/tiny.device0/{cfg.json, *.ckpt}."""
    video = write_video(root / "video.hdf5")
    config = write_config(root, video)
    assert train_cli.main(["-cfg", str(config), "--out-dir", str(root / "out"), "--train"]) == 0
    return root


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return make_good_run(tmp_path_factory.mktemp("good"))


# Each case: (id, setup(case_dir, good_dir) -> (command, argv), expected exit code, key substring).
def config_with(**model):
    return lambda tmp, good: (TRAIN, ["-cfg", write_config(tmp, good / "video.hdf5", **model)])


def raw_config(text):
    def setup(tmp, good):
        path = tmp / "bad.json"
        path.write_text(text)
        return TRAIN, ["-cfg", path]
    return setup


def video_case(make):
    """Train on a video made by make(path) with the good config's output folder (it must stay as it is)."""
    def setup(tmp, good):
        video = tmp / "video.hdf5"
        make(video)
        return TRAIN, ["-cfg", write_config(tmp, video), "--out-dir", good / "out"]
    return setup


def hdf5_without_rgb_images(path):
    with h5py.File(path, "w") as file:
        file.create_dataset("frames", data=bouncing_square())


def damaged_video(path):
    """A video of encoded noise frames, overwritten with garbage after its intact HDF5 header."""
    def noise_png(seed):
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
        return buffer.getvalue()

    write_video(path, encoded=[noise_png(seed) for seed in range(200)])
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.seek(size // 2)
        file.write(b"\xff" * (size // 4))


def checkpoint_case(make, *, command=PREDICT, config_model=None):
    """Use a checkpoint made by make(tmp, good_checkpoint) -> path."""
    def setup(tmp, good):
        checkpoint = make(tmp, good / "out" / "tiny.device0" / "quicksave.ckpt")
        config = write_config(tmp, good / "video.hdf5", **(config_model or {}))
        argv = ["-cfg", config, "--load", checkpoint]
        if command == PREDICT:
            argv += ["--output", tmp / "samples"]
        else:
            argv += ["--out-dir", good / "out"]
        return command, argv
    return setup


def truncated(tmp, checkpoint):
    path = tmp / "truncated.ckpt"
    path.write_bytes(checkpoint.read_bytes()[:2000])
    return path


def foreign(tmp, checkpoint):
    path = tmp / "foreign.ckpt"
    torch.save({"weights": torch.ones(2)}, path)
    return path


def file_in_the_way(tmp, good):
    """An output folder below a regular file: cannot be created, even by root."""
    (tmp / "a_file").write_text("not a folder")
    return tmp / "a_file" / "sub"


CASES = [
    ("config-typo-key", config_with(chanels=16), 2, "config key 'model.chanels' is unknown"),
    ("config-wrong-type", config_with(channels="16"), 2, "config key 'model.channels' must be an integer"),
    ("config-bool-for-int", config_with(layers=True), 2, "config key 'model.layers' must be an integer"),
    ("patch-size-not-dividing-image", config_with(patch_size=7), 2, "7 does not divide model.image_height"),
    ("heads-not-dividing-channels", config_with(num_heads=3), 2, "16 is not divisible by model.num_heads 3"),
    ("num-frames-0", config_with(num_frames=0), 2, "config key 'model.num_frames': must be at least 1"),
    ("config-not-json", raw_config('{"model": {"channels": 16,,}}'), 2, "invalid JSON at line 1"),
    ("config-missing", lambda tmp, good: (TRAIN, ["-cfg", tmp / "nope.json"]), 2, "config file not found"),
    ("hdf5-missing", video_case(lambda path: None), 1, "data file not found"),
    ("hdf5-empty-file", video_case(lambda path: path.write_bytes(b"")), 1, "is not a readable HDF5 file"),
    ("hdf5-corrupt", video_case(lambda path: path.write_text("frames, honest")), 1, "is not a readable HDF5 file"),
    ("hdf5-without-rgb-images", video_case(hdf5_without_rgb_images), 1, "has no dataset /rgb_images (found: frames)"),
    ("hdf5-damaged-after-its-header", video_case(damaged_video), 1, "cannot be read, it may be damaged or cut short"),
    ("frames-of-mixed-sizes", video_case(lambda path: write_video(path, encoded=[png(32, 32), png(16, 32)] * 3)),
     1, "frame 1 is 16x32 (HxW) but frame 0 is 32x32"),
    ("frames-of-wrong-size", video_case(lambda path: write_video(path, frames=np.zeros((40, 16, 16), np.uint8))),
     1, "has frames of 16x16 (HxW) but the config asks for model.image_height 32"),
    ("too-few-frames", video_case(lambda path: write_video(path, frames=bouncing_square(2))),
     1, "holds 2 frames, fewer than model.num_frames 3"),
    ("test-part-empty", video_case(lambda path: write_video(path, frames=bouncing_square(4))),
     1, "data.test_fraction 0.1 of a video of 4 frames is no frame"),
    ("checkpoint-truncated", checkpoint_case(truncated), 1, "is truncated or corrupt"),
    ("checkpoint-not-of-this-project", checkpoint_case(foreign), 1, "is not a checkpoint of this project"),
    ("checkpoint-missing", checkpoint_case(lambda tmp, checkpoint: tmp / "nope.ckpt"), 1, "checkpoint not found"),
    ("checkpoint-other-architecture", checkpoint_case(lambda tmp, checkpoint: checkpoint, config_model={"layers": 2}),
     1, "belongs to another model: model.layers 1 (checkpoint) vs 2 (config)"),
    ("resume-from-other-architecture",
     checkpoint_case(lambda tmp, checkpoint: checkpoint, command=TRAIN, config_model={"channels": 32}),
     1, "belongs to another model: model.channels 16 (checkpoint) vs 32 (config)"),
    ("unknown-flag", lambda tmp, good: (TRAIN, ["-cfg", good / "tiny.json", "--epochz", "3"]),
     2, "unrecognized arguments: --epochz"),
    ("mistyped-flag", lambda tmp, good: (("model.main",), ["-cfg", good / "tiny.json", "--trian"]),
     2, "unrecognized arguments: --trian; did you mean --train?"),
    ("abbreviated-flag", lambda tmp, good: (TRAIN, ["-cfg", good / "tiny.json", "--max-st", "3"]),
     2, "unrecognized arguments: --max-st; did you mean --max-steps?"),
    ("num-gpus-0", lambda tmp, good: (TRAIN, ["-cfg", good / "tiny.json", "--num-gpus", "0"]),
     2, "--num-gpus must be at least 1"),
    ("train-into-a-run-folder-that-holds-a-run",
     lambda tmp, good: (TRAIN, ["-cfg", good / "tiny.json", "--out-dir", good / "out"]),
     2, "holds a run (step 1): continue it with --resume, start another beside it with -n 2, or start it over with "
        "--overwrite"),
    ("resume-with-load", lambda tmp, good: (TRAIN, ["-cfg", good / "tiny.json", "--resume", "--load", "x.ckpt"]),
     2, "--resume goes with --train and without --load"),
    ("validate-without-load", lambda tmp, good: (("model.main", "--validate"), ["-cfg", good / "tiny.json"]),
     2, "--validate needs --load"),
    ("predict-without-a-run", lambda tmp, good: (PREDICT, ["-cfg", good / "tiny.json", "--out-dir", tmp / "out"]),
     1, "out/tiny.device0 (train with python -m model.main -cfg"),
    ("predict-output-under-a-file",
     lambda tmp, good: (PREDICT, ["-cfg", good / "tiny.json", "--load", good / "out" / "tiny.device0" / "best.ckpt",
                                  "--steps", "2", "--output", file_in_the_way(tmp, good)]), 1, "Not a directory"),
    ("train-out-dir-under-a-file",
     lambda tmp, good: (TRAIN, ["-cfg", good / "tiny.json", "--out-dir", file_in_the_way(tmp, good)]),
     1, "Not a directory"),
]


def run_cli(command, argv):
    """Run `python -m module [mode] argv...` from the repository root; command is (module, *mode)."""
    module, *mode = command
    return subprocess.run([sys.executable, "-m", module, *mode, *map(str, argv)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def digests(*folders):
    """relative path -> sha256 of every file below the folders."""
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in folders for path in sorted(Path(folder).rglob("*")) if path.is_file()}


TABLE_HEADER = """# Bad input: what each command line prints

Generated by `BAD_INPUT_TABLE=docs/bad_inputs.md python -m pytest tests/test_bad_input.py` from the cases in
`tests/test_bad_input.py`; do not edit by hand. `good/` holds a finished one-step run, `case/` the case's own
files. The last column is the last line on stderr (flag errors print argparse's usage lines before it).

| case | command (short) | exit code | what it prints |
|---|---|---|---|
"""


@pytest.fixture(scope="module")
def table():
    """The rows the cases print; written to $BAD_INPUT_TABLE at the end of the module when it is set."""
    rows = []
    yield rows
    path = os.environ.get("BAD_INPUT_TABLE")
    if path:
        def cell(text, folders):
            for folder, name in folders.items():
                text = text.replace(folder, name)
            return "`" + text.replace("|", "\\|") + "`"

        Path(path).write_text(TABLE_HEADER + "".join(
            f"| {name} | {cell(shown, folders)} | {code} | {cell(last, folders)} |\n"
            for name, shown, code, last, folders in rows), encoding="utf-8")


@pytest.mark.parametrize("setup, exit_code, message",
                         [case if hasattr(case, "marks") else pytest.param(*case[1:], id=case[0])
                          for case in CASES])
def test_bad_input_gives_one_line(tmp_path, good, setup, exit_code, message, request, table):
    command, argv = setup(tmp_path, good)
    before = digests(good, tmp_path)
    result = run_cli(command, argv)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    shown = " ".join(["python -m", *command, *map(str, argv)])
    table.append((request.node.callspec.id, shown, result.returncode, lines[-1] if lines else "",
                  {str(good): "good", str(tmp_path): "case"}))
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], result.stderr
    assert digests(good, tmp_path) == before
