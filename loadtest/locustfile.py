"""Locust load test of shoprank.v1.Ranking/Search over gRPC.

    .venv/bin/locust -f loadtest/locustfile.py --headless -u 4 -r 2 -t 30s --host 127.0.0.1:50051

Queries are the judged queries of data/demo/judgments.csv and data/demo/multilingual.csv (English and Chinese);
some calls ask for explanations, filter by category or price, or name a user. A failure is a gRPC error or a
response without items; a degraded answer (the fused order because the reranker was busy or late, ...) is a
successful call, counted apart by its reason code and printed at the end with its share. The run exits with
status 1 when more than 1% of calls fail or the p99 exceeds SHOPRANK_LOADTEST_P99_MS (default 500 ms).
See loadtest/README.md; for a step load add loadtest/shapes.py to -f.
"""

from __future__ import annotations

import csv
import os
import random
from collections import Counter
from pathlib import Path

import grpc
from locust import between, events, task

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from loadtest.grpc_user import GrpcUser

DEMO = Path(__file__).resolve().parent.parent / "data" / "demo"
JUDGMENTS = DEMO / "judgments.csv"
MULTILINGUAL = DEMO / "multilingual.csv"
MAX_FAIL_RATIO = 0.01
P99_ENV = "SHOPRANK_LOADTEST_P99_MS"
DEFAULT_P99_MS = 500.0
CALL_TIMEOUT_S = 10.0


def load_queries(path: Path = JUDGMENTS) -> list[str]:
    """The distinct queries of a judgments CSV, in file order."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(dict.fromkeys(row["query"] for row in csv.DictReader(handle) if row["query"].strip()))


QUERIES = list(dict.fromkeys(load_queries() + load_queries(MULTILINGUAL)))
# Degraded answers by reason code ("reranker_busy", ...): successes, counted apart.
DEGRADED: Counter[str] = Counter()
FILTERS = [
    [ranking_pb2.Filter(field="category", any_of=["Phones"])],
    [ranking_pb2.Filter(field="price", max=200)],
]


class ShopperUser(GrpcUser):
    """A shopper typing queries into the search box."""

    stub_class = ranking_pb2_grpc.RankingStub
    wait_time = between(0.05, 0.2)

    def _search(self, **fields) -> None:
        request = ranking_pb2.SearchRequest(query=random.choice(QUERIES), **fields)
        try:
            self.stub.Search(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError:
            pass  # already reported to Locust by the interceptor

    def check_response(self, method, response):
        if not response.items:
            return RuntimeError("no items in the response")
        if response.degraded:
            for reason in response.degraded_reason.split("; "):
                DEGRADED[reason.split(":", 1)[0]] += 1
        return None

    @task(4)
    def search(self) -> None:
        self._search()

    @task(2)
    def search_explained(self) -> None:
        self._search(explain=True)

    @task(2)
    def search_filtered(self) -> None:
        self._search(filters=random.choice(FILTERS))

    @task(2)
    def search_as_user(self) -> None:
        self._search(user_id=f"user-{random.randrange(1000):04d}", top_k=20)


@events.quitting.add_listener
def check_thresholds(environment, **_kwargs) -> None:
    """Exit status 1 when the failure ratio or the p99 is over its threshold (or nothing was sent)."""
    total = environment.stats.total
    p99_limit = float(os.environ.get(P99_ENV, DEFAULT_P99_MS))
    p99 = total.get_response_time_percentile(0.99) or 0
    reasons = []
    if total.num_requests == 0:
        reasons.append("no requests were made")
    if total.fail_ratio > MAX_FAIL_RATIO:
        reasons.append(f"failure ratio {total.fail_ratio:.2%} > {MAX_FAIL_RATIO:.0%}")
    if p99 > p99_limit:
        reasons.append(f"p99 {p99:.0f} ms > {p99_limit:.0f} ms ({P99_ENV})")
    degraded = sum(DEGRADED.values())
    if total.num_requests:
        codes = ", ".join(f"{code} {count}" for code, count in DEGRADED.most_common()) or "none"
        print(f"shoprank loadtest: {degraded} degraded answers ({degraded / total.num_requests:.1%}): {codes}", flush=True)
    if reasons:
        print("shoprank loadtest FAILED: " + "; ".join(reasons), flush=True)
        environment.process_exit_code = 1
    else:
        print(f"shoprank loadtest passed: {total.num_requests} requests, {total.num_failures} failures, "
              f"p99 {p99:.0f} ms <= {p99_limit:.0f} ms", flush=True)
