"""The built-in gameplay video: deterministic, Game Boy shaped, honest metadata, course file format."""
import hashlib
from io import BytesIO

import h5py
import numpy as np
import pytest
from PIL import Image

from model.video import gameplay
from model.scripts import make_gameplay
from model.video.hdf5 import VideoIOError, VideoWriter


@pytest.fixture(scope="module")
def video():
    """3000 frames of the default game: long enough for a door, a text box and walking characters."""
    return gameplay.render_gameplay(3000, gameplay.DEFAULT_SEED)


def digest(frames):
    return hashlib.sha256(frames.tobytes()).hexdigest()


def test_same_seed_same_frames_other_seed_other_frames():
    first, first_meta = gameplay.render_gameplay(200, seed=3)
    again, again_meta = gameplay.render_gameplay(200, seed=3)
    other, _ = gameplay.render_gameplay(200, seed=4)
    assert digest(first) == digest(again)
    assert all(np.array_equal(first_meta[name], again_meta[name]) for name in gameplay.META_FIELDS)
    assert digest(first) != digest(other)


def test_frames_are_game_boy_screens(video):
    frames, _ = video
    assert frames.shape == (3000, 144, 160) and frames.dtype == np.uint8
    assert set(np.unique(frames)) <= set(gameplay.GRAY_LEVELS.tolist())
    assert len(np.unique(frames)) == 4


def test_metadata_has_one_value_per_frame(video):
    frames, meta = video
    assert set(meta) == set(gameplay.META_FIELDS)
    for name, dtype in gameplay.META_FIELDS.items():
        assert meta[name].shape == (len(frames),) and meta[name].dtype == dtype, name


def test_camera_metadata_matches_the_scroll(video):
    _, meta = video
    moved = (meta["camera_dx"] != 0) | (meta["camera_dy"] != 0)
    assert 0.2 < moved.mean() < 0.9  # the camera scrolls in some frames and rests in others
    assert set(np.abs(meta["camera_dx"])) <= {0, gameplay.PLAYER_SPEED}
    assert not np.any((meta["camera_dx"] != 0) & (meta["camera_dy"] != 0))  # tile-to-tile moves: one axis at a time
    same_area = meta["area"][1:] == meta["area"][:-1]
    assert np.array_equal(meta["camera_dx"][1:][same_area], np.diff(meta["camera_x"])[same_area])
    assert np.array_equal(meta["camera_dy"][1:][same_area], np.diff(meta["camera_y"])[same_area])
    assert np.array_equal(moved, meta["player_moving"])  # the camera follows the player


def test_scenery_scrolls_with_the_camera(video):
    frames, meta = video
    # Away from the player in the middle, a frame is its predecessor shifted by the camera's motion.
    i = int(np.flatnonzero((meta["camera_dx"] == 2) & ~meta["npc_moving"] & ~meta["overlay"]
                           & ~meta["transition"] & (meta["npcs_visible"] == 0))[0])
    assert np.array_equal(frames[i][:40, :-2], frames[i - 1][:40, 2:])


def test_rare_events_occur_and_are_marked(video):
    frames, meta = video
    for name in ("overlay", "transition", "npc_moving"):
        assert 0 < meta[name].mean() < 0.2, name
    assert meta["area"].max() > 0  # the player went into a house
    changes = np.flatnonzero(np.diff(meta["area"].astype(int))) + 1
    assert np.all(meta["transition"][changes])  # the area changes only behind a fade
    # A text box: a black double frame over the bottom 48 rows. A fade: nothing is black.
    assert np.all(frames[meta["overlay"]][:, gameplay.TEXT_TOP + 1, 1:-1] == 0)
    assert np.all(frames[meta["transition"]].min(axis=(1, 2)) > 0)


