"""model/files.py: a file is replaced whole or left as it was."""
import json
import stat

import pytest

from model.files import atomic_file, write_json_atomically, write_text_atomically


def test_a_write_replaces_the_file_whole_readable_by_all(tmp_path):
    path = tmp_path / "deep" / "results.json"  # missing folders are made
    write_json_atomically(path, {"psnr": 25.1})
    write_json_atomically(path, {"psnr": 25.2})
    assert json.loads(path.read_text()) == {"psnr": 25.2}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary file left behind
    write_text_atomically(tmp_path / "a.md", "ä | b\n")
    assert (tmp_path / "a.md").read_text(encoding="utf-8") == "ä | b\n"
    with atomic_file(tmp_path / "b.bin", "wb") as file:
        file.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_an_error_while_writing_keeps_the_old_file(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("committed text\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(path) as file:
            file.write("half of the new")
            raise KeyboardInterrupt  # a Ctrl-C in the middle of the write
    assert path.read_text() == "committed text\n"
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]
    with pytest.raises(ValueError, match="mode 'w' or 'wb', not 'a'"):
        with atomic_file(path, "a"):
            pass
