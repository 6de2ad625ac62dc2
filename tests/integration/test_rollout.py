"""Model version rollouts on a real tritonserver and real gRPC servers, under a steady stream of searches.

The repository is a copy of the exported cpu target with a second reranker version (the same weights, so the
answers stay comparable) and a second bi-encoder version that no served index was built with; one test adds a
third reranker version that cannot load.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from collections import defaultdict
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as triton_grpc

from core._proto.shoprank.v1 import admin_pb2, admin_pb2_grpc, ranking_pb2, ranking_pb2_grpc
from core.errors import ConfigError
from core.judgments import load_judgments
from loadtest.rollout_check import linked_copy
from orchestrator.rollout.versions import combination_file
from orchestrator.triton_process import LocalTriton

from .conftest import ServiceThread

pytestmark = pytest.mark.integration

TOKEN = "rollout-test-token"
DEMO_JUDGMENTS = Path(__file__).resolve().parents[2] / "data" / "demo" / "judgments.csv"
QUERIES = ["cordless drill", "wireless earbuds", "garden hose", "phone case", "无线耳机", "bluetooth speaker"]


@pytest.fixture(scope="module")
def repository(model_repository, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rollout") / "repository"
    linked_copy(model_repository, root)  # every model at version 1 only (conftest's model_repository)
    reranker = root / "reranker"
    if not (reranker / "1" / "combination.json").is_file():  # exported before versions had their own
        shutil.copy2(combination_file(model_repository, "reranker", "1"), reranker / "1" / "combination.json")
    linked_copy(reranker / "1", reranker / "2")
    linked_copy(root / "bi_encoder" / "1", root / "bi_encoder" / "2")
    return root


@pytest.fixture(scope="module")
def rollout_triton(repository):
    server = LocalTriton(repository, load_all=False)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def rollout_settings(settings, repository, rollout_triton, demo_index, tmp_path):
    return dataclasses.replace(settings, model_repository=repository, triton_url=rollout_triton.url,
                               index_dir=demo_index, rollout_state=tmp_path / "rollout.json", admin_token=TOKEN,
                               admin_port=0, rollout_min_requests=5, rollout_window_s=30.0,
                               experiment_state=tmp_path / "experiments.json", impression_log=tmp_path / "impressions")


class Load:
    """Searches in a background thread, one user id per query, recording each answer's reranker version."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.answers: list[tuple[str, str]] = []  # (user, reranker version) in answer order
        self.sent_at: list[float] = []  # when each answered request was sent, parallel to answers
        self.failures: list[str] = []
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with grpc.insecure_channel(self.address) as channel:
            stub = ranking_pb2_grpc.RankingStub(channel)
            turn = 0
            while not self._stop.is_set():
                user = f"user-{turn % 24}"
                request = ranking_pb2.SearchRequest(query=QUERIES[turn % len(QUERIES)], user_id=user, top_k=5)
                turn += 1
                sent_at = time.monotonic()
                try:
                    response = stub.Search(request, timeout=30)
                except grpc.RpcError as error:
                    self.failures.append(f"{error.code().name}: {error.details()}")
                    continue
                finally:
                    self.requests += 1
                if not response.items:
                    self.failures.append("no items")
                self.sent_at.append(sent_at)
                self.answers.append((user, response.model_versions["reranker"]))

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def versions(self, sent_after: float) -> dict[str, set[str]]:
        """User -> the reranker versions that answered their requests sent after `sent_after` (monotonic)."""
        result: dict[str, set[str]] = defaultdict(set)
        for sent_at, (user, version) in zip(list(self.sent_at), list(self.answers)):
            if sent_at > sent_after:
                result[user].add(version)
        return result

    def wait_for(self, count: int, timeout_s: float = 120.0) -> None:
        target = self.requests + count
        deadline = time.monotonic() + timeout_s
        while self.requests < target:
            assert time.monotonic() < deadline, f"only {self.requests} of {target} requests answered"
            time.sleep(0.05)


def admin(running: ServiceThread, token: str = TOKEN) -> tuple[admin_pb2_grpc.AdminStub, tuple]:
    channel = grpc.insecure_channel(f"127.0.0.1:{running.service.admin_port}")
    return admin_pb2_grpc.AdminStub(channel), (("authorization", f"Bearer {token}"),)


