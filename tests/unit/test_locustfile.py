"""The load test: the locustfile imports, and the step shape gives the right load over time.

Importing locust monkey-patches the process with gevent, and loadtest.grpc_user switches grpc to gevent
(`init_gevent`). Neither may leak into the rest of the suite (its asyncio gRPC servers), so the locustfile is
imported in a child process and the shape with LOCUST_SKIP_MONKEY_PATCH set.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

# Not pytest.importorskip: importing locust here would monkey-patch the whole test process.
if importlib.util.find_spec("locust") is None:
    pytest.skip("the loadtest extra is not installed", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]


def test_locustfile_imports_and_defines_the_shopper():
    script = textwrap.dedent(
        """
        import loadtest.locustfile as lf
        from locust import events
        from loadtest.grpc_user import GrpcUser
        from core._proto.shoprank.v1 import ranking_pb2_grpc

        assert issubclass(lf.ShopperUser, GrpcUser) and GrpcUser.abstract and not lf.ShopperUser.abstract
        assert lf.ShopperUser.stub_class is ranking_pb2_grpc.RankingStub
        assert len(lf.ShopperUser.tasks) >= 4
        assert "cordless drill" in lf.QUERIES and len(lf.QUERIES) == len(set(lf.QUERIES))
        assert not hasattr(lf, "StepLoadShape")  # the shape is opt-in (-f ...,loadtest/shapes.py)
        assert len(lf.QUERIES) > 200 and any("\u4e00" <= ch <= "\u9fff" for q in lf.QUERIES for ch in q)  # + multilingual

        # a degraded answer is a success counted apart by reason code; an answer without items is a failure
        from core._proto.shoprank.v1 import ranking_pb2
        check = lambda response: lf.ShopperUser.check_response(None, "/shoprank.v1.Ranking/Search", response)
        degraded = ranking_pb2.SearchResponse(items=[ranking_pb2.Item(product_id="D0001")], degraded=True,
            degraded_reason="reranker_busy: reranking skipped, fused order; store_unavailable: personalization skipped")
        assert check(degraded) is None
        assert lf.DEGRADED == {"reranker_busy": 1, "store_unavailable": 1}
        assert isinstance(check(ranking_pb2.SearchResponse()), RuntimeError)
        lf.DEGRADED.clear()

        # the quitting listener: exit status 1 over 1% failures or over the p95 threshold, else 0
        import os, types
        from locust.stats import RequestStats

        def exit_code(failures, latency_ms, p95_limit="500"):
            os.environ["SHOPRANK_LOADTEST_P95_MS"] = p95_limit
            stats = RequestStats()
            for i in range(200):
                stats.log_request("grpc", "/shoprank.v1.Ranking/Search", latency_ms, 100)
                if i < failures:
                    stats.log_error("grpc", "/shoprank.v1.Ranking/Search", RuntimeError("boom"))
            env = types.SimpleNamespace(stats=stats, process_exit_code=None)
            events.quitting.fire(environment=env)
            return env.process_exit_code

        assert exit_code(failures=0, latency_ms=20) == 0
        assert exit_code(failures=2, latency_ms=20) == 0  # 1% exactly: passes, where Locust alone would exit 1
        assert exit_code(failures=3, latency_ms=20) == 1
        assert exit_code(failures=0, latency_ms=600) == 1
        assert exit_code(failures=0, latency_ms=600, p95_limit="1000") == 0

        # --degraded-csv: calls and degraded successes per second, written at exit
        import csv, tempfile, time
        lf.TIMELINE.clear()
        fine = ranking_pb2.SearchResponse(items=[ranking_pb2.Item(product_id="D0001")])
        for response, exception in ((fine, None), (degraded, None), (degraded, None), (None, RuntimeError("boom"))):
            events.request.fire(request_type="grpc", name="/shoprank.v1.Ranking/Search", response_time=5,
                                response_length=0, response=response, exception=exception, context={})
        path = os.path.join(tempfile.mkdtemp(), "degraded.csv")
        env = types.SimpleNamespace(stats=RequestStats(), process_exit_code=None,
                                    parsed_options=types.SimpleNamespace(degraded_csv=path))
        events.quitting.fire(environment=env)
        rows = list(csv.DictReader(open(path)))
        assert sum(int(r["requests"]) for r in rows) == 4 and sum(int(r["degraded"]) for r in rows) == 2
        assert all(abs(int(r["timestamp"]) - time.time()) < 60 for r in rows)
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


@pytest.fixture
def shape_class(monkeypatch):
    monkeypatch.setenv("LOCUST_SKIP_MONKEY_PATCH", "1")
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("loadtest.shapes").StepLoadShape


@pytest.mark.parametrize(
    ("run_time", "expected"),
    [(0.0, (2, 2)), (9.9, (2, 2)), (10.0, (4, 2)), (25.0, (6, 2)), (30.0, (8, 2)), (59.0, (8, 2))],
)
def test_step_shape_steps_up_to_max_users(shape_class, monkeypatch, run_time, expected):
    shape = shape_class()
    monkeypatch.setattr(shape, "get_run_time", lambda: run_time)
    assert shape.tick() == expected


@pytest.mark.parametrize("run_time", [60.0, 120.0])
def test_step_shape_stops_after_time_limit(shape_class, monkeypatch, run_time):
    shape = shape_class()
    monkeypatch.setattr(shape, "get_run_time", lambda: run_time)
    assert shape.tick() is None


def test_step_shape_stops_after_locusts_run_time(shape_class, monkeypatch):
    shape = shape_class()
    shape.runner = SimpleNamespace(environment=SimpleNamespace(parsed_options=SimpleNamespace(run_time=25)))
    monkeypatch.setattr(shape, "get_run_time", lambda: 24.0)
    assert shape.tick() == (6, 2)
    monkeypatch.setattr(shape, "get_run_time", lambda: 25.0)
    assert shape.tick() is None
