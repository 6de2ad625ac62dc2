"""`make catalog-check`: a live catalog under load, two replicas, a crash midway, and every acknowledged change found.

    .venv/bin/python -m loadtest.catalog_check --seconds 90

It starts Triton (the cpu model repository), a Milvus Lite server on a scratch data directory, a redis-server (AOF,
fsync always) and fills the shop `demo` from data/demo/catalog.csv into Milvus; then two orchestrator replicas, A and
B, as `python -m cli serve` subprocesses sharing all three. For --seconds:

    load       one Locust user per replica (loadtest/locustfile.py), in its own process
    changes    a writer sends catalog changes through the admin API of A and B by turns, a few per call: new
               products, price changes, stock to 0 and back, new titles, deletes. Each product's title carries a
               made-up word of its own, so a lexical search for the word finds exactly that product. A change counts
               once its call is acknowledged; a call that fails is sent again as it was (safe: records are whole).
    freshness  for a sample of the acknowledged changes (--sample per call, and never a product with a change
               still being measured), the time from the acknowledgement to the first search through the OTHER
               replica that shows it, polling every 20 ms: its word found (new product, new title), found under a
               price filter of the new price, found or not with out-of-stock products left out (stock), not found at
               all (delete)
    crash      at 45% of the run, Locust on B is stopped and B is left out of the routing; then B and the Milvus
               server are killed with SIGKILL together. Milvus is started again at once on its port and data, then B;
               B takes traffic again once its health says SERVING. While B is down, writes, freshness searches and
               the load all go through A: a freshness figure measured then is through the same replica (counted
               apart). A's searches while Milvus is down are counted like any other: a failure is a failure.
    verify     at the end every product the run touched is read back with GetProduct: the last acknowledged title,
               price and stock, or NOT_FOUND after a delete. Each difference is a lost change.

Locust's reports, each search's outcome, the replicas' logs and details.json go to
benchmarks/results/catalog-<date-time>/. The last line printed is exactly

    failed=N lost=L updates=U freshness_p50_ms=X freshness_p99_ms=Y

where `failed` counts every failed search (Locust's and the freshness polls'), `updates` the acknowledged changes.
The exit status is 1 when a search failed, a change was lost or the service refused a record, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from core._proto.shoprank.v1 import admin_pb2, admin_pb2_grpc, ranking_pb2, ranking_pb2_grpc
from loadtest.rollout_check import read_requests
from loadtest.run import DEMO_CATALOG, RESULTS, ROOT, RunFiles, locust_command, run_locust, until_sigterm

SHOP = "demo"
KINDS = ("new", "price", "stock", "title", "delete")
WEIGHTS = (0.30, 0.25, 0.20, 0.15, 0.10)
MIN_LIVE = 20  # below this many of the run's own products, every change is a new product
SYLLABLES = ("ka", "lo", "mi", "ru", "te", "vo", "zu", "pe", "ni", "da", "go", "fi", "bu", "xe", "jo", "wa")
NOUNS = ("camping lantern", "garden hose", "kettle", "yoga mat", "desk lamp", "rain jacket", "tea towel",
         "salad bowl", "trail shoe", "phone stand")
POLL_S = 0.020
FRESHNESS_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 10.0
RETRY_S = 0.2
CRASH_AT = 0.45  # of the run
READY_TIMEOUT_S = 180.0
PRICE_TOLERANCE = 0.005


# --- What the run changes, and what it expects the catalog to hold at the end (pure) ---

@dataclasses.dataclass(frozen=True)
class Expected:
    """A product as the last acknowledged change left it."""

    title: str
    word: str  # the made-up word of its title, which no other product has
    price: float
    stock: int


@dataclasses.dataclass(frozen=True)
class Change:
    """One change to one product: `after` is the product once it is stored, None for a delete."""

    kind: str
    product_id: str
    after: Expected | None
    word: str  # the word a search looks for: the product's word now (a delete: the one it had)

    def record(self) -> admin_pb2.ProductRecord:
        """The whole product as UpsertProducts takes it."""
        assert self.after is not None, "a delete has no record"
        return admin_pb2.ProductRecord(product_id=self.product_id, title=self.after.title, brand="Checkwell",
                                       category="Catalog check", price=self.after.price, stock=self.after.stock)


def made_up_word(number: int) -> str:
    """A word no dictionary or catalog holds, distinct for every number (and kept whole by the analyzer)."""
    syllables = []
    for _ in range(4):
        number, digit = divmod(number, len(SYLLABLES))
        syllables.append(SYLLABLES[digit])
    while number:
        number, digit = divmod(number, len(SYLLABLES))
        syllables.append(SYLLABLES[digit])
    return "qy" + "".join(syllables)


class ChangeStream:
    """Draws changes to the run's own products and keeps, per product id, what the acknowledged ones leave: an
    Expected, or None once deleted. A change is drawn against the acknowledged state and applied only by
    `acknowledge`, so a call that failed can be sent again as it was."""

    def __init__(self, seed: int = 0, prefix: str = "cc") -> None:
        self.random = random.Random(seed)
        self.prefix = prefix
        self.expected: dict[str, Expected | None] = {}
        self.acknowledged = 0
        self._numbers = 0  # words made up so far
        self._products = 0  # products created so far

    def live(self) -> list[str]:
        return [product_id for product_id, state in self.expected.items() if state is not None]

    def _word(self) -> str:
        self._numbers += 1
        return made_up_word(self._numbers)

    def _price(self, old: float | None = None) -> float:
        while True:
            price = round(self.random.uniform(5.0, 500.0), 2)
            if old is None or abs(price - old) > 0.5:
                return price

    def _title(self, word: str) -> str:
        return f"{word.capitalize()} {self.random.choice(NOUNS)}"

    def draw(self, size: int, busy: set[str] = frozenset()) -> list[Change]:
        """Up to `size` changes, to distinct products none of which is in `busy`."""
        changes: list[Change] = []
        taken = set(busy)
        for _ in range(size):
            free = [product_id for product_id in self.live() if product_id not in taken]
            kind = "new" if len(free) < MIN_LIVE else self.random.choices(KINDS, WEIGHTS)[0]
            if kind == "new":
                product_id = f"{self.prefix}-{self._products:06d}"
                self._products += 1
                word = self._word()
                change = Change("new", product_id, Expected(self._title(word), word, self._price(),
                                                            self.random.randint(1, 50)), word)
            else:
                product_id = self.random.choice(free)
                old = self.expected[product_id]
                if kind == "price":
                    after = dataclasses.replace(old, price=self._price(old.price))
                elif kind == "stock":
                    after = dataclasses.replace(old, stock=0 if old.stock else self.random.randint(1, 50))
                elif kind == "title":
                    word = self._word()
                    after = dataclasses.replace(old, title=self._title(word), word=word)
                else:
                    after = None
                change = Change(kind, product_id, after, after.word if after else old.word)
            taken.add(change.product_id)
            changes.append(change)
        return changes

    def acknowledge(self, changes: list[Change]) -> None:
        """The service acknowledged these changes: they are what the catalog must hold."""
        for change in changes:
            self.expected[change.product_id] = change.after
        self.acknowledged += len(changes)


def probe(change: Change) -> ranking_pb2.SearchRequest:
    """The targeted search that shows whether a change is visible: the product's word alone, lexical retrieval,
    nothing that could rewrite or reorder it."""
    request = ranking_pb2.SearchRequest(query=change.word, top_k=10, retrieval=ranking_pb2.RETRIEVAL_MODE_LEXICAL,
                                        skip_rerank=True, skip_spelling_correction=True, skip_personalization=True,
                                        include_out_of_stock=change.kind != "stock")
    if change.kind == "price":
        request.filters.append(ranking_pb2.Filter(field="price", min=change.after.price - PRICE_TOLERANCE,
                                                  max=change.after.price + PRICE_TOLERANCE))
    return request


def visible(change: Change, found: list[str]) -> bool:
    """Whether a probe's answer (its product ids) shows the change."""
    present = change.product_id in found
    if change.kind == "delete" or (change.kind == "stock" and change.after.stock == 0):
        return not present
    return present


