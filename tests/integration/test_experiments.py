"""Online experiments on a real service (real Triton, real gRPC servers): interleaving and A/B through the admin API,
shoppers' feedback joined to the answers by request id, the figures and the impression log.

The shopper is deterministic: for each answer it clicks the product with the highest judged gain (the demo's
judgments), the first one when several tie. The test computes on its side what each click must credit, from the arms
the answers carry, and checks that the service counted exactly that.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from core._proto.shoprank.v1 import admin_pb2, admin_pb2_grpc, ranking_pb2, ranking_pb2_grpc
from core.judgments import load_judgments
from orchestrator.experiments.impressions import read_log
from orchestrator.experiments.interleave import credit

from .conftest import ServiceThread

pytestmark = pytest.mark.integration

TOKEN = "experiment-test-token"
JUDGMENTS = load_judgments(Path(__file__).resolve().parents[2] / "data" / "demo" / "judgments.csv")
QUERIES = list(JUDGMENTS)[:40]


@pytest.fixture
def running(settings, triton, demo_index, tmp_path):
    service = ServiceThread(dataclasses.replace(
        settings, index_dir=demo_index, triton_url=triton.url, admin_token=TOKEN, admin_port=0,
        rollout_state=tmp_path / "rollout.json", experiment_state=tmp_path / "experiments.json",
        impression_log=tmp_path / "impressions", profile_store=f"sqlite:///{tmp_path / 'profiles.db'}")).start()
    try:
        yield service
    finally:
        service.stop()


def stubs(service: ServiceThread):
    ranking = ranking_pb2_grpc.RankingStub(grpc.insecure_channel(service.address))
    admin = admin_pb2_grpc.AdminStub(grpc.insecure_channel(f"127.0.0.1:{service.service.admin_port}"))
    return ranking, admin, (("authorization", f"Bearer {TOKEN}"),)


def best_position(query: str, response: ranking_pb2.SearchResponse) -> int:
    """1-based position of the shown product with the highest judged gain (0: nothing judged relevant shown)."""
    gains = [JUDGMENTS[query].get(item.product_id, 0.0) for item in response.items]
    if not gains or max(gains) <= 0:
        return 0
    return gains.index(max(gains)) + 1


def click(ranking, user: str, event: str, response: ranking_pb2.SearchResponse, position: int,
          kind=ranking_pb2.EVENT_TYPE_CLICK) -> None:
    stamp = Timestamp()
    stamp.FromSeconds(int(time.time()))
    ranking.Feedback(ranking_pb2.FeedbackEvent(
        event_id=event, user_id=user, product_id=response.items[position - 1].product_id, type=kind, time=stamp,
        request_id=response.request_id, position=position), timeout=30)


def logged(service: ServiceThread, request_ids: set[str], interactions: int, timeout_s: float = 20.0) -> list[dict]:
    """The impression log's records once it holds an impression of each request and that many interactions (the
    writer appends them off the searches' path)."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = list(read_log(service.service.settings.impression_log))
        shown = {record["request_id"] for record in records if record["kind"] == "impression"}
        joined = sum(record["kind"] == "interaction" for record in records)
        if request_ids <= shown and joined >= interactions:
            assert joined == interactions
            return records
        assert time.monotonic() < deadline, f"{len(request_ids - shown)} impressions and {interactions - joined} " \
                                            "interactions missing from the log"
        time.sleep(0.2)


