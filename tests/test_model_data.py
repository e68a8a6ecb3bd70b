"""The video loader (course format and raw frames), its errors, the temporal split and batching."""
import io
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from model.config import Config, with_overrides
from model.data import (DataError, FrameWindows, Video, WindowSampler, check_frames, evaluation_indices, load_frames,
                        load_metadata, load_video, needs_default_video, resolve_data_path, split_video)


def colour_video(num_frames=12, size=16, seed=0):
    """uint8 (N, H, W, 3) random colour frames."""
    return np.random.default_rng(seed).integers(0, 256, (num_frames, size, size, 3), dtype=np.uint8)


def encode(frame, format="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format=format)
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def write_encoded(path, frames, format="PNG", meta=None):
    """The course format: one encoded image per row of /rgb_images (vlen uint8)."""
    with h5py.File(path, "w") as file:
        rows = file.create_dataset("rgb_images", (len(frames),), dtype=h5py.vlen_dtype(np.uint8))
        for i, frame in enumerate(frames):
            rows[i] = encode(frame, format)
        for name, values in (meta or {}).items():
            file.create_dataset(f"meta/{name}", data=values)
    return path


def write_raw(path, frames):
    with h5py.File(path, "w") as file:
        file.create_dataset("rgb_images", data=frames)
    return path


def pillow_gray(frames):
    return np.stack([np.asarray(Image.fromarray(frame).convert("L")) for frame in frames])


def test_png_rows_decode_to_pillow_grayscale(tmp_path):
    video = colour_video()
    frames = load_frames(write_encoded(tmp_path / "v.hdf5", video))
    assert frames.dtype == np.uint8 and frames.shape == (12, 16, 16)
    np.testing.assert_array_equal(frames, pillow_gray(video))


def test_threaded_decoding_gives_the_same_frames(tmp_path):
    path = write_encoded(tmp_path / "v.hdf5", colour_video())
    np.testing.assert_array_equal(load_frames(path, num_workers=3), load_frames(path, num_workers=0))


def test_jpeg_and_grayscale_png_rows(tmp_path):
    video = colour_video()
    jpeg = load_frames(write_encoded(tmp_path / "j.hdf5", video, format="JPEG"))
    assert jpeg.shape == (12, 16, 16)
    gray = pillow_gray(video)
    np.testing.assert_array_equal(load_frames(write_encoded(tmp_path / "g.hdf5", gray)), gray)


def test_raw_rgb_frames_match_pillow_exactly(tmp_path):
    video = colour_video(num_frames=5, size=64)
    np.testing.assert_array_equal(load_frames(write_raw(tmp_path / "v.hdf5", video)), pillow_gray(video))


def test_raw_gray_frames_pass_through(tmp_path):
    gray = colour_video()[..., 0]
    np.testing.assert_array_equal(load_frames(write_raw(tmp_path / "v.hdf5", gray)), gray)


def test_metadata(tmp_path):
    path = write_encoded(tmp_path / "v.hdf5", colour_video(), meta={"x": np.arange(12), "room": np.ones(12)})
    meta = load_metadata(path)
    assert sorted(meta) == ["room", "x"]
    np.testing.assert_array_equal(meta["x"], np.arange(12))
    assert load_metadata(write_raw(tmp_path / "r.hdf5", colour_video())) == {}


def test_loader_errors(tmp_path):
    with pytest.raises(DataError, match="data file not found: .*missing.hdf5"):
        load_frames(tmp_path / "missing.hdf5")
    (tmp_path / "text.hdf5").write_text("not hdf5")
    with pytest.raises(DataError, match="text.hdf5 is not a readable HDF5 file"):
        load_frames(tmp_path / "text.hdf5")
    with h5py.File(tmp_path / "other.hdf5", "w") as file:
        file.create_dataset("images", data=np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"has no dataset /rgb_images \(found: images\)"):
        load_frames(tmp_path / "other.hdf5")
    with pytest.raises(DataError, match="holds no frames"):
        load_frames(write_raw(tmp_path / "empty.hdf5", np.zeros((0, 4, 4), np.uint8)))
    with pytest.raises(DataError, match="must hold encoded images or uint8 frames"):
        load_frames(write_raw(tmp_path / "float.hdf5", np.zeros((3, 4, 4), np.float32)))


def test_frames_of_differing_size(tmp_path):
    frames = [np.zeros((16, 16), np.uint8)] * 3 + [np.zeros((16, 8), np.uint8)]
    with pytest.raises(DataError, match=r"frame 3 is 16x8 \(HxW\) but frame 0 is 16x16"):
        load_frames(write_encoded(tmp_path / "v.hdf5", frames))


def test_damaged_image_row(tmp_path):
    path = write_encoded(tmp_path / "v.hdf5", colour_video(num_frames=3))
    with h5py.File(path, "a") as file:
        file["rgb_images"][1] = np.frombuffer(b"\x89PNG broken", np.uint8)
    with pytest.raises(DataError, match="frame 1 of /rgb_images cannot be decoded"):
        load_frames(path)


def damage_the_middle(path):
    """Overwrite the middle of a file with garbage, its HDF5 header left intact."""
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.seek(size // 2)
        file.write(b"\xff" * (size // 4))


def test_a_file_damaged_in_the_middle_is_named(tmp_path, monkeypatch):
    path = write_encoded(tmp_path / "v.hdf5", colour_video(num_frames=200, size=32))
    damage_the_middle(path)
    with pytest.raises(DataError, match=rf"^{path} cannot be read, it may be damaged or cut short \(") as error:
        load_frames(path)
    assert "renders" not in str(error.value)  # not the default file: no hint to delete it
    monkeypatch.chdir(tmp_path)
    (tmp_path / "v.hdf5").rename(tmp_path / "gameplay-data.hdf5")  # the built-in video's default file
    with pytest.raises(DataError, match="delete it and the next run renders the built-in video into it again$"):
        load_frames("./gameplay-data.hdf5")


def test_frames_must_fit_the_config():
    model_cfg = with_overrides(Config(), {"model.image_height": 32, "model.image_width": 32,
                                          "model.num_frames": 3, "model.patch_size": 8}).model
    check_frames(np.zeros((3, 32, 32), np.uint8), "v.hdf5", model_cfg)
    with pytest.raises(DataError, match=r"v.hdf5 has frames of 32x16 \(HxW\) but the config asks for "
                                        r"model.image_height 32 and model.image_width 32"):
        check_frames(np.zeros((5, 32, 16), np.uint8), "v.hdf5", model_cfg)
    with pytest.raises(DataError, match="v.hdf5 holds 2 frames, fewer than model.num_frames 3"):
        check_frames(np.zeros((2, 32, 32), np.uint8), "v.hdf5", model_cfg)


def test_temporal_split_is_train_then_validation_then_test():
    frames = np.arange(100, dtype=np.uint8)[:, None, None].repeat(2, 1).repeat(2, 2)  # frame i is all i
    parts = split_video(len(frames), 0.1, 0.1, num_frames=3)
    assert parts == {"train": range(0, 80), "val": range(80, 90), "test": range(90, 100)}
    video = Video(frames, parts, 3)
    windows = {part: video.windows(part) for part in parts}
    predicted = {part: {int(w.batch(torch.tensor([i]))[0, -1, 0, 0] * 255) for i in range(len(w))}
                 for part, w in windows.items()}
    # Each part's windows predict exactly that part's frames (the first two frames have no window) ...
    assert predicted == {"train": set(range(2, 80)), "val": set(range(80, 90)), "test": set(range(90, 100))}
    # ... and no training window reaches into the later parts: the last one ends with frame 79.
    assert windows["train"].batch(torch.tensor([len(windows["train"]) - 1]))[0, :, 0, 0].mul(255).tolist() == [77, 78, 79]
    # A validation window sees the training frames before it (inputs only); every model scores the same frames.
    assert windows["val"].batch(torch.tensor([0]))[0, :, 0, 0].mul(255).tolist() == [78, 79, 80]
    assert len(video.windows("test", 5)) == len(windows["test"]) == 10
    assert split_video(len(frames), 0.1, 0.0, 3)["test"] == range(100, 100)
    with pytest.raises(DataError, match=r"the test part of the video is empty \(data.test_fraction is 0\)"):
        Video(frames, split_video(len(frames), 0.1, 0.0, 3), 3).windows("test")
    with pytest.raises(DataError, match="the training part of the video has 2 frames, fewer than"):
        split_video(10, 0.4, 0.4, 3)


def test_a_video_of_a_config_carries_its_split_and_its_training_frames():
    frames = np.arange(100, dtype=np.uint8)[:, None, None].repeat(2, 1).repeat(2, 2)  # frame i is all i
    cfg = with_overrides(Config(), {"data.validation_fraction": 0.1, "data.test_fraction": 0.2,
                                    "model.num_frames": 4})
    video = Video.of_config(cfg, frames)
    assert video.parts == {"train": range(0, 70), "val": range(70, 80), "test": range(80, 100)}
    assert video.windows("train").num_frames == 4 and len(video.windows("train")) == 67
    assert video.windows("val", 2).batch(torch.tensor([0]))[0, :, 0, 0].mul(255).tolist() == [69, 70]
    # The baselines' training frames: of the training part alone, whatever follows it.
    assert video.mean_frame.mul(255).flatten().tolist() == pytest.approx([34.5] * 4)
    assert video.median_frame.mul(255).flatten().tolist() == pytest.approx([34] * 4)
    assert video.player_box is None  # /meta without the built-in renderer's player
    assert Video.of_config(cfg, frames, {"player_tile_x": np.zeros(100)}).player_box is not None
    with pytest.raises(DataError, match="the training part of the video has 7 frames, fewer than model.num_frames 8"):
        Video.of_config(cfg, frames[:10], num_frames=8)


def test_batch_equals_naive_slicing():
    frames = np.random.default_rng(1).integers(0, 256, (20, 6, 5), dtype=np.uint8)
    windows = FrameWindows(frames, num_frames=4)
    assert len(windows) == 17
    starts = torch.tensor([0, 16, 5, 5])
    expected = np.stack([frames[s: s + 4] for s in starts.tolist()]).astype(np.float32) / 255
    batch = windows.batch(starts)
    assert batch.dtype == torch.float32 and batch.shape == (4, 4, 6, 5)
    np.testing.assert_array_equal(batch.numpy(), expected)


def test_sampler_visits_every_window_once_per_epoch():
    sampler = WindowSampler(num_windows=23, batch_size=5, seed=0)
    assert sampler.batches_per_epoch == 4
    epoch0 = torch.cat([sampler.next_batch() for _ in range(4)])
    epoch1 = torch.cat([sampler.next_batch() for _ in range(4)])
    assert len(set(epoch0.tolist())) == 20 and len(set(epoch1.tolist())) == 20
    assert not torch.equal(epoch0, epoch1)  # reshuffled
    assert sampler.epoch == 1 and sampler.progress == 2.0


def test_sampler_shards_are_disjoint():
    shards = [torch.cat([s.next_batch() for _ in range(s.batches_per_epoch)])
              for s in (WindowSampler(40, 4, seed=3, rank=r, world_size=2) for r in range(2))]
    assert set(shards[0].tolist()).isdisjoint(shards[1].tolist())
    assert len(shards[0]) == len(shards[1]) == 20


def test_sampler_state_resumes_exactly():
    reference = WindowSampler(17, 4, seed=7)
    for _ in range(6):  # into the second epoch
        reference.next_batch()
    state = reference.state_dict()
    expected = [reference.next_batch() for _ in range(9)]
    resumed = WindowSampler(17, 4, seed=999)
    resumed.load_state_dict(state)
    for batch in expected:
        assert torch.equal(resumed.next_batch(), batch)


def test_sampler_needs_one_full_batch():
    with pytest.raises(DataError, match="has 3 windows, fewer than one batch of model.batch_size 4"):
        WindowSampler(3, 4, seed=0)


def test_evaluation_indices_spread_over_the_part():
    assert torch.equal(evaluation_indices(10, 4), torch.arange(10))
    spread = evaluation_indices(100, 4, max_batches=2)
    assert len(spread) == 8 and spread[0] == 0 and spread[-1] == 99


def test_scratch_replaces_the_leading_dot():
    assert resolve_data_path("./gameplay-data.hdf5", "/scratch/42") == Path("/scratch/42/gameplay-data.hdf5")
    assert resolve_data_path("/data/v.hdf5", "/scratch/42") == Path("/data/v.hdf5")
    assert resolve_data_path("./gameplay-data.hdf5") == Path("gameplay-data.hdf5")


def test_default_video_is_rendered_only_for_the_default_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert needs_default_video("./gameplay-data.hdf5", Path("gameplay-data.hdf5"))
    assert not needs_default_video("./gameplay-data.hdf5", Path("/scratch/gameplay-data.hdf5"))
    assert not needs_default_video("./other.hdf5", Path("other.hdf5"))

    calls = []

    def ensure_default_video(path):
        calls.append(Path(path))
        write_raw(path, np.zeros((5, 32, 32), np.uint8))

    fake = types.SimpleNamespace(ensure_default_video=ensure_default_video, DEFAULT_NUM_FRAMES=5, DEFAULT_SEED=0)
    monkeypatch.setitem(sys.modules, "model.video.gameplay", fake)
    monkeypatch.setattr("model.video.gameplay", fake, raising=False)
    cfg = with_overrides(Config(), {"model.image_height": 32, "model.image_width": 32, "model.patch_size": 8})
    frames = load_video(cfg)
    assert calls == [Path("gameplay-data.hdf5")] and frames.shape == (5, 32, 32)
    assert "rendering the built-in gameplay video" in capsys.readouterr().out
    load_video(cfg)  # exists now: read, not rendered again
    assert len(calls) == 1
    other = with_overrides(cfg, {"data.hdf5_file": "./missing.hdf5"})
    with pytest.raises(DataError, match="data file not found: missing.hdf5"):
        load_video(other)
