"""`make load`'s runner (loadtest/run.py) against the real service: a few seconds of Locust's step load, then
Locust's CSV and HTML reports, the degraded answers per second, the plot and the summary line."""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import subprocess
import sys

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.integration

SECONDS = 8


@pytest.mark.skipif(importlib.util.find_spec("locust") is None or importlib.util.find_spec("matplotlib") is None,
                    reason="the loadtest extra is not installed")
def test_runner_loads_the_service_and_writes_reports(service, tmp_path):
    out = tmp_path / "run"
    # The mechanics, not this machine's latency: a p95 limit no search reaches.
    env = {**os.environ, "SHOPRANK_LOADTEST_P95_MS": "60000"}
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.run", "--host", service.address, "--seconds", str(SECONDS), "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    line = re.search(r"^load: requests=(\d+) failures=(\d+) degraded=(\d+) \(\S+%\) p50_ms=\d+ p95_ms=\d+ "
                     r"p99_ms=\d+ rps=[\d.]+ \(exit status 0\)$", result.stdout, re.MULTILINE)
    assert line, result.stdout[-3000:]
    requests, failures, degraded = map(int, line.groups())
    assert requests > SECONDS and failures == 0 and degraded <= requests
    assert f"results in {out}" in result.stdout

    for name in ("report.html", "latency.png", "locust_stats.csv", "locust_stats_history.csv", "degraded.csv"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "latency.png").read_bytes()[:4] == b"\x89PNG"
    with (out / "degraded.csv").open() as handle:
        seconds = list(csv.DictReader(handle))
    assert sum(int(row["requests"]) for row in seconds) >= requests
    assert sum(int(row["degraded"]) for row in seconds) == degraded
    with (out / "locust_stats_history.csv").open() as handle:
        history = [row for row in csv.DictReader(handle) if row["Name"] == "Aggregated"]
    assert len(history) >= SECONDS - 2 and {row["User Count"] for row in history} >= {"2"}