def test_an_interleaving_experiment_credits_the_arm_whose_products_were_clicked(running):
    ranking, admin, auth = stubs(running)
    started = admin.StartExperiment(admin_pb2.StartExperimentRequest(
        name="bm25-vs-default", control="weights=bm25:1", treatment="default", method="interleave", share=1.0),
        metadata=auth, timeout=30)
    assert started.running and started.decision == "undecided"
    with pytest.raises(grpc.RpcError) as second:
        admin.StartExperiment(admin_pb2.StartExperimentRequest(
            name="another", control="fused", treatment="default", method="ab", share=0.5), metadata=auth, timeout=30)
    assert second.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    expected = {"wins": 0, "losses": 0, "ties": 0}
    request_ids, mixed = set(), 0
    for turn, query in enumerate(QUERIES):
        user = f"shopper-{turn}"
        response = ranking.Search(ranking_pb2.SearchRequest(query=query, user_id=user, top_k=10), timeout=60)
        assert response.experiment == "bm25-vs-default" and response.request_id not in request_ids
        request_ids.add(response.request_id)
        arms = [item.arm for item in response.items]
        assert set(arms) <= {"control", "treatment"} and len({item.product_id for item in response.items}) == len(arms)
        mixed += len(set(arms)) == 2
        position = best_position(query, response)
        if not position:
            continue
        click(ranking, user, f"click-{turn}", response, position)
        click(ranking, user, f"view-{turn}", response, position, kind=ranking_pb2.EVENT_TYPE_VIEW)  # credits nothing
        outcome = credit(arms, [position])
        expected["wins" if outcome > 0 else "losses" if outcome < 0 else "ties"] += 1
    assert mixed >= len(QUERIES) // 2  # the answers really interleave two rankings
    assert sum(expected.values()) >= 10

    [status] = admin.GetExperimentStatus(admin_pb2.ExperimentRequest(name="bm25-vs-default"), metadata=auth,
                                         timeout=30).experiments
    assert (status.wins, status.losses, status.ties) == (expected["wins"], expected["losses"], expected["ties"])
    assert status.shown == len(QUERIES)
    assert status.feedback_joined == 2 * sum(expected.values())
    if status.wins + status.losses:
        assert status.treatment_share_low <= status.treatment_share <= status.treatment_share_high
    stopped = admin.StopExperiment(admin_pb2.ExperimentRequest(name="bm25-vs-default"), metadata=auth, timeout=30)
    assert not stopped.running and stopped.wins == expected["wins"]
    after = ranking.Search(ranking_pb2.SearchRequest(query=QUERIES[0], user_id="shopper-0", top_k=10), timeout=60)
    assert after.experiment == "" and all(item.arm == "" for item in after.items)

    records = logged(running, request_ids | {after.request_id}, 2 * sum(expected.values()))
    impressions = {record["request_id"]: record for record in records if record["kind"] == "impression"}
    interactions = [record for record in records if record["kind"] == "interaction"]
    for interaction in interactions:
        shown = impressions[interaction["request_id"]]
        assert interaction["joined"] and interaction["experiment"] == "bm25-vs-default"
        assert shown["products"][interaction["position"] - 1] == interaction["product_id"]
        assert shown["arms"][interaction["position"] - 1] == interaction["arm"]
        assert interaction["user"].startswith("u:") and "shopper" not in interaction["user"]


def test_an_ab_experiment_keeps_each_user_in_one_arm_and_counts_clicks_per_search(running):
    ranking, admin, auth = stubs(running)
    admin.StartExperiment(admin_pb2.StartExperimentRequest(
        name="fused-vs-default", control="fused", treatment="default", method="ab", share=1.0),
        metadata=auth, timeout=30)
    arm_of: dict[str, str] = {}
    searches = {"control": 0, "treatment": 0}
    clicks = {"control": 0, "treatment": 0}
    for turn in range(30):
        user, query = f"ab-user-{turn % 10}", QUERIES[turn % len(QUERIES)]
        response = ranking.Search(ranking_pb2.SearchRequest(query=query, user_id=user, top_k=10), timeout=60)
        [arm] = {item.arm for item in response.items}
        assert arm_of.setdefault(user, arm) == arm  # sticky by user
        searches[arm] += 1
        position = best_position(query, response)
        if position:
            click(ranking, user, f"ab-click-{turn}", response, position)
            click(ranking, user, f"ab-again-{turn}", response, position)  # the same position again: counted once
            clicks[arm] += 1
    assert len(set(arm_of.values())) == 2  # ten users fall in both arms
    [status] = admin.GetExperimentStatus(admin_pb2.ExperimentRequest(name="fused-vs-default"), metadata=auth,
                                         timeout=30).experiments
    figures = {arm.arm: arm for arm in status.arms}
    for arm in ("control", "treatment"):
        assert figures[arm].searches == searches[arm]
        assert figures[arm].clicks_per_search == pytest.approx(clicks[arm] / searches[arm])
    assert status.decision == "undecided"  # 30 searches: the test waits for 100 per arm


def test_a_malformed_experiment_is_refused_with_the_reason(running):
    _, admin, auth = stubs(running)
    for request, words in ((dict(name="x", control="default", treatment="bogus", method="interleave", share=0.5),
                            "unknown part"),
                           (dict(name="x", control="default", treatment="fused", method="coin", share=0.5), "method"),
                           (dict(name="x", control="default", treatment="fused", method="ab", share=1.5), "share"),
                           (dict(name="bad name!", control="default", treatment="fused", method="ab", share=0.5),
                            "name")):
        with pytest.raises(grpc.RpcError) as refused:
            admin.StartExperiment(admin_pb2.StartExperimentRequest(**request), metadata=auth, timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in refused.value.details()
    with pytest.raises(grpc.RpcError) as missing:
        admin.StopExperiment(admin_pb2.ExperimentRequest(name="never-started"), metadata=auth, timeout=30)
    assert missing.value.code() == grpc.StatusCode.FAILED_PRECONDITION
