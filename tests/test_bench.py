"""Smoke test of scripts/bench.py: it runs and writes its table and JSON. Nothing here is timed."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "bench.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_writes_table_and_json(tmp_path):
    path = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--only", "gpu", "--json", str(path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "| section | measurement | value | target | status |" in result.stdout
    written = json.loads(path.read_text())
    assert written["machine"]["torch"] and written["rows"]


def test_attention_variants_run_and_compare():
    bench = load_bench()
    times = bench.interleaved(bench.attention_pair(tokens=16, batch=2, width=8), reps=2, warmup=1)
    assert set(times) == {"hand-written", "sdpa"} and all(t > 0 for t in times.values())


def test_check_marks_pass_and_miss():
    table = load_bench().Table()
    assert table.check("x", "faster", 1.0, 1.1, higher_is_better=False)
    assert not table.check("x", "speed-up", 1.2, 1.7, higher_is_better=True)
    assert [row[-1] for row in table.rows] == ["PASS", "MISS"]
