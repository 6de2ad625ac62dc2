"""Starting, losing and reaching Triton; the CLI's errors; evaluation through the serving path."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from threadpoolctl import threadpool_info

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from core.errors import TritonUnavailable
from core.features import FEATURES
from orchestrator.triton_process import LocalTriton, free_port

from .conftest import DEMO_CATALOG, DEMO_JUDGMENTS, ROOT, ServiceThread

pytestmark = pytest.mark.integration


def shoprank(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def health_status(address: str) -> int | None:
    with grpc.insecure_channel(address) as channel:
        try:
            return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
        except grpc.RpcError:
            return None


def test_not_serving_until_triton_is_ready_then_degraded_when_it_goes(settings, demo_index, model_repository):
    """Health follows Triton: NOT_SERVING before its models load, SERVING after, NOT_SERVING once it is gone;
    searches without Triton still answer from BM25 and the match features, marked degraded."""
    port = free_port()
    running = ServiceThread(dataclasses.replace(settings, index_dir=demo_index, triton_url=f"127.0.0.1:{port}"))
    start = asyncio.run_coroutine_threadsafe(running.service.start(), running.loop)
    triton = LocalTriton(model_repository, grpc_port=port)
    try:
        address = wait_for(lambda: running.service.port and running.address, 30, "the gRPC port")
        assert wait_for(lambda: health_status(address) is not None, 30, "health answers") is not None
        assert health_status(address) == health_pb2.HealthCheckResponse.NOT_SERVING
        triton.start()
        start.result(timeout=90)
        assert health_status(address) == health_pb2.HealthCheckResponse.SERVING

        with grpc.insecure_channel(address) as channel:
            stub = ranking_pb2_grpc.RankingStub(channel)
            healthy = stub.Search(ranking_pb2.SearchRequest(query="garden hose"), timeout=30)
            assert not healthy.degraded
            triton.stop()
            degraded = stub.Search(ranking_pb2.SearchRequest(query="garden hose", explain=True), timeout=30)
        # A short, stable reason for the caller; Triton's address and the client's error stay in the log.
        assert degraded.degraded and degraded.degraded_reason.startswith("dense_unavailable: ")
        assert "127.0.0.1" not in degraded.degraded_reason and "failed to connect" not in degraded.degraded_reason
        assert [item.product_id for item in degraded.items]  # answered from BM25, not lost
        # The weights without the cross-encoder rank what is left: BM25 and the in-process match features.
        assert {c.name for c in degraded.items[0].components} == {"bm25", *FEATURES}
        wait_for(lambda: health_status(address) == health_pb2.HealthCheckResponse.NOT_SERVING, 15, "NOT_SERVING")
    finally:
        triton.stop()
        running.stop()


def test_a_serving_orchestrator_runs_its_numeric_libraries_on_one_thread_and_restores_them(triton, settings,
                                                                                           demo_index):
    """While it serves, NumPy's BLAS and faiss's OpenMP run one thread each on its event loop (their idle threads
    spin and take the cores Triton needs); once it stops, NumPy's BLAS gets back the threads it had. (OpenMP's
    count belongs to each thread: the loop's is read on the loop.)"""

    def blas_threads() -> int:
        return next(pool["num_threads"] for pool in threadpool_info() if "numpy" in pool["filepath"])

    async def pools_on_the_loop():
        return threadpool_info()

    before = blas_threads()
    running = ServiceThread(dataclasses.replace(settings, index_dir=demo_index, triton_url=triton.url,
                                                numeric_threads=1)).start()
    try:
        pools = running.run(pools_on_the_loop())
        assert {pool["internal_api"] for pool in pools} >= {"openblas", "openmp"}
        assert {pool["num_threads"] for pool in pools} == {1}
    finally:
        running.stop()
    assert blas_threads() == before


