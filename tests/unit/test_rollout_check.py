"""loadtest.rollout_check: the figures per phase and the one summary line, from per-request rows."""

from __future__ import annotations

import math

import pytest

from loadtest.rollout_check import Phase, phase_figures, read_requests, summary_line, table


def rows(start: float, latencies: list[float], version: str = "1", ok: bool = True, degraded: bool = False) -> list[dict]:
    return [{"time": start + i * 0.1, "latency_ms": latency, "ok": ok, "degraded": degraded, "version": version}
            for i, latency in enumerate(latencies)]


def test_each_request_counts_in_the_phase_it_ended_in():
    calls = rows(0.0, [10.0] * 10) + rows(10.0, [100.0] * 5, version="2", degraded=True) + rows(20.0, [1.0], ok=False)
    figures = phase_figures(calls, [Phase("before", 0.0, 10.0), Phase("canary", 10.0, 20.0), Phase("empty", 30.0, 31.0)])
    before, canary, empty = figures
    assert (before["requests"], before["failed"], before["p50_ms"], before["rps"]) == (10, 0, 10.0, 1.0)
    assert before["reranker_versions"] == ["1"] and canary["reranker_versions"] == ["2"]
    assert canary["degraded_share"] == 1.0 and canary["p99_ms"] == 100.0
    assert empty["requests"] == 0 and math.isnan(empty["p50_ms"])
    assert "| canary | 10 | 5 | 0 | 0.5 | 100 | 100 | 100 | 100.0% | 2 |" in table(figures)


def test_summary_line_has_exactly_the_promised_fields():
    calls = rows(0.0, [float(ms) for ms in range(1, 101)]) + rows(20.0, [5.0], ok=False) + rows(30.0, [7.0], degraded=True)
    assert summary_line(calls) == "failed=1 requests=102 degraded=1 p50_ms=50 p99_ms=99"


def test_requests_csv_is_read_as_the_locustfile_writes_it(tmp_path):
    path = tmp_path / "requests.csv"
    path.write_text("time,latency_ms,ok,degraded,reranker_version,call\n1.5,12.5,1,0,2,Search\n2.0,3.0,0,0,,Feedback\n")
    assert read_requests(path) == [
        {"time": 1.5, "latency_ms": 12.5, "ok": True, "degraded": False, "version": "2", "call": "Search"},
        {"time": 2.0, "latency_ms": 3.0, "ok": False, "degraded": False, "version": "", "call": "Feedback"},
    ]


def test_a_failed_feedback_call_counts_as_failed_but_not_in_the_searches_latency():
    calls = rows(0.0, [10.0] * 4) + [{**row, "call": "Feedback"} for row in rows(1.0, [500.0], ok=False)]
    [figures] = phase_figures(calls, [Phase("quality", 0.0, 10.0)])
    assert (figures["requests"], figures["feedback"], figures["failed"], figures["p99_ms"]) == (4, 1, 1, 10.0)
    assert summary_line(calls) == "failed=1 requests=5 degraded=0 p50_ms=10 p99_ms=10"


def test_a_worse_version_ranks_by_bm25_alone_without_touching_the_stable_one(tmp_path):
    import json

    from loadtest.rollout_check import write_worse_version

    stable = tmp_path / "reranker" / "2"
    stable.mkdir(parents=True)
    (stable / "model.onnx").write_text("weights")
    original = {"latin": {"reranker": 1.0}, "cjk": {"multilingual": 1.0}, "shops": {"demo": {"weights": {}}}}
    (stable / "combination.json").write_text(json.dumps(original))
    assert write_worse_version(tmp_path / "reranker", "2") == "3"
    assert json.loads((tmp_path / "reranker" / "3" / "combination.json").read_text()) == {
        "latin": {"bm25": 1.0}, "cjk": {"multilingual": 1.0}}
    assert json.loads((stable / "combination.json").read_text()) == original
    assert (tmp_path / "reranker" / "3" / "model.onnx").read_text() == "weights"


@pytest.mark.parametrize("latencies", [[]])
def test_an_empty_run_still_prints_its_line(latencies):
    assert summary_line(rows(0.0, latencies)).startswith("failed=0 requests=0 degraded=0")
