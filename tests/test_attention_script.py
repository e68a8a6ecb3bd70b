"""scripts/attention.py: a published checkpoint's attention shares per head, and its one-line errors."""
import json

from scripts import attention


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert attention.main([str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none.ckpt" in err
    assert not list(tmp_path.glob("a.*"))


def test_the_published_shares_are_the_per_block_means_of_the_heads():
    """The committed file: per block, the mean over heads of the per-head shares is the per-block share."""
    shares = json.loads(open("results/vit/sheet/attention_sheet30k.json", encoding="utf-8").read())
    for key in ("same_place", "last_frame"):
        for block, heads in zip(shares[key], shares[f"{key}_per_head"]):
            assert abs(sum(heads) / len(heads) - block) < 1e-5