def test_unreachable_triton_at_start_is_a_clear_error(demo_index, tmp_path):
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--index", str(demo_index), "--port", "0",
         "--triton-url", f"127.0.0.1:{port}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "SHOPRANK_TRITON_START_TIMEOUT_S": "3"},
    )
    assert result.returncode == 2
    assert f"Triton at 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_index_is_a_clear_error(tmp_path):
    result = shoprank("serve", "--index", str(tmp_path / "nowhere"), "--triton-url", "127.0.0.1:1")
    assert result.returncode == 2
    assert "no index at" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        ("product_id,name\n1,Drill\n", "missing required column(s) title"),
        ("product_id,title\n1,Drill\n2,Saw\n1,Hammer\n", "line 4: duplicate product_id '1' (first seen on line 2)"),
        (b"product_id,title\n1,Drill\n2,S\xffw\n", "line 3"),
    ],
)
def test_bad_catalog_is_named_by_line(tmp_path, content, message):
    catalog = tmp_path / "catalog.csv"
    catalog.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = shoprank("index", "--catalog", str(catalog), "--out", str(tmp_path / "index"))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "index").exists()


@pytest.mark.parametrize("task", ["rerank", "search"])
def test_eval_runs_judged_queries_through_the_service(triton, model_repository, demo_index, task):
    result = shoprank("eval", task, "--catalog", str(DEMO_CATALOG), "--judgments", str(DEMO_JUDGMENTS), "--json",
                      "--triton-url", triton.url, "--model-repository", str(model_repository),
                      "--index", str(demo_index))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["queries"] == 33 and metrics["degraded"] == 0
    assert 2 <= metrics["spelling_corrected"] < 33  # "cordles drill", "bluetooth headphnes", ... of data/demo    assert 0.5 < metrics["ndcg@10"] <= 1.0
    if task == "search":
        assert 0.5 < metrics["recall@100"] <= 1.0
        assert 0 < metrics["p50_ms"] <= metrics["p99_ms"]


def test_a_shop_keeps_its_weights_when_its_catalog_changes_and_another_gets_the_default(triton, model_repository,
                                                                                        tmp_path):
    lines = DEMO_CATALOG.read_text(encoding="utf-8").splitlines()
    header, first = lines[0].split(","), lines[1].split(",")  # the first product's row has no quoted comma
    first[header.index("price")] = f"{float(first[header.index('price')]) + 1:.2f}"  # one price up by $1
    for folder in ("demo", "corner-store"):  # another catalog file: the same shop by name, or another shop
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "catalog.csv").write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n",
                                                       encoding="utf-8")
    runs = {
        "named": ("--catalog", str(tmp_path / "corner-store" / "catalog.csv"), "--shop", "demo"),
        "by folder": ("--catalog", str(tmp_path / "demo" / "catalog.csv")),
        "another shop": ("--catalog", str(tmp_path / "corner-store" / "catalog.csv")),
    }
    results = {}
    for name, catalog in runs.items():
        result = shoprank("eval", "search", *catalog, "--judgments", str(DEMO_JUDGMENTS), "--json", "--max-queries",
                          "5", "--triton-url", triton.url, "--model-repository", str(model_repository),
                          "--index", str(tmp_path / f"index-{name.replace(' ', '-')}"))
        assert result.returncode == 0, result.stderr
        results[name] = json.loads(result.stdout.splitlines()[-1])  # after the index build's line
    assert (results["named"]["shop"], results["named"]["shop_weights"]) == ("demo", True)
    assert (results["by folder"]["shop"], results["by folder"]["shop_weights"]) == ("demo", True)
    assert (results["another shop"]["shop"], results["another shop"]["shop_weights"]) == ("corner-store", False)
    assert json.loads((tmp_path / "index-named" / "manifest.json").read_text())["shop"] == "demo"


def test_mined_negatives_are_retrieved_unjudged_catalog_products_of_train_queries(triton, model_repository, demo_index,
                                                                                  tmp_path):
    from core.catalog import load_catalog
    from core.judgments import load_judgments
    from core.splits import select
    from training.negatives import load

    out = tmp_path / "negatives.jsonl"
    result = shoprank("train", "negatives", "--catalog", str(DEMO_CATALOG), "--judgments", str(DEMO_JUDGMENTS),
                      "--out", str(out), "--triton-url", triton.url, "--model-repository", str(model_repository),
                      "--index", str(demo_index))
    assert result.returncode == 0, result.stderr
    mined = load(out)
    train = select(load_judgments(DEMO_JUDGMENTS), "train")
    catalog_ids = {product.product_id for product in load_catalog(DEMO_CATALOG)}
    assert set(mined) == set(train) and json.loads(result.stdout)["queries"] == len(train)
    for query, product_ids in mined.items():
        assert not set(product_ids) & set(train[query]), query
        assert len(set(product_ids)) == len(product_ids) <= 100 and set(product_ids) <= catalog_ids
    assert sum(len(ids) for ids in mined.values()) > 0