def test_every_text_can_be_drawn():
    house_signs = tuple((f"{name}'S HOUSE",) for name in gameplay.NAMES)
    texts = gameplay.ROAD_SIGNS + gameplay.SHELF_TEXTS + gameplay.TALK_TEXTS + house_signs
    for lines in texts:
        assert len(lines) <= 2 and all(len(line) <= 18 for line in lines), lines
        assert set("".join(lines)) <= set(gameplay.FONT), lines


def test_walkers_never_share_a_tile():
    world = gameplay.GameplayWorld(seed=5)
    for _ in range(1500):
        world.step()
        walkers = [world.player] + world.areas[world.area].npcs
        taken = [tile for walker in walkers for tile in walker.tiles()]
        assert len(taken) == len(set(taken))
        assert all(world.areas[world.area].tiles[tile] not in (gameplay.TREE, gameplay.WATER, gameplay.HOUSE)
                   for tile in taken)


def test_written_file_decodes_to_the_rendered_frames(tmp_path):
    path = tmp_path / "video.hdf5"
    meta = gameplay.write_gameplay_hdf5(path, num_frames=120, seed=2)
    frames, rendered_meta = gameplay.render_gameplay(120, seed=2)
    with h5py.File(path, "r") as file:
        images = file["rgb_images"]
        assert images.shape == (120,) and h5py.check_vlen_dtype(images.dtype) == np.uint8
        decoded = np.stack([np.asarray(Image.open(BytesIO(row.tobytes())).convert("L")) for row in images[()]])
        stored_meta = {name: file[f"meta/{name}"][()] for name in gameplay.META_FIELDS}
        assert file.attrs["generator"] == "model.video.gameplay" and file.attrs["seed"] == 2
        assert file.attrs["version"] == gameplay.VERSION
    assert np.array_equal(decoded, frames)
    for name in gameplay.META_FIELDS:
        assert np.array_equal(stored_meta[name], rendered_meta[name])
        assert np.array_equal(meta[name], rendered_meta[name])


def test_default_video_is_created_once_and_the_vit_loader_reads_it(tmp_path):
    from model.data import load_frames

    path = tmp_path / "data" / "gameplay-data.hdf5"
    assert gameplay.ensure_default_video(path) is True
    written = path.stat().st_mtime_ns
    assert gameplay.ensure_default_video(path) is False
    assert path.stat().st_mtime_ns == written
    frames = load_frames(path)
    assert frames.shape == (gameplay.DEFAULT_NUM_FRAMES, 144, 160) and frames.dtype == np.uint8
    assert np.array_equal(frames[:50], gameplay.render_gameplay(50)[0])
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_interrupted_write_leaves_nothing(tmp_path):
    path = tmp_path / "video.hdf5"
    with pytest.raises(RuntimeError):
        with VideoWriter(path) as writer:
            writer.append(np.zeros((144, 160), np.uint8))
            raise RuntimeError("stop")
    with pytest.raises(VideoIOError, match="shape"):
        with VideoWriter(path) as writer:
            writer.append(np.zeros((144, 160), np.uint8))
            writer.append(np.zeros((100, 160), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_make_gameplay_writes_video_and_preview(tmp_path, capsys):
    out, gif = tmp_path / "video.hdf5", tmp_path / "preview.gif"
    assert make_gameplay.main(["--out", str(out), "--frames", "40", "--seed", "1", "--gif", str(gif),
                               "--gif-start", "10", "--gif-frames", "20"]) == 0
    assert "40 frames" in capsys.readouterr().out
    with h5py.File(out, "r") as file:
        assert len(file["rgb_images"]) == 40
    with Image.open(gif) as image:  # Pillow merges repeated frames into longer ones
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(image.info["duration"])
        assert 600 <= sum(durations) <= 700 and image.size == (320, 288)  # 20 frames at about 30 fps
    with pytest.raises(SystemExit) as exit_info:
        make_gameplay.main(["--out", str(out), "--frames", "40", "--gif", str(gif), "--gif-start", "40"])
    assert exit_info.value.code == 2
