"""Faults under load, with real processes: kill -9 of the profile store (redis-server), of the catalog store (a Milvus
Lite server) and of one of two orchestrator replicas; a full disk under the profile store (SQLite) and under the
impression log; a wall clock that jumps.

Each fault strikes while a background thread sends a steady stream of searches (and another one feedback, each event
with an id of its own), and each test asserts three things: answers go on (degraded, with a documented reason, where
they must), nothing acknowledged is lost, and the service recovers by itself (no restart by the test) within a bound.
Where a fault shows a bug, a scenario is run once by a module fixture and the bug is pinned by its own test, marked
xfail(strict=True) with what happens and where; the owner's fix turns it into a pass.

How the faults are made (docs/faults.md says what the service does about each):
    full disk     a tmpfs mounted for the test (`mount -t tmpfs -o size=16m`, root only: skipped otherwise), filled
                  to its last byte by a filler file; deleting the file is space returning, as when an operator
                  frees some. Real ENOSPC from a real filesystem, unlike RLIMIT_FSIZE, which fails every file of the
                  process and cannot give the space back to a running service.
    clock jump    the orchestrator as a subprocess under libfaketime (Debian's `faketime` package: skipped without
                  it), its offset read from a file that the test rewrites. Only CLOCK_REALTIME jumps
                  (FAKETIME_DONT_FAKE_MONOTONIC), as it does when NTP or an operator steps the clock. libfaketime
                  0.9.10 then fails Python's time.sleep with EINVAL, which the serving path never calls with an
                  external Triton, an in-process catalog and a SQLite store: hence that set-up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import glob
import os
import re
import signal
import statistics
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from cli.feedback import feedback_event
from core._proto.shoprank.v1 import admin_pb2, admin_pb2_grpc, ranking_pb2, ranking_pb2_grpc
from core.settings import Settings
from loadtest.catalog_check import Replica
from orchestrator.catalog.milvus_process import LocalMilvus
from orchestrator.personalization.store import open_store
from orchestrator.search.context import DEGRADED
from orchestrator.triton_process import free_port
from tests.redis_server import RedisServer

from .conftest import ServiceThread, demo_catalog_in_milvus
from .test_lifecycle import wait_for

pytestmark = pytest.mark.integration

QUERIES = ("cordless drill", "headphones", "garden hose", "wireless earbuds", "无线耳机", "phone")
PRODUCTS = ("D0027", "D0028", "D0029", "D0030", "D0031", "D0032", "D0033", "D0034")  # the demo's headphones
DEADLINE_S = 5.0  # every search's deadline: a call that takes longer has hung
PAUSE_S = 0.03  # between two calls of one stream
RECOVERY_S = 15.0  # full answers again within this long after the fault is gone


# --- Load: calls sent one after another from a background thread, every outcome kept ---

@dataclasses.dataclass(frozen=True)
class Outcome:
    """One call: its number in its stream, when it was sent and answered (time.monotonic()), its status."""

    index: int
    sent: float
    answered: float
    code: str  # "OK", or the gRPC status code's name
    answer: object = None  # the response of an OK call
    details: str = ""

    @property
    def latency_s(self) -> float:
        return self.answered - self.sent


class Load:
    """`call(i)` for i = 0, 1, 2... from a background thread until `stop`, PAUSE_S apart."""

    def __init__(self, call: Callable[[int], object], pause_s: float = PAUSE_S) -> None:
        self.call = call
        self.pause_s = pause_s
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=DEADLINE_S + 5)

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                answer = self.call(index)
            except grpc.RpcError as error:
                self.outcomes.append(Outcome(index, sent, time.monotonic(), error.code().name,
                                             details=error.details() or ""))
            else:
                self.outcomes.append(Outcome(index, sent, time.monotonic(), "OK", answer))
            index += 1
            self._stop.wait(self.pause_s)

    def between(self, start: float, end: float = float("inf")) -> list[Outcome]:
        """The calls sent after `start` and answered before `end`."""
        return [outcome for outcome in list(self.outcomes) if outcome.sent >= start and outcome.answered <= end]

    def first_after(self, start: float, accept: Callable[[Outcome], bool]) -> Outcome | None:
        """The first call sent after `start` that `accept` takes, or None yet."""
        return next((outcome for outcome in self.between(start) if accept(outcome)), None)

    def codes(self, start: float = 0.0, end: float = float("inf")) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.between(start, end):
            counts[outcome.code] = counts.get(outcome.code, 0) + 1
        return counts


def searching(stub: ranking_pb2_grpc.RankingStub, users: list[str], **fields) -> Callable[[int], object]:
    """Searches in turn through QUERIES, every other one as one of `users` (personalized), each with DEADLINE_S."""
    def search(index: int) -> ranking_pb2.SearchResponse:
        user = users[index // 2 % len(users)] if users and index % 2 else ""
        return stub.Search(ranking_pb2.SearchRequest(query=QUERIES[index % len(QUERIES)], user_id=user, top_k=5,
                                                     **fields), timeout=DEADLINE_S)
    return search


def sending(stub: ranking_pb2_grpc.RankingStub, prefix: str, users: list[str]) -> Callable[[int], object]:
    """Feedback events `{prefix}-{i}` by `users` in turn, stamped with the test's own (true) clock."""
    def send(index: int) -> ranking_pb2.FeedbackAck:
        kind = "purchase" if index % 3 == 0 else "click"
        event = feedback_event(users[index % len(users)], PRODUCTS[index % len(PRODUCTS)], kind,
                               event_id=f"{prefix}-{index}")
        return stub.Feedback(event, timeout=DEADLINE_S)
    return send