def loaded(triton: LocalTriton, model: str) -> set[str]:
    index = triton_grpc.InferenceServerClient(triton.url).get_model_repository_index()
    return {m.version for m in index.models if m.name == model and m.state == "READY"}


def test_canary_shift_promote_then_a_broken_version_rolls_back_without_a_failed_request(rollout_settings, rollout_triton,
                                                                                         repository):
    running = ServiceThread(rollout_settings).start()
    broken = repository / "reranker" / "3"
    try:
        stub, auth = admin(running)
        assert loaded(rollout_triton, "reranker") == {"2"}  # the newest version, at the first start
        [status] = stub.GetRolloutStatus(admin_pb2.ModelRequest(), metadata=auth).models
        assert (status.stable_version, status.candidate_version) == ("2", "")
        # Roll back to version 1 the way a release goes: as a canary, then promoted.
        with Load(running.address) as load:
            load.wait_for(10)
            status = stub.StartRollout(admin_pb2.StartRolloutRequest(model="reranker", version="1", percent=50),
                                       metadata=auth, timeout=120)
            assert (status.candidate_version, status.mode, status.percent) == ("1", "canary", 50)
            assert loaded(rollout_triton, "reranker") == {"1", "2"}
            routed = time.monotonic()  # a request sent before the canary began may still be answered by version 2
            load.wait_for(60)
            during = load.versions(sent_after=routed)
            assert all(len(versions) == 1 for versions in during.values()), during  # sticky per user
            assert {v for versions in during.values() for v in versions} == {"1", "2"}
            stub.ShiftRollout(admin_pb2.ShiftRolloutRequest(model="reranker", percent=100), metadata=auth)
            load.wait_for(30)
            status = stub.PromoteRollout(admin_pb2.ModelRequest(model="reranker"), metadata=auth)
            assert (status.stable_version, status.candidate_version) == ("1", "")
            load.wait_for(30)
            running.run(running.service.rollout.settled())
            assert loaded(rollout_triton, "reranker") == {"1"}
            # A version that cannot load is rolled back at once, and says why.
            broken.mkdir()
            (broken / "model.py").write_text("raise RuntimeError('version 3 is broken on purpose')\n")
            with pytest.raises(grpc.RpcError) as refused:
                stub.StartRollout(admin_pb2.StartRolloutRequest(model="reranker", version="3", percent=10),
                                  metadata=auth, timeout=120)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "rolled back: failed to load" in refused.value.details()
            load.wait_for(20)
        [status] = stub.GetRolloutStatus(admin_pb2.ModelRequest(model="reranker"), metadata=auth).models
        assert status.history[-1].action == "rollback" and "version 3 is broken" in status.history[-1].detail
        assert [event.action for event in status.history][-7:] == ["start", "live", "shift", "promote", "unload",
                                                                   "start", "rollback"]
        assert load.failures == [] and load.requests > 150
        assert {version for _, version in load.answers[-24:]} == {"1"}
    finally:
        running.stop()
        shutil.rmtree(broken, ignore_errors=True)

    # The state survives a restart: version 1 stays stable though version 2 is newer.
    restarted = ServiceThread(rollout_settings).start()
    try:
        stub, auth = admin(restarted)
        [status] = stub.GetRolloutStatus(admin_pb2.ModelRequest(), metadata=auth).models
        assert status.stable_version == "1" and loaded(rollout_triton, "reranker") == {"1"}
        saved = json.loads(rollout_settings.rollout_state.read_text())["models"]["reranker"]
        assert saved["stable"] == "1"
    finally:
        restarted.stop()


