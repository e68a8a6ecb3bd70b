"""Importers: video files, image folders and Atari play become course-format files the ViT can read."""
import sys

import numpy as np
import pytest
from PIL import Image

from model.data import load_frames
from model.scripts import import_video
from model.video.hdf5 import read_frames, read_meta


def test_fit_frame_crop_stretch_pad():
    image = np.zeros((100, 300, 3), np.uint8)  # wide: a centre crop keeps the middle 111 columns
    image[:, :90] = 255
    image[:, 148:153] = (255, 0, 0)
    crop = import_video.fit_frame(Image.fromarray(image), 144, 160, "crop", "nearest")
    assert crop.shape == (144, 160, 3) and crop[:, 0].max() == 0 and crop[:, 81, 0].min() == 255
    stretch = import_video.fit_frame(Image.fromarray(image), 144, 160, "stretch", "nearest")
    assert stretch[:, 0].min() == 255  # the white left edge survives
    pad = import_video.fit_frame(Image.fromarray(image), 144, 160, "pad", "nearest")
    assert pad[:40].max() == 0 and pad[-40:].max() == 0 and pad[72, 0].min() == 255  # black bars above and below


def make_frames(count, height=144, width=160):
    """count RGB frames, each a different gray with a white bar that moves right."""
    frames = []
    for i in range(count):
        frame = np.full((height, width, 3), 20 + 20 * i, np.uint8)
        frame[:, 16 * i:16 * i + 16] = 255
        frames.append(frame)
    return frames


def run(argv, capsys):
    """-> (exit code, stdout, stderr) of the importer's command line."""
    code = import_video.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_mp4_round_trip(tmp_path, capsys):
    av = pytest.importorskip("av")
    source, out = tmp_path / "clip.mp4", tmp_path / "clip.hdf5"
    frames = make_frames(5)
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 144, "yuv444p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    code, out_text, err = run(["video", str(source), "--out", str(out)], capsys)
    assert code == 0 and err == "" and "5 frames" in out_text
    imported = read_frames(out, grayscale=False)
    assert imported.shape == (5, 144, 160, 3)
    assert np.abs(imported.astype(int) - np.stack(frames)).mean() < 3  # lossy, but close
    assert np.array_equal(read_meta(out)[0]["source_index"], np.arange(5))
    assert load_frames(out).shape == (5, 144, 160)


def test_gif_round_trip_with_resize(tmp_path, capsys):
    pytest.importorskip("av")
    source, out = tmp_path / "clip.gif", tmp_path / "clip.hdf5"
    frames = make_frames(4, height=72, width=80)  # half size: scaled up 2x, exactly with nearest
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(source, save_all=True, append_images=images[1:], duration=100)
    code, _, err = run(["video", str(source), "--out", str(out), "--resample", "nearest", "--max-frames", "3"], capsys)
    assert code == 0 and err == ""
    expected = np.stack(frames[:3]).repeat(2, axis=1).repeat(2, axis=2)
    assert np.array_equal(read_frames(out, grayscale=False), expected)


def test_image_folder_round_trip_in_name_order(tmp_path, capsys):
    folder, out = tmp_path / "frames", tmp_path / "frames.hdf5"
    folder.mkdir()
    frames = make_frames(10)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{i}.png")  # frame_10 sorts after frame_9
    (folder / "notes.txt").write_text("not an image")
    code, _, err = run(["images", str(folder), "--out", str(out), "--every", "3"], capsys)
    assert code == 0 and err == ""
    assert np.array_equal(read_frames(out, grayscale=False), np.stack(frames[::3]))
    assert np.array_equal(read_meta(out)[0]["source_index"], [0, 3, 6, 9])


def test_atari_recording_is_reproducible(tmp_path, capsys):
    pytest.importorskip("ale_py")
    first, second = tmp_path / "a.hdf5", tmp_path / "b.hdf5"
    for out in (first, second):
        code, _, err = run(["atari", "--game", "pong", "--frames", "20", "--seed", "3", "--policy", "random",
                            "--out", str(out)], capsys)
        assert code == 0 and err == ""
    frames = read_frames(first, grayscale=False)
    assert frames.shape == (20, 144, 160, 3)
    assert np.array_equal(frames, read_frames(second, grayscale=False))
    meta, attrs = read_meta(first)
    assert {"action", "reward", "episode", "source_index"} <= set(meta) and len(meta["action"]) == 20
    assert attrs["source"] == "pong" and attrs["resize"] == "stretch"


@pytest.mark.parametrize("argv, message, package", [
    (["video", "{tmp}/missing.mp4"], "no such video file", "av"),
    (["video", "{tmp}/garbage.mp4"], "cannot decode", "av"),
    (["images", "{tmp}/empty"], "no images", None),
    (["images", "{tmp}/missing"], "no such folder", None),
    (["atari", "--game", "pongg", "--frames", "5"], "unknown Atari game 'pongg'; did you mean pong", "ale_py"),
])
def test_bad_input_is_one_error_line(tmp_path, capsys, argv, message, package):
    if package:
        pytest.importorskip(package)
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage.mp4").write_bytes(b"not a video")
    out = tmp_path / "out" / "video.hdf5"
    code, _, err = run([arg.format(tmp=tmp_path) for arg in argv] + ["--out", str(out)], capsys)
    assert code == 1
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


@pytest.mark.parametrize("module, argv, install", [
    ("av", ["video", "clip.mp4"], "pip install av"),
    ("ale_py", ["atari", "--game", "pong"], "pip install ale-py"),
])
def test_missing_optional_package_names_the_install(tmp_path, capsys, monkeypatch, module, argv, install):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    code, _, err = run(argv + ["--out", str(tmp_path / "video.hdf5")], capsys)
    assert code == 1 and install in err and err.count("\n") == 1