def acknowledged(load: Load, prefix: str) -> set[str]:
    """The event ids of a `sending` load that the service acknowledged."""
    return {f"{prefix}-{outcome.index}" for outcome in list(load.outcomes) if outcome.code == "OK"}


def stored(store_url: str, users: list[str]) -> set[str]:
    """The event ids the profile store holds for `users`, read through a store client of the test's own."""
    async def read() -> set[str]:
        store = open_store(store_url)
        await store.start()
        try:
            return {event.event_id for user in users for event in await store.user_events(user)}
        finally:
            await store.close()

    return asyncio.run(read())


def reasons(outcome: Outcome) -> list[str]:
    """The degraded reason codes of an OK search's answer."""
    reason = outcome.answer.degraded_reason
    return [part.split(":", 1)[0] for part in reason.split("; ")] if reason else []


def assert_documented_reasons(load: Load) -> None:
    codes = {code for outcome in load.outcomes if outcome.code == "OK" for code in reasons(outcome)}
    assert codes <= set(DEGRADED), f"undocumented degraded reasons {codes - set(DEGRADED)}"


def new_users(count: int, prefix: str = "fault") -> list[str]:
    return [f"{prefix}-{uuid.uuid4().hex[:10]}" for _ in range(count)]


def seed(stub: ranking_pb2_grpc.RankingStub, users: list[str]) -> None:
    """A purchase for each user, so that their searches are personalized."""
    for user in users:
        stub.Feedback(feedback_event(user, PRODUCTS[0], "purchase", event_id=f"{user}-seed"), timeout=30)


@contextmanager
def loaded(settings: Settings, prefix: str) -> Iterator[tuple[Load, Load, list[str]]]:
    """A service on `settings` whose users search and send feedback (events `{prefix}-{i}`) from background threads
    for the block, entered once 10 events are acknowledged: (searches, feedback, users). The service stops after."""
    users = new_users(4, prefix)
    running = ServiceThread(settings)
    try:
        running.start()
        with grpc.insecure_channel(running.address) as channel:
            stub = ranking_pb2_grpc.RankingStub(channel)
            seed(stub, users)
            with Load(searching(stub, users)) as searches, Load(sending(stub, prefix, users)) as feedback:
                wait_for(lambda: len(acknowledged(feedback, prefix)) >= 10, 30, "acknowledged events")
                yield searches, feedback, users
    finally:
        running.stop()


# --- A small filesystem that a test fills and frees ---

@contextmanager
def small_filesystem(directory: Path, size_mb: int = 16) -> Iterator[Path]:
    """A tmpfs of `size_mb` mounted on `directory` for the block (root only: the test is skipped otherwise)."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a full disk needs a filesystem of its own: mount -t tmpfs failed ({mounted.stderr.strip()})")
    try:
        yield directory
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` to its last byte with a file; its path (delete it: space returns)."""
    path = directory / "filler"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(descriptor, chunk)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(descriptor)
    assert os.statvfs(directory).f_bavail == 0
    return path


