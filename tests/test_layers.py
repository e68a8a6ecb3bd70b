"""The import structure: layers that run one way (docs/architecture.md)."""
import ast
import sys
from pathlib import Path

from model import files

REPO = Path(__file__).resolve().parents[1]
CODE = sorted(path for folder in ("model", "nn", "scripts") for path in (REPO / folder).rglob("*.py")) + [
    REPO / name for name in ("main.py", "train.py", "net.py", "data.py")]


def module_name(path):
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def imports(path):
    """The project modules a file imports (dotted names)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def is_entry_point(path):
    return 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")


def test_nothing_imports_an_entry_point_or_a_test():
    entry_points = {module_name(path) for path in CODE if is_entry_point(path)}
    assert {"main", "model.main", "scripts.run_experiments", "scripts.tune"} <= entry_points
    for path in CODE:
        wrong = {name for name in imports(path) if name in entry_points or name.split(".")[0] == "tests"}
        assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}"


def test_the_layers_run_one_way():
    for path in CODE:
        top = {name.split(".")[0] for name in imports(path)}
        where = path.relative_to(REPO)
        if where.parts[0] == "nn":
            assert not top & {"model", "scripts", "main", "net", "data"}, where
        if where.parts[0] == "model":
            assert "scripts" not in top, where
        if where.name in ("main.py", "train.py", "net.py", "data.py") and len(where.parts) == 1:  # Exercise 1
            # Of Exercise 2 only the atomic file writes, which need nothing but the standard library (below).
            outside = {name for name in imports(path) if name.split(".")[0] in ("model", "nn", "scripts")}
            assert outside <= {"model.files", *(f"model.files.{n}" for n in dir(files))}, (where, outside)
    library = {module_name(REPO / "model" / name) for name in ("data.py", "config.py")}
    for path in CODE:
        if module_name(path) in library:
            assert "model.cli" not in imports(path), path


def test_the_video_package_stands_on_its_own():
    """model/video (the renderer and the course's HDF5 format) imports nothing of the project outside itself: the
    model, its training and its evaluation read videos, a video never needs them."""
    for path in sorted((REPO / "model" / "video").rglob("*.py")):
        outside = {name for name in imports(path) if name.split(".")[0] in ("model", "nn", "scripts")
                   and not name.startswith("model.video")}
        assert not outside, (path.relative_to(REPO), outside)


def test_the_evaluation_protocol_lives_in_the_library():
    """The published numbers come from model.protocol; the runner and the scripts that score the same frames import it
    instead of keeping their own copy of its constants."""
    for name in ("run_experiments.py", "artifacts.py", "memorisation.py"):
        assert "model.protocol" in imports(REPO / "scripts" / name), name
    for path in CODE:
        if path.name != "protocol.py":
            text = path.read_text(encoding="utf-8")
            assert "TRAIN_FIRST_TARGET =" not in text and "EVAL_PROTOCOL =" not in text, path.relative_to(REPO)


def test_the_atomic_file_writes_that_exercise_1_shares_need_only_the_standard_library():
    top = {name.split(".")[0] for name in imports(REPO / "model" / "files.py")}
    assert top <= set(sys.stdlib_module_names), top - set(sys.stdlib_module_names)


def test_no_code_edits_sys_path():
    for path in CODE:
        assert "sys.path" not in path.read_text(encoding="utf-8"), path.relative_to(REPO)