def mismatch(product_id: str, expected: Expected | None, stored: admin_pb2.ProductRecord | None) -> str | None:
    """How the stored product (None: NOT_FOUND) differs from the last acknowledged change, or None when it does not."""
    if expected is None:
        return None if stored is None else f"{product_id}: deleted, but GetProduct still finds it"
    if stored is None:
        return f"{product_id}: NOT_FOUND, expected {expected.title!r}"
    differences = []
    if stored.title != expected.title:
        differences.append(f"title {stored.title!r} != {expected.title!r}")
    if not stored.HasField("price") or abs(stored.price - expected.price) > PRICE_TOLERANCE:
        differences.append(f"price {stored.price if stored.HasField('price') else None} != {expected.price}")
    if stored.stock != expected.stock:
        differences.append(f"stock {stored.stock} != {expected.stock}")
    return f"{product_id}: " + ", ".join(differences) if differences else None


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


def summary_line(failed: int, lost: int, updates: int, freshness_ms: list[float]) -> str:
    return (f"failed={failed} lost={lost} updates={updates} "
            f"freshness_p50_ms={percentile(freshness_ms, 50):.0f} freshness_p99_ms={percentile(freshness_ms, 99):.0f}")


# --- The processes ---

@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A redis-server on a free port keeping every write in its AOF (fsync always); its URL for the block."""
    import redis  # noqa: PLC0415

    from orchestrator.triton_process import free_port  # noqa: PLC0415

    port = free_port()
    process = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory),
                                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                                "--logfile", "redis.log"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10.0
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.RedisError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {port} did not answer PING") from None
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()


class Replica:
    """An orchestrator as `python -m cli serve` in its own process, on fixed ports so that a restart is the same
    replica; `kill` is SIGKILL."""

    def __init__(self, name: str, serve_args: list[str], port: int, admin_port: int, log: Path, env: dict) -> None:
        self.name = name
        self.port, self.admin_port = port, admin_port
        self.address, self.admin = f"127.0.0.1:{port}", f"127.0.0.1:{admin_port}"
        self.command = [sys.executable, "-m", "cli", "serve", *serve_args, "--port", str(port),
                        "--admin-port", str(admin_port)]
        self.log, self.env = log, env
        self.process: subprocess.Popen | None = None
        self.up = False  # taking traffic

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

        deadline = time.monotonic() + timeout_s
        async with grpc.aio.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"replica {self.name} exited with {self.process.returncode}; see {self.log}")
                try:
                    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        self.up = True
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"replica {self.name} was not SERVING within {timeout_s:.0f}s; see {self.log}")

    def kill(self) -> None:
        self.up = False
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM (the service's own graceful stop), SIGKILL after a grace period."""
        self.up = False
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- The run ---