# --- 1. kill -9 of redis-server, the profile store ---

def test_kill_9_of_redis_under_load_degrades_searches_refuses_feedback_and_loses_no_acknowledged_event(
        triton, settings, demo_index):
    """While Redis is down: every search answers (a personalized one degraded `store_unavailable`), feedback is
    UNAVAILABLE; once it is started again on its port and data: full answers and accepted feedback within
    RECOVERY_S, and every event acknowledged before the kill is in the store."""
    with RedisServer() as redis:
        service = dataclasses.replace(settings, index_dir=demo_index, triton_url=triton.url, profile_store=redis.url)
        with loaded(service, "redis") as (searches, feedback, users):
            redis.kill()
            killed = time.monotonic()
            wait_for(lambda: feedback.first_after(killed, lambda o: o.code == "UNAVAILABLE"), 10, "feedback refused")
            wait_for(lambda: searches.first_after(killed, lambda o: o.code == "OK" and "store_unavailable" in
                                                  reasons(o)), 10, "a degraded search")
            time.sleep(2.0)  # down a while under load
            restarting = time.monotonic()  # calls sent from here on may reach the Redis that is starting
            redis.start()  # the same port and directory: the AOF holds what was acknowledged
            restarted = time.monotonic()
            full = wait_for(lambda: searches.first_after(restarted, lambda o: o.code == "OK" and
                                                         o.answer.personalized), RECOVERY_S,
                            "a personalized answer again")
            accepted = wait_for(lambda: feedback.first_after(restarted, lambda o: o.code == "OK"), RECOVERY_S,
                                "feedback accepted again")
            time.sleep(0.5)
        held = stored(redis.url, users)

    assert searches.codes() == {"OK": len(searches.outcomes)}, searches.codes()
    down = [outcome for outcome in searches.between(killed + 0.2, restarting) if outcome.index % 2]
    assert down and all("store_unavailable" in reasons(outcome) and not outcome.answer.personalized
                        for outcome in down)
    assert_documented_reasons(searches)
    assert set(feedback.codes(killed + 0.2, restarting)) == {"UNAVAILABLE"}
    assert set(feedback.codes()) <= {"OK", "UNAVAILABLE"}
    lost = acknowledged(feedback, "redis") - held
    assert not lost, f"{len(lost)} acknowledged events lost: {sorted(lost)[:5]}"
    assert max(full.answered, accepted.answered) - restarted < RECOVERY_S


# --- 2. kill -9 of the Milvus server, the catalog store ---

@pytest.fixture(scope="module")
def milvus_killed(triton, settings, tmp_path_factory) -> dict:
    """A service whose catalog is in a Milvus Lite server of its own, searched and sent feedback under load while
    the server is killed with SIGKILL, left down 8 s, then started again on its port and data. What happened.
    8 s, so that a whole search (2 to ~4 s while Milvus is down, one after another) is sent and answered inside the
    window even on a loaded machine: with 4 s, the whole suite's run once saw none fit."""
    scratch = tmp_path_factory.mktemp("milvus-fault")
    server = LocalMilvus(scratch / "milvus")
    try:
        server.start()
        url = demo_catalog_in_milvus(server.url, "faults", triton, settings)
        store = f"sqlite:///{scratch / 'profiles.db'}"
        service = dataclasses.replace(settings, catalog_store=url, shop="faults", triton_url=triton.url,
                                      profile_store=store)
        with loaded(service, "milvus") as (searches, feedback, users):
            os.kill(server.pid, signal.SIGKILL)
            killed = time.monotonic()
            wait_for(lambda: server.exit_code is not None, 10, "the killed server reaped")
            time.sleep(8.0)
            server.start()
            restarted = time.monotonic()
            recovered = wait_for(lambda: searches.first_after(restarted, lambda o: o.code == "OK"), RECOVERY_S + 10,
                                 "an answer after the restart")
            time.sleep(1.0)
            after = time.monotonic()  # from here every search answers (a moment of reconnection excepted before)
            time.sleep(2.0)
        held = stored(store, users)
    finally:
        server.stop()
    return {"searches": searches, "feedback": feedback, "killed": killed, "restarted": restarted,
            "recovered": recovered, "after": after, "held": held}