def test_shadow_scores_beside_the_stable_version_and_serves_only_it(rollout_settings):
    (rollout_settings.rollout_state).write_text(json.dumps({"models": {"reranker": {"stable": "1"}}}))
    running = ServiceThread(rollout_settings).start()
    try:
        stub, auth = admin(running)
        with Load(running.address) as load:
            stub.StartRollout(admin_pb2.StartRolloutRequest(model="reranker", version="2", percent=100, shadow=True),
                              metadata=auth, timeout=120)
            load.wait_for(30)
            # Shadow scorings finish after their answers, and Chinese queries are not reranked: wait for 20.
            deadline = time.monotonic() + 60
            while True:
                [status] = stub.GetRolloutStatus(admin_pb2.ModelRequest(), metadata=auth).models
                if status.shadow_compared + status.shadow_skipped >= 20 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
    finally:
        running.stop()
    assert load.failures == []
    assert {version for _, version in load.answers} == {"1"}
    assert status.candidate_version == "2" and status.mode == "shadow"
    # Version 2 has version 1's weights: its rankings agree (RBO 1) wherever it scored them.
    assert status.shadow_compared + status.shadow_skipped >= 20 and status.shadow_compared > 0
    assert status.shadow_agreement == pytest.approx(1.0, abs=1e-3)


def test_a_slow_canary_is_rolled_back_by_its_guard(rollout_settings):
    (rollout_settings.rollout_state).write_text(json.dumps({"models": {"reranker": {"stable": "1"}}}))
    strict = dataclasses.replace(rollout_settings, rollout_max_p99_ms=1.0)  # no real reranker call is this fast
    running = ServiceThread(strict).start()
    try:
        stub, auth = admin(running)
        with Load(running.address) as load:
            stub.StartRollout(admin_pb2.StartRolloutRequest(model="reranker", version="2", percent=100),
                              metadata=auth, timeout=120)
            deadline = time.monotonic() + 60
            while stub.GetRolloutStatus(admin_pb2.ModelRequest(), metadata=auth).models[0].candidate_version:
                assert time.monotonic() < deadline, "the guard did not roll the canary back"
                time.sleep(0.2)
            load.wait_for(10)
        [status] = stub.GetRolloutStatus(admin_pb2.ModelRequest(), metadata=auth).models
    finally:
        running.stop()
    rollback = [event for event in status.history if event.action == "rollback"][-1]
    assert rollback.detail.startswith("guard: p99") and "> 1 ms" in rollback.detail
    assert load.failures == []
    assert status.stable_version == "1"


def test_an_interleaved_canary_that_shoppers_like_less_is_rolled_back_by_the_quality_guard(rollout_settings,
                                                                                           repository):
    """Version 7 is version 1 with weights that rank latin queries' lexical matches last. Shoppers search the demo's
    judged queries and click the best-judged product shown; the interleaving experiment must decide against the
    candidate and the guard roll it back, with no failed search."""
    (rollout_settings.rollout_state).write_text(json.dumps({"models": {"reranker": {"stable": "1"}}}))
    worse = repository / "reranker" / "7"
    linked_copy(repository / "reranker" / "1", worse)
    weights = json.loads((worse / "combination.json").read_text())
    (worse / "combination.json").unlink()  # a hard link to version 1's file
    (worse / "combination.json").write_text(json.dumps({"latin": {"bm25": -1.0}, "cjk": weights.get("cjk", {})}))
    judgments = load_judgments(DEMO_JUDGMENTS)
    queries = [query for query in judgments if query.isascii()]
    running = ServiceThread(rollout_settings).start()
    try:
        stub, auth = admin(running)
        search = ranking_pb2_grpc.RankingStub(grpc.insecure_channel(running.address))
        started = stub.StartRollout(admin_pb2.StartRolloutRequest(model="reranker", version="7", percent=100,
                                                                  interleave=True), metadata=auth, timeout=120)
        assert started.mode == "interleave" and started.quality.running
        for turn in range(300):
            [status] = stub.GetRolloutStatus(admin_pb2.ModelRequest(), metadata=auth).models
            if not status.candidate_version:
                break
            query, user = queries[turn % len(queries)], f"shopper-{turn}"
            response = search.Search(ranking_pb2.SearchRequest(query=query, user_id=user), timeout=60)
            # Interleaved, or (an arm ranked degraded: the reranker busy for one of the two) the control's alone.
            assert {item.arm for item in response.items} in ({"control", "treatment"}, {"control"}, {"treatment"},
                                                              {""})
            gains = [judgments[query].get(item.product_id, 0.0) for item in response.items]
            if gains and max(gains) > 0:
                position = gains.index(max(gains)) + 1
                event = ranking_pb2.FeedbackEvent(
                    event_id=f"quality-{turn}", user_id=user, product_id=response.items[position - 1].product_id,
                    type=ranking_pb2.EVENT_TYPE_CLICK, request_id=response.request_id, position=position)
                event.time.GetCurrentTime()
                search.Feedback(event, timeout=30)
            time.sleep(0.05)  # the guard looks once a second
        [status] = stub.GetRolloutStatus(admin_pb2.ModelRequest(), metadata=auth).models
        experiments = stub.GetExperimentStatus(admin_pb2.ExperimentRequest(), metadata=auth).experiments
    finally:
        running.stop()
        shutil.rmtree(worse, ignore_errors=True)
    assert status.candidate_version == "" and status.stable_version == "1"
    rollback = [event for event in status.history if event.action == "rollback"][-1]
    assert rollback.version == "7" and rollback.detail.startswith("guard: quality:"), rollback.detail
    [experiment] = experiments
    assert not experiment.running and experiment.decision == "treatment worse"
    assert experiment.losses > experiment.wins