@dataclasses.dataclass
class Tally:
    """What the run measured."""

    searches: int = 0
    failed: int = 0  # freshness polls that failed (Locust's are read from its files at the end)
    failures: dict = dataclasses.field(default_factory=dict)  # "CODE: details" -> count
    freshness_ms: list = dataclasses.field(default_factory=list)
    same_replica: int = 0  # freshness measured through the replica that took the change (the other was down)
    timeouts: list = dataclasses.field(default_factory=list)  # changes not visible within FRESHNESS_TIMEOUT_S
    write_retries: int = 0
    write_errors: dict = dataclasses.field(default_factory=dict)
    events: list = dataclasses.field(default_factory=list)  # (seconds since the start, what happened)
    rejected: list = dataclasses.field(default_factory=list)  # records the service refused (a bug here or there)

    def failure(self, key: str, into: dict) -> None:
        into[key] = into.get(key, 0) + 1


class CatalogCheck:
    """The writer, the freshness probes and the crash, over two replicas."""

    def __init__(self, replicas: list[Replica], token: str, seconds: float, batch: int, rate: float, sample: int,
                 files: dict[str, RunFiles], milvus, started: float) -> None:
        self.replicas = replicas
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.seconds, self.batch, self.rate, self.sample = seconds, batch, rate, sample
        self.files, self.milvus, self.started = files, milvus, started
        self.stream = ChangeStream(seed=int(started))
        self.tally = Tally()
        self.busy: set[str] = set()
        self.probes: set[asyncio.Task] = set()
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.locusts: dict[str, asyncio.Task] = {}
        self.started_wall = time.time()
        self.stopping = False
        # The crash, in seconds since the start: killed, Milvus listening again, the replica SERVING again.
        self.crash_window: tuple[float, float, float] | None = None

    def now(self) -> float:
        return time.monotonic() - self.started

    def note(self, what: str) -> None:
        self.tally.events.append((round(self.now(), 2), what))
        print(f"[{self.now():6.1f}s] {what}", flush=True)

    def channel(self, address: str) -> grpc.aio.Channel:
        if address not in self.channels:
            self.channels[address] = grpc.aio.insecure_channel(address)
        return self.channels[address]

    def route(self, preferred: Replica) -> Replica:
        """The preferred replica when it takes traffic, else the other one."""
        return preferred if preferred.up else next(r for r in self.replicas if r is not preferred)

    def start_locust(self, replica: Replica, key: str, seconds: float) -> None:
        files = self.files[key]
        files.out.mkdir(parents=True, exist_ok=True)
        command = locust_command(replica.address, max(1, int(seconds)), files, users=1)
        command += ["--requests-csv", str(files.out / "requests.csv")]
        self.locusts[key] = asyncio.create_task(run_locust(command))

    async def stop_locust(self, key: str) -> None:
        task = self.locusts[key]
        task.cancel()  # SIGINT: Locust stops and writes its reports
        await asyncio.gather(task, return_exceptions=True)

    async def run(self) -> None:
        a, b = self.replicas
        self.start_locust(a, "locust-a", self.seconds + 60)
        self.start_locust(b, "locust-b1", self.seconds + 60)
        writer = asyncio.create_task(self.write())
        try:
            await asyncio.sleep(self.seconds * CRASH_AT)
            await self.crash(b)
            self.start_locust(b, "locust-b2", self.seconds - self.now())
            await asyncio.sleep(max(0.0, self.seconds - self.now()))
        finally:
            # The call in flight is let finish: one cut off might be stored without its acknowledgement.
            self.stopping = True
            try:
                await asyncio.wait_for(writer, CALL_TIMEOUT_S * 3)
            except asyncio.TimeoutError:
                self.note("the writer's last call did not finish; it was cut off")
            if self.probes:
                await asyncio.gather(*self.probes, return_exceptions=True)
            for key in list(self.locusts):
                await self.stop_locust(key)
        self.note(f"writer stopped: {self.stream.acknowledged} changes acknowledged")

    async def crash(self, replica: Replica) -> None:
        """Take `replica` out of the routing, kill it and Milvus with SIGKILL, start Milvus then the replica again."""
        replica.up = False
        await self.stop_locust("locust-b1")
        await asyncio.sleep(0.5)  # calls already sent to it finish
        self.note(f"kill -9 replica {replica.name} (pid {replica.process.pid}) and Milvus (pid {self.milvus.pid})")
        killed = self.now()
        os.kill(self.milvus.pid, signal.SIGKILL)
        replica.kill()
        while self.milvus.running:  # reaps it once the signal has landed
            await asyncio.sleep(0.01)
        await asyncio.to_thread(self.milvus.start)
        listening = self.now()
        self.note(f"Milvus listening again after {listening - killed:.2f}s; restarting replica {replica.name}")
        replica.start()
        await replica.wait_ready()
        self.crash_window = (killed, listening, self.now())
        self.note(f"replica {replica.name} SERVING again, {self.now() - killed:.1f}s after the kill")

    async def write(self) -> None:
        """Changes at `rate` a second, `batch` a call, through A and B by turns; each call is sent until answered."""
        calls, due = 0, time.monotonic()
        while not self.stopping:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due = max(due + self.batch / self.rate, time.monotonic() - 1.0)  # after a stall, no burst to catch up
            changes = self.stream.draw(self.batch, self.busy)
            upserts = [change for change in changes if change.after is not None]
            deletes = [change for change in changes if change.after is None]
            for part in (upserts, deletes):
                if part:
                    target = self.route(self.replicas[calls % 2])
                    calls += 1
                    acknowledged = await self.send(target, part)
                    self.stream.acknowledge(part)
                    self.measure(target, part, acknowledged)

    async def send(self, target: Replica, changes: list[Change]) -> float:
        """Send one call until the service acknowledges it; the monotonic time of the acknowledgement."""
        while True:
            target = self.route(target)
            admin = admin_pb2_grpc.AdminStub(self.channel(target.admin))
            try:
                if changes[0].after is None:
                    await admin.DeleteProducts(
                        admin_pb2.DeleteProductsRequest(product_ids=[change.product_id for change in changes]),
                        metadata=self.metadata, timeout=CALL_TIMEOUT_S)
                else:
                    answer = await admin.UpsertProducts(iter([change.record() for change in changes]),
                                                        metadata=self.metadata, timeout=CALL_TIMEOUT_S)
                    self.tally.rejected += [f"{error.product_id}: {error.message}" for error in answer.errors]
                return time.monotonic()
            except grpc.aio.AioRpcError as error:
                self.tally.write_retries += 1
                self.tally.failure(f"{error.code().name}: {error.details()[:120]}", self.tally.write_errors)
                await asyncio.sleep(RETRY_S)

    def measure(self, writer: Replica, changes: list[Change], acknowledged: float) -> None:
        """Probe a sample of the acknowledged changes through the other replica (this one while the other is down)."""
        for change in self.stream.random.sample(changes, min(self.sample, len(changes))):
            self.busy.add(change.product_id)
            task = asyncio.create_task(self.freshness(writer, change, acknowledged))
            self.probes.add(task)
            task.add_done_callback(self.probes.discard)

    async def freshness(self, writer: Replica, change: Change, acknowledged: float) -> None:
        try:
            request = probe(change)
            while time.monotonic() - acknowledged < FRESHNESS_TIMEOUT_S:
                reader = self.route(next(r for r in self.replicas if r is not writer))
                stub = ranking_pb2_grpc.RankingStub(self.channel(reader.address))
                self.tally.searches += 1
                try:
                    answer = await stub.Search(request, timeout=CALL_TIMEOUT_S)
                except grpc.aio.AioRpcError as error:
                    self.tally.failed += 1
                    self.tally.failure(f"{error.code().name}: {error.details()[:120]}", self.tally.failures)
                    self.note(f"freshness search through {reader.name} failed: {error.code().name}: "
                              f"{error.details()[:200]}")
                else:
                    if visible(change, [item.product_id for item in answer.items]):
                        self.tally.freshness_ms.append((time.monotonic() - acknowledged) * 1000.0)
                        self.tally.same_replica += reader is writer
                        return
                await asyncio.sleep(POLL_S)
            self.tally.timeouts.append(f"{change.kind} {change.product_id}")
            self.tally.freshness_ms.append(FRESHNESS_TIMEOUT_S * 1000.0)
        finally:
            self.busy.discard(change.product_id)

    async def verify(self) -> list[str]:
        """Every product the run touched, read back through replica A: the differences from what was acknowledged."""
        admin = admin_pb2_grpc.AdminStub(self.channel(self.replicas[0].admin))
        semaphore = asyncio.Semaphore(8)

        async def check(product_id: str, expected: Expected | None) -> str | None:
            async with semaphore:
                try:
                    stored = await admin.GetProduct(admin_pb2.GetProductRequest(product_id=product_id),
                                                    metadata=self.metadata, timeout=CALL_TIMEOUT_S)
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.NOT_FOUND:
                        return f"{product_id}: GetProduct failed: {error.code().name}: {error.details()}"
                    stored = None
                return mismatch(product_id, expected, stored)

        found = await asyncio.gather(*(check(pid, state) for pid, state in self.stream.expected.items()))
        return [problem for problem in found if problem]

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


