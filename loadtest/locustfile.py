"""Locust load test of shoprank.v1.Ranking/Search over gRPC.

    .venv/bin/locust -f loadtest/locustfile.py --headless -u 4 -r 2 -t 30s --host 127.0.0.1:50051

Queries are the judged queries of data/demo/judgments.csv and data/demo/multilingual.csv (English and Chinese);
some calls ask for explanations, filter by category or price, or name a user. A failure is a gRPC error or a
response without items; a degraded answer (the fused order because the reranker was busy or late, ...) is a
successful call, counted apart by its reason code and printed at the end with its share. The run exits with
status 1 when more than 1% of calls fail or the p95 exceeds SHOPRANK_LOADTEST_P95_MS (default 500 ms), else 0.
`--degraded-csv FILE` writes the requests and degraded answers of every second (for loadtest/report.py);
`--requests-csv FILE` writes one row per call (search or feedback): when it ended, its latency, outcome, whether it was degraded, and the
reranker version that answered it (for loadtest/rollout_check.py). With `--shopper-clicks`, the plain searches are
the demo's judged queries by a known shopper, who clicks what a position-based click model (training/click_model.py)
draws from the judged gains and sends each click back as Feedback naming the answer's request id and position:
what an online experiment (an interleaved rollout's quality guard) learns from.
See loadtest/README.md; for a step load add loadtest/shapes.py to -f; `make load` runs both (loadtest/run.py).
"""

from __future__ import annotations

import csv
import os
import random
import time
from collections import Counter, defaultdict
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from locust import between, events, task

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from core.judgments import load_judgments
from loadtest.grpc_user import GrpcUser
from training.click_model import ClickModel

DEMO = Path(__file__).resolve().parent.parent / "data" / "demo"
JUDGMENTS = DEMO / "judgments.csv"
MULTILINGUAL = DEMO / "multilingual.csv"
MAX_FAIL_RATIO = 0.01
P95_ENV = "SHOPRANK_LOADTEST_P95_MS"
DEFAULT_P95_MS = 500.0
CALL_TIMEOUT_S = 10.0