def test_admin_needs_its_token_and_is_off_without_one(rollout_settings):
    running = ServiceThread(rollout_settings).start()
    try:
        for token in ("", "wrong"):
            stub, auth = admin(running, token)
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetRolloutStatus(admin_pb2.ModelRequest(), metadata=auth if token else ())
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        running.stop()
    closed = ServiceThread(dataclasses.replace(rollout_settings, admin_token="")).start()
    try:
        assert closed.service.admin_port == 0 and closed.service._admin is None
    finally:
        closed.stop()


def test_queries_are_encoded_by_the_version_that_built_the_index(rollout_settings, rollout_triton, demo_index, tmp_path):
    """The repository holds bi_encoder versions 1 and 2; the index was built by version 1, so only version 1 is
    loaded and every query goes to it. An index built by a version the repository lacks does not start."""
    client = triton_grpc.InferenceServerClient(rollout_triton.url)
    running = ServiceThread(rollout_settings).start()
    try:
        assert loaded(rollout_triton, "bi_encoder") == {"1"}
        before = client.get_inference_statistics("bi_encoder", "1").model_stats[0].inference_count
        with grpc.insecure_channel(running.address) as channel:
            response = ranking_pb2_grpc.RankingStub(channel).Search(ranking_pb2.SearchRequest(query="cordless drill"))
        assert response.model_versions["bi_encoder"] == "1"
        assert client.get_inference_statistics("bi_encoder", "1").model_stats[0].inference_count == before + 1
    finally:
        running.stop()

    other = tmp_path / "index"
    shutil.copytree(demo_index, other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "encoder_version": "7"}))
    broken = ServiceThread(dataclasses.replace(rollout_settings, index_dir=other))
    try:
        with pytest.raises(ConfigError, match="embedded with bi_encoder version 7.*rebuild it"):
            broken.start()
    finally:
        broken.stop()


def test_versions_a_triton_lost_are_loaded_again(rollout_settings, rollout_triton):
    """A Triton that answers but no longer has a served version (restarted by someone else, unloaded by hand) gets
    the served versions loaded again, and the service is SERVING once they are ready."""
    from grpc_health.v1 import health_pb2

    from .test_lifecycle import health_status, wait_for

    running = ServiceThread(rollout_settings).start()
    try:
        triton_grpc.InferenceServerClient(rollout_triton.url).unload_model("bi_encoder")
        wait_for(lambda: "1" not in loaded(rollout_triton, "bi_encoder"), 30, "bi_encoder unloaded")
        wait_for(lambda: health_status(running.address) == health_pb2.HealthCheckResponse.NOT_SERVING, 10, "NOT_SERVING")
        wait_for(lambda: health_status(running.address) == health_pb2.HealthCheckResponse.SERVING, 30, "SERVING again")
        assert loaded(rollout_triton, "bi_encoder") == {"1"}
        with grpc.insecure_channel(running.address) as channel:
            response = ranking_pb2_grpc.RankingStub(channel).Search(ranking_pb2.SearchRequest(query="cordless drill"))
        assert not response.degraded and response.items
    finally:
        running.stop()