def test_kill_9_of_milvus_under_load_fails_searches_fast_and_they_answer_again_after_its_restart(milvus_killed):
    """While the catalog store is down a search fails once its Milvus calls have given up (catalog_timeout_s, 2 s,
    each: up to ~4 s for a search that reads twice), never hanging past its deadline (5 s); started again on its
    port and data, searches answer again within RECOVERY_S, with no restart of the service, and no acknowledged event
    is lost."""
    searches, killed, restarted = milvus_killed["searches"], milvus_killed["killed"], milvus_killed["restarted"]
    down = searches.between(killed + 0.5, restarted)
    assert down and "OK" not in searches.codes(killed + 0.5, restarted)
    assert set(searches.codes()) <= {"OK", "UNAVAILABLE", "DEADLINE_EXCEEDED"}, searches.codes()  # never INTERNAL
    slowest = max(outcome.latency_s for outcome in searches.outcomes)
    assert slowest < DEADLINE_S, f"a search took {slowest:.1f}s"
    assert milvus_killed["recovered"].answered - restarted < RECOVERY_S
    assert searches.codes(milvus_killed["after"]) == {"OK": len(searches.between(milvus_killed["after"]))}
    assert_documented_reasons(searches)
    lost = acknowledged(milvus_killed["feedback"], "milvus") - milvus_killed["held"]
    assert not lost, f"{len(lost)} acknowledged events lost"


def test_searches_while_milvus_is_down_answer_unavailable_not_deadline_exceeded(milvus_killed):
    searches, killed, restarted = milvus_killed["searches"], milvus_killed["killed"], milvus_killed["restarted"]
    assert set(searches.codes(killed + 0.5, restarted)) == {"UNAVAILABLE"}, searches.codes(killed + 0.5, restarted)


def test_feedback_while_milvus_is_down_is_unavailable_so_the_sender_retries(milvus_killed):
    feedback, killed, restarted = milvus_killed["feedback"], milvus_killed["killed"], milvus_killed["restarted"]
    assert feedback.codes(killed + 0.5, restarted)
    assert set(feedback.codes()) <= {"OK", "UNAVAILABLE"}, feedback.codes()


# --- 3. kill -9 of one orchestrator replica of two sharing Redis and Triton ---

def test_kill_9_of_one_replica_leaves_the_other_answering_and_its_acknowledged_events_in_the_shared_store(
        triton, model_repository, demo_index, tmp_path):
    """Two `shoprank serve` processes share a redis-server and a Triton. A is killed with SIGKILL under load: B
    answers every search and takes every event before, during and after; every event A acknowledged is in the
    shared store, and B's personalized search of a user only A heard from shows it."""
    with RedisServer() as redis:
        replicas = []
        for name in ("A", "B"):
            env = {**os.environ, "SHOPRANK_EXPERIMENT_STATE": str(tmp_path / f"experiments-{name}.json"),
                   "SHOPRANK_IMPRESSION_LOG": str(tmp_path / f"impressions-{name}"), "SHOPRANK_LOG_KEY": "faults"}
            serve_args = ["--index", str(demo_index), "--triton-url", triton.url, "--profile-store", redis.url,
                          "--rollout-state", str(tmp_path / f"rollout-{name}.json"),
                          "--model-repository", str(model_repository)]
            replicas.append(Replica(name, serve_args, free_port(), free_port(), tmp_path / f"replica-{name}.log", env))
        a, b = replicas
        try:
            for replica in replicas:
                replica.start()

            async def ready() -> None:
                await asyncio.gather(*(replica.wait_ready(120) for replica in replicas))

            asyncio.run(ready())
            users_a, users_b = new_users(3, "heard-by-a"), new_users(3, "heard-by-b")
            with grpc.insecure_channel(a.address) as channel_a, grpc.insecure_channel(b.address) as channel_b:
                stub_a, stub_b = ranking_pb2_grpc.RankingStub(channel_a), ranking_pb2_grpc.RankingStub(channel_b)
                with (Load(searching(stub_a, users_b)) as searches_a, Load(searching(stub_b, users_a)) as searches_b,
                      Load(sending(stub_a, "A", users_a)) as feedback_a,
                      Load(sending(stub_b, "B", users_b)) as feedback_b):
                    wait_for(lambda: len(acknowledged(feedback_a, "A")) >= 10, 30, "events acknowledged by A")
                    killed = time.monotonic()
                    a.kill()
                    time.sleep(3.0)
                answer = stub_b.Search(ranking_pb2.SearchRequest(query="headphones", user_id=users_a[0], top_k=5),
                                       timeout=DEADLINE_S)
        finally:
            for replica in replicas:
                replica.stop()
        held = stored(redis.url, users_a + users_b)

    log_b = b.log.read_text(errors="replace")[-2000:]
    assert searches_b.codes() == {"OK": len(searches_b.outcomes)}, (searches_b.codes(), log_b)
    assert searches_b.between(killed) and searches_a.between(0, killed)
    assert_documented_reasons(searches_b)
    assert feedback_b.codes() == {"OK": len(feedback_b.outcomes)}, feedback_b.codes()
    assert feedback_b.between(killed)
    assert set(searches_a.codes(0, killed)) == {"OK"} and set(feedback_a.codes(0, killed)) == {"OK"}
    assert set(searches_a.codes(killed)) | set(feedback_a.codes(killed)) <= {"UNAVAILABLE"}  # A is gone
    lost = (acknowledged(feedback_a, "A") | acknowledged(feedback_b, "B")) - held
    assert not lost, f"{len(lost)} acknowledged events lost: {sorted(lost)[:5]}"
    assert answer.personalized and not answer.degraded


