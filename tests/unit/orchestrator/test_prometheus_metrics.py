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
