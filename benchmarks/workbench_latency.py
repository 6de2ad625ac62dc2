"""How fast the relevance workbench's pages answer, and what the workbench adds to the service's own time.

Usage:
    .venv/bin/python benchmarks/workbench_latency.py [--rounds 3] [--server HOST:PORT]

Without --server, starts Triton and a service on the demo catalog (the index cached under .shoprank/indexes, an
empty scratch profile store); then `shoprank workbench` in its own process on a free port. Each of the demo's judged
queries (data/demo/judgments.csv), one request at a time, --rounds times: the search page (anonymous), the search
page as a shopper with a purchase behind them (personalized), the compare page (default against fused: two searches),
the JSON search, and the same explained Search straight over gRPC from this process. Prints one JSON line: p50, p95
and max in ms per kind, and the search page's p50 and p95 less the direct gRPC call's (the workbench's overhead:
HTTP, rendering, the catalog's details and the judgments). The goal is p95 under 300 ms for every page.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc  # noqa: E402
from core.judgments import load_judgments  # noqa: E402
from core.metrics import percentile  # noqa: E402
from core.settings import Settings  # noqa: E402
from orchestrator.harness import catalog_stack, scratch_state  # noqa: E402
from orchestrator.triton_process import free_port  # noqa: E402

DEMO_CATALOG = ROOT / "data" / "demo" / "catalog.csv"
DEMO_JUDGMENTS = ROOT / "data" / "demo" / "judgments.csv"
SHOPPER_PURCHASE = "D0031"
GOAL_P95_MS = 300.0


def figures(times: list[float]) -> dict[str, float]:
    return {"n": len(times), "p50_ms": round(percentile(times, 50), 1), "p95_ms": round(percentile(times, 95), 1),
            "max_ms": round(max(times), 1)}


async def measure(address: str, queries: list[str], rounds: int, scratch: Path) -> dict:
    """Start the workbench on `address` and time every kind of call."""
    port = free_port()
    workbench = subprocess.Popen(
        [str(Path(sys.executable).with_name("shoprank")), "workbench", "--server", address, "--port", str(port),
         "--catalog", str(DEMO_CATALOG), "--judgments-out", str(scratch / "{shop}-judgments.csv")], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    shopper = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30.0) as http, \
                grpc.aio.insecure_channel(address) as channel:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await http.get("/")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or workbench.poll() is not None:
                    raise RuntimeError("the workbench did not start")
                await asyncio.sleep(0.2)
            stub = ranking_pb2_grpc.RankingStub(channel)
            feedback = await http.post("/api/feedback", json={"server": address, "user": shopper, "type": "purchase",
                                                              "product_id": SHOPPER_PURCHASE, "position": 1})
            feedback.raise_for_status()
            kinds = {
                "search_page": lambda q: http.get("/", params={"q": q}),
                "search_page_personalized": lambda q: http.get("/", params={"q": q, "user": shopper}),
                "compare_page": lambda q: http.get("/compare", params={"q": q, "left": "default", "right": "fused"}),
                "api_search": lambda q: http.get("/api/search", params={"q": q}),
                "grpc_search": lambda q: stub.Search(ranking_pb2.SearchRequest(query=q, top_k=10, explain=True),
                                                     timeout=30),
            }
            for query in queries[:5]:  # warm-up
                for call in kinds.values():
                    await call(query)
            times: dict[str, list[float]] = {kind: [] for kind in kinds}
            for _ in range(rounds):
                for query in queries:
                    for kind, call in kinds.items():
                        started = time.perf_counter()
                        answer = await call(query)
                        times[kind].append((time.perf_counter() - started) * 1000.0)
                        if kind != "grpc_search" and answer.status_code != 200:
                            raise RuntimeError(f"{kind} {query!r}: {answer.status_code} {answer.text[:200]}")
    finally:
        workbench.terminate()
        workbench.wait(timeout=10)
    result = {kind: figures(values) for kind, values in times.items()}
    pages = [kind for kind in result if kind != "grpc_search"]
    return {"queries": len(queries), "rounds": rounds, **result,
            "search_page_overhead_p50_ms": round(result["search_page"]["p50_ms"] - result["grpc_search"]["p50_ms"], 1),
            "search_page_overhead_p95_ms": round(result["search_page"]["p95_ms"] - result["grpc_search"]["p95_ms"], 1),
            "pages_p95_under_300_ms": all(result[kind]["p95_ms"] < GOAL_P95_MS for kind in pages)}


async def on_service(settings: Settings, queries: list[str], rounds: int, scratch: Path) -> dict:
    from orchestrator.server import Service  # noqa: PLC0415

    service = await Service(dataclasses.replace(settings, port=0)).start()
    try:
        return await measure(f"{settings.host}:{service.port}", queries, rounds, scratch)
    finally:
        await service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="times each query goes through every kind (default 3)")
    parser.add_argument("--server", help="host:port of a running service on the demo catalog (default: start one)")
    args = parser.parse_args()
    queries = list(load_judgments(DEMO_JUDGMENTS))
    with tempfile.TemporaryDirectory(prefix="shoprank-workbench-bench-") as scratch:
        scratch = Path(scratch)
        if args.server:
            result = asyncio.run(measure(args.server, queries, args.rounds, scratch))
        else:
            def adjust(settings: Settings) -> Settings:
                return dataclasses.replace(settings, **scratch_state(scratch))

            with catalog_stack(Settings.from_env(), DEMO_CATALOG, adjust=adjust) as settings:
                result = asyncio.run(on_service(settings, queries, args.rounds, scratch))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
