"""scripts/patch_code.py: the ceiling of a C-dimensional linear patch code, checked on patches of known rank."""
import h5py
import numpy as np

from scripts import patch_code


def test_a_code_as_wide_as_the_patches_rank_rebuilds_them_exactly(tmp_path, capsys):
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, (2, 4, 4)) * 100  # every patch is mean + s a + t b: rank 2
    weights = rng.integers(0, 2, (200, 2, 2, 2))
    frames = (20 + weights[..., 0, None, None] * a + weights[..., 1, None, None] * b)  # (200, 2, 2, 4, 4)
    frames = frames.transpose(0, 1, 3, 2, 4).reshape(200, 8, 8).astype(np.uint8)
    rows = patch_code.patches(frames, 4)
    assert rows.shape == (200 * 4, 16)
    ceiling = patch_code.code_ceiling(rows, [1, 2])
    assert ceiling["2"]["variance_share"] > 1 - 1e-9 and ceiling["2"]["psnr"] > 100
    assert ceiling["1"]["variance_share"] < 0.9 and ceiling["1"]["psnr"] < ceiling["2"]["psnr"]
    video = tmp_path / "video.hdf5"
    with h5py.File(video, "w") as file:
        file["rgb_images"] = np.repeat(frames, 1, axis=0)
    assert patch_code.main([str(video), "--patch-size", "4", "--channels", "1", "2",
                            "--out", str(tmp_path / "code.json")]) == 0
    assert (tmp_path / "code.json").exists() and "C =    2" in capsys.readouterr().out
    assert patch_code.main([str(video), "--patch-size", "3"]) == 1  # 8x8 frames do not divide into 3x3
