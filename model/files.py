"""Files written whole or not at all.

A file is written to a temporary file beside its target, flushed, synced to disk and renamed over the
target, so a crash or an interrupt leaves either the old file or the new one, never half of one.
Standard library only: light enough for every entry point (the report builder, the scripts) to import.
"""
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(path, mode="w"):
    """A file opened for writing that replaces path when the block ends cleanly; on an error it is removed.

    mode "w" writes UTF-8 text, "wb" bytes. The file is made readable by all (0o644), like one written
    the ordinary way, and the rename is synced too, so the new file survives a power loss.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file writes with mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates the file readable by its owner only
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def write_text_atomically(path, text):
    with atomic_file(path) as file:
        file.write(text)


def write_json_atomically(path, data):
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")


def sync_folder(folder):
    """Make a rename inside folder durable (POSIX; folders cannot be opened for syncing on Windows)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
