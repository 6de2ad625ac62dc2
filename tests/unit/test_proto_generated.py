"""The committed core/_proto is exactly what scripts/gen_proto.sh makes from proto/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_current(tmp_path):
    copy = tmp_path / "repo"
    for part in ("proto", "scripts", "core/_proto"):
        shutil.copytree(ROOT / part, copy / part)
    subprocess.run(["bash", "scripts/gen_proto.sh"], cwd=copy, check=True, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    generated = sorted(p.relative_to(copy) for p in (copy / "core/_proto").rglob("*.py*") if "__pycache__" not in p.parts)
    committed = sorted(p.relative_to(ROOT) for p in (ROOT / "core/_proto").rglob("*.py*") if "__pycache__" not in p.parts)
    assert generated == committed
    for path in generated:
        assert (copy / path).read_text() == (ROOT / path).read_text(), f"{path} is stale: run `make proto`"