# --- 4. a full disk under the profile store (SQLite) ---

def test_a_full_disk_under_the_sqlite_store_refuses_feedback_unavailable_and_it_is_accepted_again_when_space_returns(
        triton, settings, demo_index, tmp_path):
    """The SQLite file on a tmpfs that fills up under load: feedback is UNAVAILABLE (send it again), never INTERNAL,
    searches go on, and once a file is deleted feedback is accepted again within RECOVERY_S; every acknowledged
    event is in the file."""
    with small_filesystem(tmp_path / "disk") as disk:
        store = f"sqlite:///{disk / 'profiles.db'}"
        service = dataclasses.replace(settings, index_dir=demo_index, triton_url=triton.url, profile_store=store)
        with loaded(service, "disk") as (searches, feedback, users):
            filler = fill(disk)
            full = time.monotonic()
            wait_for(lambda: feedback.first_after(full, lambda o: o.code != "OK"), 10, "feedback refused")
            time.sleep(1.0)
            filler.unlink()
            freed = time.monotonic()
            accepted = wait_for(lambda: feedback.first_after(freed, lambda o: o.code == "OK"), RECOVERY_S,
                                "feedback accepted again")
            time.sleep(0.5)
        held = stored(store, users)

    assert searches.codes() == {"OK": len(searches.outcomes)}, searches.codes()
    assert searches.between(full, freed)
    assert_documented_reasons(searches)
    assert set(feedback.codes(full, freed)) >= {"UNAVAILABLE"}
    assert set(feedback.codes()) <= {"OK", "UNAVAILABLE"}, feedback.codes()
    refusal = next(outcome for outcome in feedback.between(full, freed) if outcome.code == "UNAVAILABLE")
    assert "send it again" in refusal.details
    assert accepted.answered - freed < RECOVERY_S
    lost = acknowledged(feedback, "disk") - held
    assert not lost, f"{len(lost)} acknowledged events lost: {sorted(lost)[:5]}"


# --- 5. a full disk under the impression log ---