def load_queries(path: Path = JUDGMENTS) -> list[str]:
    """The distinct queries of a judgments CSV, in file order."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(dict.fromkeys(row["query"] for row in csv.DictReader(handle) if row["query"].strip()))


QUERIES = list(dict.fromkeys(load_queries() + load_queries(MULTILINGUAL)))
GAINS = load_judgments(JUDGMENTS)  # query -> {product id: judged gain}, for the clicking shoppers
CLICK_MODEL = ClickModel(max_gain=max(gain for products in GAINS.values() for gain in products.values()))
# Degraded answers by reason code ("reranker_busy", ...): successes, counted apart.
DEGRADED: Counter[str] = Counter()
# Unix second -> [calls, degraded answers] ended in it: the degraded share over time, which Locust does not keep.
TIMELINE: defaultdict[int, list[int]] = defaultdict(lambda: [0, 0])
# (end time, latency ms, ok, degraded, reranker version, call) per call, kept only with --requests-csv.
CALLS: list[tuple[float, float, int, int, str, str]] = []
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
        if not method.endswith("/Search"):
            return None
        if not response.items:
            return RuntimeError("no items in the response")
        if response.degraded:
            for reason in response.degraded_reason.split("; "):
                DEGRADED[reason.split(":", 1)[0]] += 1
        return None

    @task(4)
    def search(self) -> None:
        if SHOPPER_CLICKS:
            self._search_and_click()
        else:
            self._search()

    def _search_and_click(self) -> None:
        """A known shopper searches a judged query and clicks what the click model draws, each click sent back."""
        query, user = random.choice(list(GAINS)), f"shopper-{random.randrange(500):03d}"
        try:
            response = self.stub.Search(ranking_pb2.SearchRequest(query=query, user_id=user), timeout=CALL_TIMEOUT_S)
        except grpc.RpcError:
            return
        gains = [GAINS[query].get(item.product_id, 0.0) for item in response.items]
        for position in CLICK_MODEL.clicks(gains, random):
            stamp = Timestamp()
            stamp.GetCurrentTime()
            event = ranking_pb2.FeedbackEvent(
                event_id=f"{response.request_id}-{position}", user_id=user,
                product_id=response.items[position - 1].product_id, type=ranking_pb2.EVENT_TYPE_CLICK, time=stamp,
                query=query, request_id=response.request_id, position=position)
            try:
                self.stub.Feedback(event, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError:
                pass  # reported to Locust by the interceptor

    @task(2)
    def search_explained(self) -> None:
        self._search(explain=True)

    @task(2)
    def search_filtered(self) -> None:
        self._search(filters=random.choice(FILTERS))

    @task(2)
    def search_as_user(self) -> None:
        self._search(user_id=f"user-{random.randrange(1000):04d}", top_k=20)


@events.init_command_line_parser.add_listener
def add_arguments(parser) -> None:
    parser.add_argument("--degraded-csv", default="", include_in_web_ui=False,
                        help="at exit, write timestamp,requests,degraded for every second of the run to this CSV")
    parser.add_argument("--requests-csv", default="", include_in_web_ui=False,
                        help="at exit, write time,latency_ms,ok,degraded,reranker_version,call for every call (Search, "
                             "Feedback) to this CSV")
    parser.add_argument("--shopper-clicks", action="store_true", default=False, include_in_web_ui=False,
                        help="plain searches are judged queries by known shoppers who click (click model) and send "
                             "their clicks as Feedback with the answer's request id")


@events.request.add_listener
def count_second(name="", response=None, exception=None, response_time=0.0, **_kwargs) -> None:
    """Count every search, and every degraded answer that is a success, in the second it ended; with
    --requests-csv, keep every call (searches and feedback)."""
    now = time.time()
    call = name.rsplit("/", 1)[-1]
    if call != "Search":
        if KEEP_CALLS:
            CALLS.append((now, float(response_time), int(exception is None), 0, "", call))
        return
    counts = TIMELINE[int(now)]
    counts[0] += 1
    degraded = exception is None and getattr(response, "degraded", False)
    if degraded:
        counts[1] += 1
    if KEEP_CALLS:
        version = response.model_versions.get("reranker", "") if exception is None and response is not None else ""
        CALLS.append((now, float(response_time), int(exception is None), int(degraded), version, call))


KEEP_CALLS = False
SHOPPER_CLICKS = False


@events.init.add_listener
def keep_calls(environment, **_kwargs) -> None:
    global KEEP_CALLS, SHOPPER_CLICKS  # noqa: PLW0603 - set once, before the first call
    options = getattr(environment, "parsed_options", None)
    KEEP_CALLS = bool(getattr(options, "requests_csv", ""))
    SHOPPER_CLICKS = bool(getattr(options, "shopper_clicks", False))


@events.quitting.add_listener
def write_calls(environment, **_kwargs) -> None:
    path = getattr(getattr(environment, "parsed_options", None), "requests_csv", "")
    if not path:
        return
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", "latency_ms", "ok", "degraded", "reranker_version", "call"])
        writer.writerows(CALLS)


@events.quitting.add_listener
def write_timeline(environment, **_kwargs) -> None:
    path = getattr(getattr(environment, "parsed_options", None), "degraded_csv", "")
    if not path:
        return
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "requests", "degraded"])
        writer.writerows([second, *TIMELINE[second]] for second in sorted(TIMELINE))


@events.quitting.add_listener
def check_thresholds(environment, **_kwargs) -> None:
    """Exit status 1 when the failure ratio or the p95 is over its threshold (or nothing was sent), else 0 unless a
    user raised an unexpected exception (Locust's own rule then: status 1)."""
    total = environment.stats.total
    p95_limit = float(os.environ.get(P95_ENV, DEFAULT_P95_MS))
    p95 = total.get_response_time_percentile(0.95) or 0
    p99 = total.get_response_time_percentile(0.99) or 0
    reasons = []
    if total.num_requests == 0:
        reasons.append("no requests were made")
    if total.fail_ratio > MAX_FAIL_RATIO:
        reasons.append(f"failure ratio {total.fail_ratio:.2%} > {MAX_FAIL_RATIO:.0%}")
    if p95 > p95_limit:
        reasons.append(f"p95 {p95:.0f} ms > {p95_limit:.0f} ms ({P95_ENV})")
    degraded = sum(DEGRADED.values())
    if total.num_requests:
        codes = ", ".join(f"{code} {count}" for code, count in DEGRADED.most_common()) or "none"
        print(f"shoprank loadtest: {degraded} degraded answers ({degraded / total.num_requests:.1%}): {codes}", flush=True)
    if reasons:
        print("shoprank loadtest FAILED: " + "; ".join(reasons) + f" (p99 {p99:.0f} ms)", flush=True)
        environment.process_exit_code = 1
    else:
        print(f"shoprank loadtest passed: {total.num_requests} requests, {total.num_failures} failures, "
              f"p95 {p95:.0f} ms <= {p95_limit:.0f} ms, p99 {p99:.0f} ms", flush=True)
        # Failures within the limit pass; Locust would exit 1 on any failure.
        runner = getattr(environment, "runner", None)
        if not getattr(runner, "exceptions", None):
            environment.process_exit_code = 0
