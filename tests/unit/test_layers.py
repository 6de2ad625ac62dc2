"""The import layering in pyproject.toml ([tool.importlinter]) holds: the CLI, load tests and benchmarks above
serving, training and export, which are independent peers above the shared `core`; the serving path imports no
torch or onnx."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
