from prometheus_client import generate_latest

from orchestrator.metrics import Metrics


def test_observe_counts_searches_stages_and_each_degraded_reason_code():
    metrics = Metrics()
    metrics.observe({"retrieve": 12.0, "total": 20.0}, "")
    metrics.observe({"retrieve": 3.0, "total": 5.0},
                    "reranker_busy: reranking skipped, fused order; store_unavailable: personalization skipped")
    text = generate_latest(metrics.registry).decode()
    assert "shoprank_searches_total 2.0" in text
    assert 'shoprank_search_stage_seconds_count{stage="total"} 2.0' in text
    assert 'shoprank_search_stage_seconds_sum{stage="retrieve"} 0.015' in text
    assert 'shoprank_degraded_answers_total{reason="reranker_busy"} 1.0' in text
    assert 'shoprank_degraded_answers_total{reason="store_unavailable"} 1.0' in text


def test_rollout_gauges_follow_the_controllers_status_at_each_scrape():
    status = {"model": "reranker", "stable": "1", "candidate": "2", "mode": "shadow", "percent": 25,
              "windows": {"1": {"requests": 40, "errors": 1, "p99_ms": 250.0},
                          "2": {"requests": 10, "errors": 0, "p99_ms": float("nan")}},
              "shadow_agreement": 0.9, "shadow_compared": 8,
              "history": [{"action": "rollback", "detail": "guard: p99 1200 ms"}, {"action": "rollback", "detail": "by request"},
                          {"action": "promote", "detail": ""}]}
    metrics = Metrics()
    metrics.rollouts = lambda: [status]
    metrics.refresh_rollouts()
    text = generate_latest(metrics.registry).decode()
    assert 'shoprank_model_version{model="reranker",role="stable",version="1"} 1.0' in text
    assert 'shoprank_model_version{model="reranker",role="shadow",version="2"} 1.0' in text
    assert 'shoprank_rollout_percent{model="reranker"} 25.0' in text
    assert 'shoprank_version_window_errors{model="reranker",version="1"} 1.0' in text
    assert 'shoprank_version_window_p99_seconds{model="reranker",version="1"} 0.25' in text
    assert 'shoprank_shadow_agreement{model="reranker",version="2"} 0.9' in text
    assert 'shoprank_rollbacks{automatic="true",model="reranker"} 1.0' in text
    assert 'shoprank_rollbacks{automatic="false",model="reranker"} 1.0' in text

    status.update(candidate="", mode="", percent=0, windows={"2": {"requests": 0, "errors": 0, "p99_ms": float("nan")}})
    status["stable"] = "2"
    metrics.refresh_rollouts()
    text = generate_latest(metrics.registry).decode()
    assert 'role="shadow"' not in text and 'version="1"' not in text  # the old series are gone
    assert 'shoprank_model_version{model="reranker",role="stable",version="2"} 1.0' in text