def impression_records(metrics_url: str) -> dict[str, float]:
    """shoprank_impression_log_records by outcome, from the metrics port."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    return {outcome: float(value) for outcome, value in
            re.findall(r'^shoprank_impression_log_records(?:_total)?\{outcome="(\w+)"\} (\S+)$', text, re.M)}


def test_a_full_disk_under_the_impression_log_drops_counted_records_without_slowing_searches(
        triton, settings, demo_index, tmp_path):
    """The impression log on a tmpfs that fills up under load: every search answers, as fast as before (p50 within
    1.5x + 20 ms), the records the writer cannot write are counted as dropped_error on the metrics port, and once
    a file is deleted the log writes again by itself."""
    with small_filesystem(tmp_path / "disk", size_mb=8) as disk:
        running = ServiceThread(dataclasses.replace(
            settings, index_dir=demo_index, triton_url=triton.url, impression_log=disk / "impressions",
            metrics_port=free_port(), profile_store=f"sqlite:///{tmp_path / 'profiles.db'}"))
        try:
            running.start()
            metrics = f"http://127.0.0.1:{running.service.settings.metrics_port}/metrics"
            with grpc.insecure_channel(running.address) as channel:
                stub = ranking_pb2_grpc.RankingStub(channel)
                with Load(searching(stub, [], skip_rerank=True)) as searches:
                    wait_for(lambda: impression_records(metrics).get("written", 0) >= 20, 30, "records written")
                    before = time.monotonic()
                    time.sleep(3.0)
                    filler = fill(disk)
                    full = time.monotonic()
                    wait_for(lambda: impression_records(metrics).get("dropped_error", 0) > 0, 15,
                             "records dropped and counted")
                    time.sleep(3.0)
                    filler.unlink()
                    freed = time.monotonic()
                    written = impression_records(metrics)["written"]
                    wait_for(lambda: impression_records(metrics)["written"] >= written + 20, RECOVERY_S,
                             "records written again")
                    recovered = time.monotonic()
        finally:
            running.stop()

    assert searches.codes() == {"OK": len(searches.outcomes)}, searches.codes()
    calm = statistics.median(outcome.latency_s for outcome in searches.between(before, full))
    during = statistics.median(outcome.latency_s for outcome in searches.between(full, freed))
    assert during <= 1.5 * calm + 0.020, f"p50 {during * 1000:.0f} ms on a full disk, {calm * 1000:.0f} ms before"
    assert recovered - freed < RECOVERY_S


# --- 6. a wall clock that jumps ---

FAKETIME_LIBRARIES = ("/usr/lib/*/faketime/libfaketimeMT.so.1", "/usr/lib/faketime/libfaketimeMT.so.1",
                      "/usr/local/lib/faketime/libfaketimeMT.so.1")
TOKEN = "faults-clock-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
# The service's wall clock, offset from the real one, phase by phase: forward 2 h (past the experiment join window
# of 1 h), back to the right time, then 1 h behind it.
PHASES = (("start", 0.0), ("forward 2h", 7200.0), ("back to true", 0.0), ("behind 1h", -3600.0))


def libfaketime() -> str:
    for pattern in FAKETIME_LIBRARIES:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    pytest.skip("a clock jump needs libfaketime (apt-get install faketime)")


def step_clock(offset_file: Path, offset_s: float) -> None:
    """Set the faked wall clock `offset_s` from the true one; replaced whole, so libfaketime never reads half."""
    staged = offset_file.with_suffix(".next")
    staged.write_text(f"{offset_s:+.0f}\n")
    os.replace(staged, offset_file)


def service_clock(stub: ranking_pb2_grpc.RankingStub) -> float:
    """The service's wall clock, read from its refusal of an event a day ahead of ours ("N s in the future")."""
    at = time.time() + 86400.0
    with pytest.raises(grpc.RpcError) as refused:
        stub.Feedback(feedback_event("clock-probe", PRODUCTS[0], "click", at=at), timeout=DEADLINE_S)
    ahead = re.search(r"is (-?\d+) s in the future", refused.value.details())
    assert ahead, refused.value.details()
    return at - float(ahead.group(1))


