"""Personalization end to end: feedback through the gRPC API into a real store (a SQLite file or a real
redis-server), the learned blend in the next search, forgetting, bad events, stores that fail, and restarts."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import pytest

from cli.feedback import feedback_event
from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from core.errors import StoreUnavailable
from orchestrator.personalization.personalizer import user_key
from orchestrator.personalization.store import open_store
from orchestrator.triton_process import free_port
from tests.redis_server import RedisServer

from .conftest import BLEND_MODEL, ROOT, ServiceThread

pytestmark = pytest.mark.integration

QUERY = "headphones"
HEADPHONES = ["D0027", "D0028", "D0029", "D0030", "D0031", "D0032", "D0033", "D0034"]  # category Headphones


def search(stub, user_id: str = "", **fields) -> ranking_pb2.SearchResponse:
    return stub.Search(ranking_pb2.SearchRequest(query=QUERY, user_id=user_id, top_k=8, **fields), timeout=60)


def ids(response) -> list[str]:
    return [item.product_id for item in response.items]


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def stream(stub, events) -> ranking_pb2.FeedbackStreamResult:
    return stub.FeedbackStream(iter(events), timeout=300)


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def store_service(request, triton, settings, demo_index, tmp_path_factory):
    """A service on each store kind: (stub, settings, redis server or None)."""
    if request.param == "sqlite":
        url, server = f"sqlite:///{tmp_path_factory.mktemp('store') / 'profiles.db'}", None
    else:
        server = request.getfixturevalue("redis_server")
        url = server.url
    running = ServiceThread(dataclasses.replace(settings, index_dir=demo_index, triton_url=triton.url,
                                                profile_store=url))
    try:
        running.start()
        with grpc.insecure_channel(running.address) as channel:
            yield ranking_pb2_grpc.RankingStub(channel), running, server
    finally:
        running.stop()


def test_the_released_blend_model_is_there():
    assert (BLEND_MODEL / "manifest.json").is_file(), "models/blend is the released blend: `shoprank train blend`"


def test_a_purchase_changes_the_same_users_next_search_within_a_second(store_service):
    stub, _, _ = store_service
    user = new_user()
    stub.Feedback(feedback_event(user, "D0032", "click"), timeout=10)  # one event: no longer a cold start
    before = search(stub, user)
    assert before.personalized
    target = [pid for pid in ids(before) if pid in HEADPHONES][-1]  # the last one that matches "headphones"
    started = time.perf_counter()
    for days in (30, 20, 10):
        stub.Feedback(feedback_event(user, target, "purchase", at=time.time() - days * 86400), timeout=10)
    ack = stub.Feedback(feedback_event(user, target, "purchase"), timeout=10)
    after = search(stub, user)
    elapsed = time.perf_counter() - started
    assert not ack.duplicate
    assert ids(after) != ids(before)
    assert ids(after).index(target) < ids(before).index(target)
    assert elapsed < 1.0, f"feedback to changed search took {elapsed:.2f}s"


def test_what_a_user_bought_does_not_overtake_products_that_match_another_query(store_service):
    stub, _, _ = store_service
    user = new_user()
    stream(stub, [feedback_event(user, product, "purchase", at=time.time() - 86400 * d)
                  for product in ("D0031", "D0032") for d in (30, 10)])
    for query in ("phone", "cordless drill"):
        request = dict(query=query, top_k=5)
        personal = stub.Search(ranking_pb2.SearchRequest(user_id=user, **request), timeout=60)
        anonymous = stub.Search(ranking_pb2.SearchRequest(**request), timeout=60)
        assert personal.personalized
        assert ids(personal) == ids(anonymous)


def test_cold_start_and_anonymous_users_get_the_non_personalized_order_and_are_told(store_service):
    stub, _, _ = store_service
    anonymous = search(stub)
    cold = search(stub, new_user())
    assert not cold.personalized and "cold start" in cold.personalization
    assert not anonymous.personalized and "anonymous" in anonymous.personalization
    assert ids(cold) == ids(anonymous)


def test_explain_shows_every_personal_component_and_its_contribution(store_service):
    stub, _, _ = store_service
    user = new_user()
    stream(stub, [feedback_event(user, "D0029", "purchase", at=time.time() - 86400 * d) for d in (40, 20)])
    response = search(stub, user, explain=True)
    assert response.personalized and response.model_versions["blend"]
    item = next(item for item in response.items if item.product_id == "D0029")
    components = {component.name: component for component in item.components}
    assert components["preference:user_purchases"].raw == 2
    assert {"preference:pref_cosine", "preference:brand_affinity", "popularity:popularity", "relevance:relevance"} <= set(components)
    blend_parts = [c.contribution for name, c in components.items() if name.split(":")[0] in ("relevance", "preference", "popularity", "blend")]
    assert sum(blend_parts) == pytest.approx(item.score, abs=1e-4)


def test_a_request_can_turn_personalization_off_or_override_the_blend(store_service):
    stub, _, _ = store_service
    user = new_user()
    stream(stub, [feedback_event(user, "D0032", "purchase", at=time.time() - 86400 * d) for d in (50, 30, 10)])
    personal = search(stub, user, explain=True)
    off = search(stub, user, skip_personalization=True)
    assert personal.personalized and not off.personalized and off.personalization == "off by request"
    assert ids(off) == ids(search(stub))
    no_preference = search(stub, user, explain=True, blend_weights=ranking_pb2.BlendWeights(preference=0.0))
    for item in no_preference.items:
        preference = [c.contribution for c in item.components if c.name.startswith("preference:")]
        assert preference and all(value == 0 for value in preference)
    assert ids(no_preference) != ids(personal)
    with pytest.raises(grpc.RpcError) as error:
        search(stub, user, blend_weights=ranking_pb2.BlendWeights(relevance=float("nan")))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_replayed_event_id_counts_once(store_service):
    stub, running, _ = store_service
    user = new_user()
    event = feedback_event(user, "D0031", "purchase")
    assert not stub.Feedback(event, timeout=10).duplicate
    assert stub.Feedback(event, timeout=10).duplicate
    result = stream(stub, [event, event])
    assert (result.accepted, result.duplicates) == (0, 2)
    events = running.run(running.service.pipeline.personalizer.store.user_events(user))
    assert len(events) == 1


@pytest.mark.parametrize("change, message", [
    (dict(product_id="NOPE"), "not in the catalog"),
    (dict(type=ranking_pb2.EVENT_TYPE_UNSPECIFIED), "type"),
    (dict(event_id=""), "event_id is missing"),
    (dict(user_id=""), "user_id is missing"),
    (dict(user_id="用" * 100), "over 256"),
])
def test_bad_events_are_invalid_argument_and_name_the_problem(store_service, change, message):
    stub, _, _ = store_service
    event = feedback_event(new_user(), "D0031", "click")
    for field, value in change.items():
        setattr(event, field, value)
    with pytest.raises(grpc.RpcError) as error:
        stub.Feedback(event, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()


def test_an_event_far_in_the_future_is_invalid(store_service):
    stub, _, _ = store_service
    with pytest.raises(grpc.RpcError) as error:
        stub.Feedback(feedback_event(new_user(), "D0031", "click", at=time.time() + 86400), timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "future" in error.value.details()


def test_a_bad_event_in_a_stream_is_reported_by_index_and_the_rest_are_kept(store_service):
    stub, running, _ = store_service
    user = new_user()
    events = [feedback_event(user, "D0031", "click"), feedback_event(user, "MISSING", "click"),
              feedback_event(user, "D0032", "cart"), feedback_event(user, "D0031", "purchase", at=time.time() + 1e6)]
    result = stream(stub, events)
    assert (result.received, result.accepted, result.rejected) == (4, 2, 2)
    assert [error.index for error in result.errors] == [1, 3]
    assert "not in the catalog" in result.errors[0].reason
    stored = running.run(running.service.pipeline.personalizer.store.user_events(user))
    assert [event.product_id for event in stored] == ["D0031", "D0032"]


def test_forget_user_deletes_everything_and_the_next_search_is_cold_start(store_service):
    stub, running, _ = store_service
    user = new_user()
    stream(stub, [feedback_event(user, "D0032", "purchase", at=time.time() - 86400 * d) for d in (30, 10)])
    assert search(stub, user).personalized
    assert stub.ForgetUser(ranking_pb2.ForgetUserRequest(user_id=user), timeout=10).events_deleted == 2
    after = search(stub, user)
    assert not after.personalized and "cold start" in after.personalization
    assert ids(after) == ids(search(stub))
    assert running.run(running.service.pipeline.personalizer.store.user_events(user)) == []


def test_a_search_user_id_over_256_bytes_is_invalid(store_service):
    stub, _, _ = store_service
    with pytest.raises(grpc.RpcError) as error:
        search(stub, "x" * 257)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_redis_down_while_serving_degrades_searches_and_refuses_feedback(triton, settings, demo_index):
    with RedisServer() as server:
        running = ServiceThread(dataclasses.replace(settings, index_dir=demo_index, triton_url=triton.url,
                                                    profile_store=server.url))
        try:
            running.start()
            with grpc.insecure_channel(running.address) as channel:
                stub = ranking_pb2_grpc.RankingStub(channel)
                user = new_user()
                stub.Feedback(feedback_event(user, "D0032", "purchase", event_id=f"{user}-acked"), timeout=10)
                assert search(stub, user).personalized
                server.kill()  # kill -9 right after the acknowledgement
                down = search(stub, user)
                assert down.degraded and not down.personalized and down.degraded_reason.startswith("store_unavailable: ")
                assert ids(down) == ids(search(stub))
                with pytest.raises(grpc.RpcError) as error:
                    stub.Feedback(feedback_event(user, "D0031", "click"), timeout=30)
                assert error.value.code() == grpc.StatusCode.UNAVAILABLE
                server.start()  # the same directory: the AOF holds every acknowledged event
                events = running.run(running.service.pipeline.personalizer.store.user_events(user))
                assert [event.event_id for event in events] == [f"{user}-acked"]
                assert search(stub, user).personalized
        finally:
            running.stop()


def test_a_store_that_is_down_at_start_is_a_clear_error(triton, settings, demo_index):
    url = f"redis://127.0.0.1:{free_port()}/0"
    running = ServiceThread(dataclasses.replace(settings, index_dir=demo_index, triton_url=triton.url, profile_store=url))
    try:
        with pytest.raises(StoreUnavailable, match="unreachable"):
            running.start()
    finally:
        running.stop()


def test_a_stream_of_100000_events_is_recorded(triton, settings, demo_index, tmp_path):
    store = f"sqlite:///{tmp_path / 'profiles.db'}"
    running = ServiceThread(dataclasses.replace(settings, index_dir=demo_index, triton_url=triton.url, profile_store=store))
    try:
        running.start()
        with grpc.insecure_channel(running.address) as channel:
            stub = ranking_pb2_grpc.RankingStub(channel)
            now = time.time() - 3600
            events = (feedback_event(f"bulk-{i % 500}", HEADPHONES[i % len(HEADPHONES)], "view", event_id=f"bulk-{i}",
                                     at=now + i * 0.001) for i in range(100_000))
            result = stream(stub, events)
            assert (result.received, result.accepted, result.rejected) == (100_000, 100_000, 0)
    finally:
        running.stop()


def _serve(index, store: str, port: int, triton_url: str, rollout_state: Path, repository: Path) -> subprocess.Popen:
    # The test's own rollout state and model repository (the one the test Triton serves): the checkout's might
    # name another reranker version than the session's service serves on the same Triton, and loading it would
    # unload theirs.
    env = {**os.environ, "SHOPRANK_PROFILE_STORE": store, "SHOPRANK_LOG_KEY": "test-key"}
    return subprocess.Popen([sys.executable, "-m", "cli", "serve", "--index", str(index), "--port", str(port),
                             "--triton-url", triton_url, "--rollout-state", str(rollout_state),
                             "--model-repository", str(repository)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_serving(stub, process, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            return search(stub)
        except grpc.RpcError:
            time.sleep(0.5)
    raise AssertionError("the service did not answer in time")


def test_an_acknowledged_event_survives_kill_9_of_the_orchestrator_and_raw_ids_stay_out_of_its_log(
        triton, model_repository, demo_index, tmp_path):
    store = f"sqlite:///{tmp_path / 'profiles.db'}"
    user = f"private-{uuid.uuid4().hex}"
    port = free_port()
    process = _serve(demo_index, store, port, triton.url, tmp_path / "rollout.json", model_repository)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ranking_pb2_grpc.RankingStub(channel)
            _wait_serving(stub, process)
            stub.Feedback(feedback_event(user, "D0031", "purchase", event_id="kill-me"), timeout=10)
            search(stub, user)
            stub.ForgetUser(ranking_pb2.ForgetUserRequest(user_id="someone-else"), timeout=10)
            process.send_signal(signal.SIGKILL)
            log = process.communicate(timeout=30)[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert user not in log and "someone-else" not in log
    assert user_key("someone-else", b"test-key") in log

    async def stored():
        reopened = open_store(store)
        await reopened.start()
        try:
            return await reopened.user_events(user)
        finally:
            await reopened.close()

    assert [event.event_id for event in asyncio.run(stored())] == ["kill-me"]