def locust_outcomes(out: Path, window: tuple[float, float] | None) -> dict:
    """Locust's calls from every run's requests.csv: totals, failures, and the failures that ended inside `window`
    (Unix times)."""
    rows = []
    for path in sorted(out.glob("locust-*/requests.csv")):
        rows += read_requests(path)
    failed = [row for row in rows if not row["ok"]]
    inside = sum(window[0] <= row["time"] <= window[1] for row in failed) if window else 0
    return {"requests": len(rows), "failed": len(failed), "failed_in_crash_window": inside,
            "degraded": sum(row["degraded"] for row in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.catalog_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=90.0, help="how long load and changes run (default 90)")
    parser.add_argument("--rate", type=float, default=15.0, help="changes a second (default 15)")
    parser.add_argument("--batch", type=int, default=6, help="changes drawn at a time, sent in up to two calls "
                                                             "(upserts, deletes) (default 6)")
    parser.add_argument("--sample", type=int, default=2, help="changes of each call whose freshness is measured "
                                                              "(default 2)")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results/catalog-<date-time>)")
    args = parser.parse_args(argv)
    if args.seconds < 20 or args.rate <= 0 or args.batch < 1 or args.sample < 0:
        parser.error("--seconds must be at least 20; --rate, --batch positive; --sample not negative")
    from core.settings import Settings  # noqa: PLC0415
    from orchestrator.catalog.milvus_process import LocalMilvus  # noqa: PLC0415
    from orchestrator.harness import LOCAL_UNSET, as_environment, catalog_stack, scratch_state  # noqa: PLC0415
    from orchestrator.triton_process import free_port  # noqa: PLC0415

    os.environ["SHOPRANK_LOADTEST_P95_MS"] = "inf"  # the verdict is failures, not Locust's latency limit
    out = (args.out or RESULTS / time.strftime("catalog-%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    replicas: list[Replica] = []
    check: CatalogCheck | None = None
    lost: list[str] = []
    with tempfile.TemporaryDirectory(prefix="shoprank-catalog-check-") as scratch:
        scratch = Path(scratch)
        (scratch / "redis").mkdir()
        milvus = LocalMilvus(scratch / "milvus", log_path=out / "milvus.log")
        try:
            with redis_server(scratch / "redis") as redis_url:
                milvus.start()
                catalog_store = f"milvus://127.0.0.1:{milvus.port}"
                settings = Settings.from_env(catalog_store=catalog_store, shop=SHOP)
                with catalog_stack(settings, DEMO_CATALOG) as settings:
                    for name in ("A", "B"):
                        files = scratch_state(scratch, name, rollout_from=settings.rollout_state,
                                              profile_store=redis_url)  # the store both replicas share
                        env = {**{key: value for key, value in os.environ.items() if key not in LOCAL_UNSET},
                               "SHOPRANK_ADMIN_TOKEN": token, **as_environment(files)}
                        serve_args = ["--catalog-store", catalog_store, "--shop", SHOP, "--triton-url",
                                      settings.triton_url]
                        replicas.append(Replica(name, serve_args, free_port(), free_port(),
                                                out / f"replica-{name}.log", env))
                    holder: list[CatalogCheck] = []
                    lost = asyncio.run(until_sigterm(_run(replicas, token, args, out, milvus, holder)))
                    check = holder[0] if holder else None
        finally:
            for replica in replicas:
                replica.stop()
            milvus.stop()
    if check is None:
        print("catalog-check: the run did not start", file=sys.stderr)
        return 1
    return report(check, lost, out)


async def _run(replicas: list[Replica], token: str, args: argparse.Namespace, out: Path, milvus,
               holder: list) -> list[str]:
    for replica in replicas:
        replica.start()
    await asyncio.gather(*(replica.wait_ready() for replica in replicas))
    files = {key: RunFiles(out / key) for key in ("locust-a", "locust-b1", "locust-b2")}
    check = CatalogCheck(replicas, token, args.seconds, args.batch, args.rate, args.sample, files, milvus,
                         time.monotonic())
    holder.append(check)
    check.note(f"replicas A {replicas[0].address} and B {replicas[1].address} SERVING; Milvus at port {milvus.port}")
    try:
        await check.run()
        return await check.verify()
    finally:
        await check.close()


def report(check: CatalogCheck, lost: list[str], out: Path) -> int:
    tally = check.tally
    window = check.crash_window
    locust = locust_outcomes(out, (check.started_wall + window[0], check.started_wall + window[2]) if window else None)
    failed = tally.failed + locust["failed"]
    details = {
        "updates": check.stream.acknowledged, "products": len(check.stream.expected),
        "lost": lost, "freshness_measured": len(tally.freshness_ms), "freshness_same_replica": tally.same_replica,
        "freshness_timeouts": tally.timeouts, "freshness_searches": tally.searches,
        "freshness_failed": tally.failed, "freshness_failures": tally.failures, "locust": locust,
        "write_retries": tally.write_retries, "write_errors": tally.write_errors, "rejected": tally.rejected,
        "crash_window_s": window, "events": tally.events,
    }
    (out / "details.json").write_text(json.dumps(details, indent=2) + "\n")
    print(f"\nLocust: {locust['requests']} searches, {locust['failed']} failed "
          f"({locust['failed_in_crash_window']} between the kill and B SERVING again), {locust['degraded']} degraded")
    print(f"freshness: {len(tally.freshness_ms)} of {check.stream.acknowledged} changes measured "
          f"({tally.same_replica} through the same replica while the other was down, {len(tally.timeouts)} not "
          f"visible within {FRESHNESS_TIMEOUT_S:.0f}s), {tally.searches} searches, {tally.failed} failed")
    print(f"writes: {tally.write_retries} calls sent again {tally.write_errors or ''}; "
          f"{len(tally.rejected)} records rejected")
    for problem in lost[:20] + tally.rejected[:20]:
        print(f"catalog-check: {problem}", file=sys.stderr)
    print(f"results in {out}", flush=True)
    print(summary_line(failed, len(lost), check.stream.acknowledged, tally.freshness_ms), flush=True)
    return 1 if failed or lost or tally.rejected or not check.stream.acknowledged else 0


if __name__ == "__main__":
    sys.exit(main())