@pytest.fixture(scope="module")
def clock_jumps(triton, model_repository, demo_index, tmp_path_factory) -> dict:
    """A `shoprank serve` process under libfaketime, searched and sent feedback (stamped with the true time) under
    load while its wall clock jumps through PHASES; an experiment's answer is served at the start and clicked after
    the jump forward. What happened, by phase."""
    library = libfaketime()
    scratch = tmp_path_factory.mktemp("clock")
    offset_file = scratch / "faketime"
    step_clock(offset_file, 0.0)
    env = {**os.environ, "LD_PRELOAD": library, "FAKETIME_TIMESTAMP_FILE": str(offset_file),
           "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_CACHE_DURATION": "1", "SHOPRANK_ADMIN_TOKEN": TOKEN,
           "SHOPRANK_EXPERIMENT_STATE": str(scratch / "experiments.json"),
           "SHOPRANK_IMPRESSION_LOG": str(scratch / "impressions")}
    serve_args = ["--index", str(demo_index), "--triton-url", triton.url,
                  "--profile-store", f"sqlite:///{scratch / 'profiles.db'}", "--rollout-state",
                  str(scratch / "rollout.json"), "--model-repository", str(model_repository)]
    replica = Replica("clock", serve_args, free_port(), free_port(), scratch / "serve.log", env)
    users = new_users(4, "clock")
    phases: dict[str, tuple[float, float]] = {}
    clocks: dict[str, float] = {}
    try:
        replica.start()
        asyncio.run(replica.wait_ready(120))
        with grpc.insecure_channel(replica.address) as channel, grpc.insecure_channel(replica.admin) as admin_channel:
            stub, admin = ranking_pb2_grpc.RankingStub(channel), admin_pb2_grpc.AdminStub(admin_channel)
            admin.StartExperiment(admin_pb2.StartExperimentRequest(name="clock", control="fused", treatment="default",
                                                                   method="ab", share=1.0), metadata=AUTH, timeout=30)
            served = stub.Search(ranking_pb2.SearchRequest(query="headphones", user_id=users[0], top_k=5),
                                 timeout=DEADLINE_S)
            assert served.experiment == "clock"
            with Load(searching(stub, users)) as searches, Load(sending(stub, "clock", users)) as feedback:
                for name, offset in PHASES:
                    step_clock(offset_file, offset)
                    wait_for(lambda: abs(service_clock(stub) - time.time() - offset) < 60, 10, f"the jump: {name}")
                    clocks[name] = service_clock(stub) - time.time()
                    began = time.monotonic()
                    if name == "forward 2h":
                        stub.Feedback(feedback_event(users[0], served.items[0].product_id, "click",
                                                     request_id=served.request_id, position=1), timeout=DEADLINE_S)
                    time.sleep(3.0)
                    phases[name] = (began, time.monotonic())
            [experiment] = admin.GetExperimentStatus(admin_pb2.ExperimentRequest(name="clock"), metadata=AUTH,
                                                     timeout=30).experiments
    finally:
        replica.stop()
    return {"searches": searches, "feedback": feedback, "phases": phases, "clocks": clocks,
            "experiment": experiment, "log": replica.log}


def test_searches_answer_and_no_deadline_is_cut_short_while_the_wall_clock_jumps(clock_jumps):
    """Through a jump forward of 2 h and two back of 1 h and 2 h, every search (5 s deadline) answers, those in
    flight at each jump included: deadlines and timeouts run on the monotonic clock."""
    searches, phases = clock_jumps["searches"], clock_jumps["phases"]
    assert clock_jumps["clocks"]["forward 2h"] == pytest.approx(7200, abs=60)
    for name, (began, ended) in phases.items():
        assert searches.between(began, ended), f"no search in phase {name}"
    assert searches.codes() == {"OK": len(searches.outcomes)}, searches.codes()
    assert_documented_reasons(searches)


def test_events_stamped_with_the_true_time_are_accepted_while_the_service_clock_is_ahead_or_steps_back_to_it(
        clock_jumps):
    """An event is refused only for being over 5 minutes ahead of the service's clock: one stamped with the true
    time is accepted at the start, with the service 2 h ahead, and after it steps back to the true time."""
    feedback, phases = clock_jumps["feedback"], clock_jumps["phases"]
    for name in ("start", "forward 2h", "back to true"):
        began, ended = phases[name]
        assert feedback.codes(began, ended) == {"OK": len(feedback.between(began, ended))}, (name, feedback.codes(
            began, ended))


def test_events_are_not_refused_after_the_service_clock_steps_back(clock_jumps):
    feedback = clock_jumps["feedback"]
    began, ended = clock_jumps["phases"]["behind 1h"]
    assert feedback.codes(began, ended) == {"OK": len(feedback.between(began, ended))}, feedback.codes(began, ended)


def test_feedback_after_a_forward_jump_is_joined_to_the_answer_it_names(clock_jumps):
    experiment = clock_jumps["experiment"]
    assert (experiment.feedback_joined, experiment.feedback_unjoined) == (1, 0)