def test_training_with_a_missing_negatives_file_is_a_clear_error(tmp_path):
    result = shoprank("train", "reranker", "--catalog", str(DEMO_CATALOG), "--judgments", str(DEMO_JUDGMENTS),
                      "--out", str(tmp_path / "model"), "--negatives", str(tmp_path / "none.jsonl"))
    assert result.returncode == 2
    assert "no negatives file" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "model").exists()


def test_tritonserver_that_cannot_load_its_models_reports_why(tmp_path):
    broken = tmp_path / "repository" / "bi_encoder"
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text('name: "bi_encoder"\nbackend: "python"\nmax_batch_size: 8\n')
    (broken / "1" / "model.py").write_text("raise RuntimeError('weights are missing')\n")
    server = LocalTriton(tmp_path / "repository", start_timeout_s=60)
    with pytest.raises(TritonUnavailable) as caught:
        server.start()
    assert "weights are missing" in str(caught.value)
    assert not server.running


def test_a_killed_triton_is_restarted_and_full_answers_return_under_load(settings, demo_index):
    """The service owns its tritonserver: after a kill -9, searches keep being answered (lexical-only, degraded,
    never an error) while it restarts Triton, and it is SERVING with full answers again within 10 s of Triton
    being back."""
    running = ServiceThread(dataclasses.replace(settings, index_dir=demo_index, triton_url=""))
    answers: list[ranking_pb2.SearchResponse] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def load(address: str) -> None:
        with grpc.insecure_channel(address) as channel:
            stub = ranking_pb2_grpc.RankingStub(channel)
            while not stop.is_set():
                try:
                    answers.append(stub.Search(ranking_pb2.SearchRequest(query="garden hose", top_k=5), timeout=30))
                except grpc.RpcError as error:
                    errors.append(error)
                time.sleep(0.05)

    try:
        running.start()
        triton = running.service._local_triton
        assert triton is not None and triton.running
        old_pid = triton._process.pid
        client = threading.Thread(target=load, args=(running.address,), daemon=True)
        client.start()
        wait_for(lambda: len(answers) >= 3, 30, "answers before the kill")
        os.killpg(old_pid, signal.SIGKILL)
        killed_at = len(answers)
        wait_for(lambda: any(a.degraded for a in answers[killed_at:]), 30, "a degraded answer after the kill")
        wait_for(lambda: triton.running and triton._process.pid != old_pid, 120, "the restarted tritonserver")
        wait_for(lambda: health_status(running.address) == health_pb2.HealthCheckResponse.SERVING, 10, "SERVING again")
        recovered = len(answers)
        wait_for(lambda: len(answers) > recovered + 2, 15, "answers after the restart")
        assert not any(a.degraded for a in answers[recovered + 1:]), [a.degraded_reason for a in answers[recovered:]]
        with pytest.raises(ChildProcessError):  # the killed server was reaped, not left a zombie
            os.waitpid(old_pid, os.WNOHANG)
    finally:
        stop.set()
        running.stop()
    assert not errors, errors[:3]
    assert all(answer.items for answer in answers)


def test_metrics_port_serves_the_orchestrators_and_tritons_metrics(settings, demo_index):
    """GET /metrics: searches, per-stage latency, degraded answers by reason, and the local Triton's own."""
    import urllib.request

    running = ServiceThread(dataclasses.replace(settings, index_dir=demo_index, triton_url="", metrics_port=free_port()))
    try:
        running.start()
        with grpc.insecure_channel(running.address) as channel:
            stub = ranking_pb2_grpc.RankingStub(channel)
            for query in ("garden hose", "无线耳机"):
                assert stub.Search(ranking_pb2.SearchRequest(query=query), timeout=30).items
        url = f"http://127.0.0.1:{running.service.settings.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        running.stop()
    assert "shoprank_searches_total 2.0" in text
    for stage in ("profile", "understand", "retrieve", "rerank", "personalize", "order", "total"):
        assert f'shoprank_search_stage_seconds_count{{stage="{stage}"}} 2.0' in text
    assert 'nv_inference_request_success{model="multilingual_encoder",version="1"}' in text  # Triton's
