"""Prometheus metrics on one port: the orchestrator's own and, when it runs one, its tritonserver's.

GET /metrics answers the orchestrator's metrics (searches, per-stage latency, degraded answers by reason code,
each model's rollout: stable and candidate versions, the candidate's share, each version's window figures),
followed by Triton's own (`nv_inference_*`: requests, queue and compute time per model), read from the local
tritonserver's metrics port at each scrape. A Triton that does not answer leaves a comment line, not an error.
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = logging.getLogger(__name__)

STAGES = ("profile", "understand", "retrieve", "rerank", "personalize", "order", "total")
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The orchestrator's metrics, in a registry of their own (one per service)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.searches = Counter("shoprank_searches", "Search calls answered", registry=self.registry)
        self.stage_seconds = Histogram("shoprank_search_stage_seconds", "Time spent in each stage of a search",
                                       ["stage"], buckets=BUCKETS_S, registry=self.registry)
        self.refused = Counter("shoprank_refused_calls", "Calls refused by admission control (RESOURCE_EXHAUSTED), by "
                               "kind (search, feedback, catalog, admin)", ["kind"], registry=self.registry)
        self.degraded = Counter("shoprank_degraded_answers", "Answers with a part skipped, by reason code",
                                ["reason"], registry=self.registry)
        # Rollouts, refreshed from the controller's status at each scrape.
        self.rollouts: Callable[[], list[dict]] | None = None
        self.version_role = Gauge("shoprank_model_version", "1 for each served model version, by role "
                                  "(stable, canary, shadow)", ["model", "version", "role"], registry=self.registry)
        self.candidate_percent = Gauge("shoprank_rollout_percent", "The candidate's share of requests (0: none)",
                                       ["model"], registry=self.registry)
        self.window_requests = Gauge("shoprank_version_window_requests", "Reranker requests over the guards' window",
                                     ["model", "version"], registry=self.registry)
        self.window_errors = Gauge("shoprank_version_window_errors", "Failed or late reranker requests over the "
                                   "guards' window", ["model", "version"], registry=self.registry)
        self.window_p99 = Gauge("shoprank_version_window_p99_seconds", "p99 of reranker requests over the guards' "
                                "window", ["model", "version"], registry=self.registry)
        self.shadow_agreement = Gauge("shoprank_shadow_agreement", "Mean RBO of the shadow's top 10 against the "
                                      "stable version's over the window", ["model", "version"], registry=self.registry)
        self.rollbacks = Gauge("shoprank_rollbacks", "Rollbacks in the rollout history (automatic ones have a "
                               "'guard:' reason)", ["model", "automatic"], registry=self.registry)
        # The impression log (orchestrator/experiments/impressions.py): its writer thread adds to the counter.
        self.impression_log_records = Counter("shoprank_impression_log_records", "Impressions and interactions "
                                              "given to the impression log, by outcome (written, dropped_full, "
                                              "dropped_error, dropped_closed)", ["outcome"], registry=self.registry)
        self.impression_log_queued = Gauge("shoprank_impression_log_queued", "Records waiting for the impression "
                                           "log's writer", registry=self.registry)

    def refuse(self, kind: str) -> None:
        """One call refused by admission control (orchestrator/admission.py)."""
        self.refused.labels(kind=kind).inc()

    def observe(self, timings_ms: dict[str, float], degraded_reason: str) -> None:
        self.searches.inc()
        for stage, milliseconds in timings_ms.items():
            self.stage_seconds.labels(stage=stage).observe(milliseconds / 1000.0)
        for reason in filter(None, degraded_reason.split("; ")):
            self.degraded.labels(reason=reason.split(":", 1)[0]).inc()


    def refresh_rollouts(self) -> None:
        """Set the rollout gauges from the controller's status."""
        if self.rollouts is None:
            return
        try:
            statuses = self.rollouts()
        except RuntimeError:  # read from the scrape's thread while the event loop changed it: keep the last values
            log.debug("rollout status changed during a scrape; gauges left as they were")
            return
        for gauge in (self.version_role, self.window_requests, self.window_errors, self.window_p99,
                      self.shadow_agreement, self.rollbacks):
            gauge.clear()
        for status in statuses:
            model = status["model"]
            self.version_role.labels(model, status["stable"], "stable").set(1)
            if status["candidate"]:
                self.version_role.labels(model, status["candidate"], status["mode"]).set(1)
                if status["shadow_compared"]:
                    self.shadow_agreement.labels(model, status["candidate"]).set(status["shadow_agreement"])
            self.candidate_percent.labels(model).set(status["percent"])
            for version, window in status["windows"].items():
                self.window_requests.labels(model, version).set(window["requests"])
                self.window_errors.labels(model, version).set(window["errors"])
                self.window_p99.labels(model, version).set(window["p99_ms"] / 1000.0)
            rollbacks = [event for event in status["history"] if event["action"] == "rollback"]
            automatic = sum(event["detail"].startswith("guard:") for event in rollbacks)
            self.rollbacks.labels(model, "true").set(automatic)
            self.rollbacks.labels(model, "false").set(len(rollbacks) - automatic)


class MetricsServer:
    """An HTTP server in a thread answering GET /metrics."""

    def __init__(self, metrics: Metrics, host: str, port: int, triton_metrics_url: str = "") -> None:
        self.metrics = metrics
        self.triton_metrics_url = triton_metrics_url
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served")
                    return
                body = outer.render()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
                log.debug("metrics: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        return self

    def render(self) -> bytes:
        self.metrics.refresh_rollouts()
        body = generate_latest(self.metrics.registry)
        if self.triton_metrics_url:
            try:
                with urllib.request.urlopen(self.triton_metrics_url, timeout=1.0) as response:
                    body += response.read()
            except OSError as error:
                body += f"# Triton's metrics at {self.triton_metrics_url} did not answer: {error}\n".encode()
        return body

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
