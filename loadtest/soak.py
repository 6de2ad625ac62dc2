"""`make soak SOAK_MINUTES=10`: a fresh stack under mixed load for minutes; memory, open files and p99 over time, and
every acknowledged write read back.

    .venv/bin/python -m loadtest.soak --minutes 10

The stack, started here and stopped at the end: Triton (the cpu model repository), a Milvus Lite server, a
redis-server (AOF, fsync always), the demo catalog put in Milvus as the shop `demo`, and one orchestrator,
`python -m cli serve`, on all three with its admin API on. For --minutes:

    searches   loadtest/open_loop.py in its own process, --rate a second, open loop, each with a 2 s deadline;
               and from here --personal-rate a second as one of USERS (personalized: the profile store is read)
    feedback   --events a second from here, each event with an id of its own, kept once acknowledged
    catalog    --changes calls a second through the admin API (catalog_check.ChangeStream: new products, prices,
               stock, titles, deletes, to the run's own products), each change kept once acknowledged; past --live
               products of the run's own, the oldest are deleted, so the catalog's size holds steady (a growing
               catalog grows the orchestrator, which keeps its products' text for spelling and intent)
    samples    every --every seconds, for each process (with its descendants: Triton's Python backend stubs), the
               resident memory (VmRSS of /proc/PID/status) and the open file descriptors (/proc/PID/fd)

At the end every acknowledged event is read back from Redis and every product the run changed through GetProduct;
a missing event or a product that differs from its last acknowledged change is lost.

Verdicts. Memory and descriptors: over the last 80% of the run (the first 20% warms caches), a least-squares line
through the samples, its rise over the window divided by its value at the window's start: under 5% (descriptors:
or at most FD_SLACK more, since one more pooled connection is 5% of a process holding 22). A fitted slope
rather than the first and last sample, so that one noisy sample (a garbage collection, a batch in flight) decides
nothing. The orchestrator and Triton are judged; Redis and Milvus are reported only, since they grow with the events
and products the run adds to them. p99: the searches' p99 in the first quarter of that window against its last
quarter; steady when the last is within P99_RATIO times the first plus P99_SLACK_MS.

Samples (samples.csv), every call (searches.csv, calls.csv), the figures (summary.json) and a plot (soak.png) go to
benchmarks/results/soak-<date-time>/. The last line printed is

    minutes=M searches=N events=E changes=C lost=L failed=F rss_growth_pct=R fd_growth_pct=D p99_first_ms=A
    p99_last_ms=B

(one line; the growths: the largest of the judged processes). The exit status is 1 on a lost write, a failed call (any
status but OK, of any kind), a judged growth of 5% or more, or an unsteady p99; else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import json
import math
import os
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from core._proto.shoprank.v1 import admin_pb2, admin_pb2_grpc, ranking_pb2, ranking_pb2_grpc
from core.metrics import percentile
from loadtest.catalog_check import MIN_LIVE, Change, ChangeStream, Replica, mismatch, redis_server
from loadtest.open_loop import read
from loadtest.run import DEMO_CATALOG, RESULTS, ROOT, until_sigterm

SHOP = "demo"
WARMUP = 0.2  # of the run: not judged
MAX_GROWTH_PCT = 5.0
FD_SLACK = 2  # descriptors: one more pooled connection is already 4-5% of the orchestrator's ~22
P99_RATIO, P99_SLACK_MS = 1.5, 50.0
JUDGED = ("orchestrator", "triton")  # Redis and Milvus are reported, not judged: they hold the run's data
USERS = 100
DEADLINE_S = 2.0
CALL_TIMEOUT_S = 10.0
RETRY_S = 0.2
EVENT_TYPES = (ranking_pb2.EVENT_TYPE_VIEW, ranking_pb2.EVENT_TYPE_CLICK, ranking_pb2.EVENT_TYPE_CART,
               ranking_pb2.EVENT_TYPE_PURCHASE)
DEMO_JUDGMENTS = Path("data/demo/judgments.csv")


# --- What is measured, and how it is judged (pure) ---

def classify(cmdline: str) -> str | None:
    """Which part of the stack a process is, from its command line; None for anything else."""
    if "tritonserver" in cmdline:
        return "triton"
    if "redis-server" in cmdline:
        return "redis"
    if "-m cli serve" in cmdline:
        return "orchestrator"
    if "milvus_lite" in cmdline or cmdline.split(" ", 1)[0].endswith("/milvus"):
        return "milvus"
    return None


def process_groups(table: dict[int, tuple[int, str]], root: int) -> dict[str, list[int]]:
    """The stack's processes by part: each child of `root` that `classify` names, with all its descendants.
    `table`: pid -> (parent pid, command line)."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    groups: dict[str, list[int]] = {}
    for child in children.get(root, []):
        name = classify(table[child][1])
        if name is None:
            continue
        pids, stack = [], [child]
        while stack:
            pid = stack.pop()
            pids.append(pid)
            stack.extend(children.get(pid, []))
        groups.setdefault(name, []).extend(sorted(pids))
    return groups


def fitted_growth_pct(times: list[float], values: list[float]) -> float:
    """The rise of the least-squares line through (times, values) from the first time to the last, in percent of
    its value at the first; 0 for fewer than two samples."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    slope, intercept = np.polyfit(np.asarray(times, dtype=float), np.asarray(values, dtype=float), 1)
    start = intercept + slope * times[0]
    if start <= 0:
        return 0.0 if slope <= 0 else math.inf
    return float(100.0 * slope * (times[-1] - times[0]) / start)


def flat(rss_growth_pct: float, fd_growth_pct: float, fds: int) -> bool:
    """Whether a judged process held flat: memory grew under MAX_GROWTH_PCT, and its `fds` descriptors under it or
    by FD_SLACK at most (NaN: nothing measured, not flat)."""
    if math.isnan(rss_growth_pct) or math.isnan(fd_growth_pct):
        return False
    return rss_growth_pct < MAX_GROWTH_PCT and (fd_growth_pct < MAX_GROWTH_PCT
                                                or fd_growth_pct / 100.0 * fds <= FD_SLACK)


def interval_p99(calls: list[tuple[float, float]], start: float, end: float) -> float:
    """The p99 latency of the calls (seconds since the run's start, latency in ms) sent in [start, end)."""
    return percentile([latency for at, latency in calls if start <= at < end], 99)


def p99_steady(first_ms: float, last_ms: float) -> bool:
    """Whether the last p99 stays within P99_RATIO times the first plus P99_SLACK_MS (NaN: nothing to judge)."""
    if math.isnan(first_ms) or math.isnan(last_ms):
        return True
    return last_ms <= P99_RATIO * first_ms + P99_SLACK_MS


def surplus_deletes(stream: ChangeStream, changes: list[Change], live: int) -> list[Change]:
    """Deletes of the stream's oldest live products, none of them among `changes`, enough that no more than `live`
    are left once `changes` (drawn, not yet acknowledged) are applied."""
    touched = {change.product_id for change in changes}
    after = len(stream.live()) + sum(change.kind == "new" for change in changes) - sum(
        change.kind == "delete" for change in changes)
    spare = [product_id for product_id in stream.live() if product_id not in touched]
    return [Change("delete", product_id, None, stream.expected[product_id].word)
            for product_id in spare[:max(0, after - live)]]


def summary_line(minutes: float, searches: int, events: int, changes: int, lost: int, failed: int,
                 rss_growth_pct: float, fd_growth_pct: float, p99_first_ms: float, p99_last_ms: float) -> str:
    return (f"minutes={minutes:g} searches={searches} events={events} changes={changes} lost={lost} failed={failed} "
            f"rss_growth_pct={rss_growth_pct:.1f} fd_growth_pct={fd_growth_pct:.1f} "
            f"p99_first_ms={p99_first_ms:.0f} p99_last_ms={p99_last_ms:.0f}")


@dataclasses.dataclass(frozen=True)
class Sample:
    """One part of the stack at one moment: seconds since the start, its processes, their memory and descriptors."""

    at: float
    part: str
    pids: int
    rss_kb: int
    fds: int


def growth(samples: list[Sample], part: str, duration: float, field: str) -> float:
    """`fitted_growth_pct` of one part's `field` over the judged window (after WARMUP of `duration`)."""
    inside = [sample for sample in samples if sample.part == part and sample.at >= WARMUP * duration]
    return fitted_growth_pct([sample.at for sample in inside], [getattr(sample, field) for sample in inside])


# --- Reading /proc ---

def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process now (those that vanish while read are left out)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # the name in brackets may hold spaces
        table[int(entry)] = (parent, cmdline.strip())
    return table


def resources(pid: int) -> tuple[int, int]:
    """(resident kB, open file descriptors) of a process; (0, 0) once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0, 0
    rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return rss, fds


def sample(at: float) -> list[Sample]:
    """Every part of the stack (children of this process) now."""
    found = []
    for part, pids in sorted(process_groups(process_table(), os.getpid()).items()):
        figures = [resources(pid) for pid in pids]
        found.append(Sample(round(at, 2), part, len(pids), sum(rss for rss, _ in figures),
                            sum(fds for _, fds in figures)))
    return found


# --- The run ---

@dataclasses.dataclass
class Tally:
    """What the run measured, besides the open-loop searches (in their own CSV)."""

    personal: list = dataclasses.field(default_factory=list)  # (seconds since the start, latency ms, status)
    events: list = dataclasses.field(default_factory=list)  # acknowledged (event id, user id)
    failures: dict = dataclasses.field(default_factory=dict)  # "kind CODE" -> count
    samples: list = dataclasses.field(default_factory=list)

    def failed(self, kind: str, error: grpc.aio.AioRpcError) -> None:
        key = f"{kind} {error.code().name}"
        self.failures[key] = self.failures.get(key, 0) + 1


class Soak:
    """The writers, the personalized searches and the sampler, against one service, for `seconds`."""

    def __init__(self, replica: Replica, token: str, args: argparse.Namespace, products: list[str],
                 queries: list[str]) -> None:
        self.replica, self.args = replica, args
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.seconds = args.minutes * 60.0
        self.products, self.queries = products, queries
        self.random = random.Random(args.seed)
        self.stream = ChangeStream(seed=args.seed, prefix="soak")
        self.tally = Tally()
        self.users = [f"soak-user-{number:03d}" for number in range(USERS)]
        self.started = time.monotonic()
        self.stopping = False
        self.channel = grpc.aio.insecure_channel(replica.address)
        self.admin_channel = grpc.aio.insecure_channel(replica.admin)
        self.ranking = ranking_pb2_grpc.RankingStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.admin_channel)

    def now(self) -> float:
        return time.monotonic() - self.started

    async def paced(self, rate: float, step) -> None:
        """`step(i)` `rate` times a second until stopped; after a stall, no burst to catch up."""
        due, index = time.monotonic(), 0
        while not self.stopping:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due = max(due + 1.0 / rate, time.monotonic() - 1.0)
            await step(index)
            index += 1

    async def search(self, index: int) -> None:
        request = ranking_pb2.SearchRequest(query=self.queries[index % len(self.queries)],
                                            user_id=self.random.choice(self.users), top_k=10)
        sent = time.monotonic()
        try:
            await self.ranking.Search(request, timeout=DEADLINE_S)
            status = "OK"
        except grpc.aio.AioRpcError as error:
            self.tally.failed("search", error)
            status = error.code().name
        self.tally.personal.append((sent - self.started, (time.monotonic() - sent) * 1000.0, status))

    async def feedback(self, index: int) -> None:
        """One event, sent until acknowledged (a replayed id is safe: it counts once)."""
        user = self.random.choice(self.users)
        event = ranking_pb2.FeedbackEvent(event_id=f"soak-{index}", user_id=user,
                                          product_id=self.random.choice(self.products),
                                          type=self.random.choice(EVENT_TYPES))
        event.time.FromNanoseconds(time.time_ns())
        while True:
            try:
                await self.ranking.Feedback(event, timeout=CALL_TIMEOUT_S)
                self.tally.events.append((event.event_id, user))
                return
            except grpc.aio.AioRpcError as error:
                self.tally.failed("feedback", error)
                if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    return
                await asyncio.sleep(RETRY_S)

    async def change(self, index: int) -> None:
        """A few catalog changes (upserts, then deletes), each call sent until acknowledged; past --live products
        of the run's own, the oldest others are deleted too, so the catalog's size holds steady."""
        changes = self.stream.draw(self.args.batch)
        changes += surplus_deletes(self.stream, changes, self.args.live)
        for part in ([change for change in changes if change.after is not None],
                     [change for change in changes if change.after is None]):
            while part:
                try:
                    if part[0].after is None:
                        await self.admin.DeleteProducts(admin_pb2.DeleteProductsRequest(
                            product_ids=[change.product_id for change in part]), metadata=self.metadata,
                            timeout=CALL_TIMEOUT_S)
                    else:
                        answer = await self.admin.UpsertProducts(iter([change.record() for change in part]),
                                                                 metadata=self.metadata, timeout=CALL_TIMEOUT_S)
                        for error in answer.errors:
                            key = f"catalog rejected: {error.message[:80]}"
                            self.tally.failures[key] = self.tally.failures.get(key, 0) + 1
                    self.stream.acknowledge(part)
                    break
                except grpc.aio.AioRpcError as error:
                    self.tally.failed("catalog", error)
                    await asyncio.sleep(RETRY_S)

    async def sampler(self) -> None:
        while not self.stopping:
            self.tally.samples += await asyncio.to_thread(sample, self.now())
            await asyncio.sleep(self.args.every)

    async def run(self, searches_csv: Path) -> None:
        load = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtest.open_loop", "--target", self.replica.address, "--rate",
            str(self.args.rate), "--seconds", str(self.seconds), "--deadline-ms", str(DEADLINE_S * 1000.0),
            "--judgments", str(DEMO_JUDGMENTS), "--out", str(searches_csv), cwd=ROOT)
        self.started = time.monotonic()
        tasks = [asyncio.create_task(self.sampler()),
                 asyncio.create_task(self.paced(self.args.personal_rate, self.search)),
                 asyncio.create_task(self.paced(self.args.events, self.feedback)),
                 asyncio.create_task(self.paced(self.args.changes, self.change))]
        try:
            if await load.wait() != 0:
                raise RuntimeError("the search load generator failed")
        finally:
            self.stopping = True  # the calls in flight finish: one cut off might be stored unacknowledged
            if load.returncode is None:
                load.terminate()
                await load.wait()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def lost(self, redis_url: str) -> list[str]:
        """Every acknowledged event missing from the store, and every product unlike its last acknowledged change."""
        from orchestrator.personalization.store import open_store  # noqa: PLC0415

        store = open_store(redis_url)
        await store.start()
        try:
            held = {event.event_id for user in self.users for event in await store.user_events(user, 1_000_000)}
        finally:
            await store.close()
        problems = [f"event {event_id} of {user} is not in the store" for event_id, user in self.tally.events
                    if event_id not in held]
        for product_id, expected in self.stream.expected.items():
            try:
                stored = await self.admin.GetProduct(admin_pb2.GetProductRequest(product_id=product_id),
                                                     metadata=self.metadata, timeout=CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    problems.append(f"{product_id}: GetProduct failed: {error.code().name}")
                    continue
                stored = None
            problem = mismatch(product_id, expected, stored)
            if problem:
                problems.append(problem)
        return problems

    async def close(self) -> None:
        await self.channel.close()
        await self.admin_channel.close()


# --- The report ---

def write_samples(samples: list[Sample], searches: list[tuple[float, float]], every: float, path: Path) -> None:
    """One row per sampling time: each part's processes, memory and descriptors, and the searches' p99 since the
    sample before."""
    parts = sorted({sample.part for sample in samples})
    times = sorted({sample.at for sample in samples})
    by_key = {(sample.at, sample.part): sample for sample in samples}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t_s"] + [f"{part}_{field}" for part in parts for field in ("pids", "rss_kb", "fds")]
                        + ["searches", "search_p99_ms"])
        previous = 0.0
        for at in times:
            row = [f"{at:.1f}"]
            for part in parts:
                found = by_key.get((at, part))
                row += [found.pids, found.rss_kb, found.fds] if found else ["", "", ""]
            inside = sum(previous <= sent < at for sent, _ in searches)
            p99 = interval_p99(searches, previous, at)
            row += [inside, "" if math.isnan(p99) else f"{p99:.1f}"]
            writer.writerow(row)
            previous = at


def plot(samples: list[Sample], searches: list[tuple[float, float]], duration: float, every: float,
         path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, (memory, files, latency) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    for part in sorted({sample.part for sample in samples}):
        mine = [sample for sample in samples if sample.part == part]
        label = part + ("" if part in JUDGED else " (reported, not judged)")
        memory.plot([s.at / 60 for s in mine], [s.rss_kb / 1024 for s in mine], marker=".", label=label)
        files.plot([s.at / 60 for s in mine], [s.fds for s in mine], marker=".", label=label)
    edges = np.arange(0.0, duration + every, every)
    latency.plot([edge / 60 for edge in edges[1:]],
                 [interval_p99(searches, start, end) for start, end in zip(edges[:-1], edges[1:])], marker=".")
    for axis, title in ((memory, "resident memory (MB)"), (files, "open file descriptors"),
                        (latency, f"search p99 per {every:g} s (ms)")):
        axis.axvspan(0, WARMUP * duration / 60, color="0.9", label="warm-up (not judged)" if axis is memory else None)
        axis.set_ylabel(title)
        axis.grid(alpha=0.3)
    memory.legend(fontsize=8)
    latency.set_xlabel("minutes")
    figure.suptitle("soak: memory, descriptors and p99 over time")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def report(soak: Soak, lost: list[str], out: Path) -> int:
    duration = soak.seconds
    calls = read(out / "searches.csv")
    searches = [(call.sent_s, call.latency_ms) for call in calls]
    searches += [(at, latency) for at, latency, _ in soak.tally.personal]
    failed_searches = sum(call.status != "OK" for call in calls)
    failed = failed_searches + sum(soak.tally.failures.values())
    samples = soak.tally.samples
    write_samples(samples, searches, soak.args.every, out / "samples.csv")
    plot(samples, searches, duration, soak.args.every, out / "soak.png")
    with (out / "calls.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sent_s", "latency_ms", "status"])
        writer.writerows([(f"{at:.3f}", f"{latency:.2f}", status) for at, latency, status in soak.tally.personal])
    window = (1.0 - WARMUP) * duration
    p99_first = interval_p99(searches, WARMUP * duration, WARMUP * duration + window / 4)
    p99_last = interval_p99(searches, duration - window / 4, duration + 1.0)
    parts = {}
    print(f"\n{'process':<14}{'pids':>5}{'rss MB first -> last':>24}{'growth':>9}{'fds first -> last':>20}"
          f"{'growth':>9}  verdict")
    for part in sorted({sample.part for sample in samples}):
        mine = [sample for sample in samples if sample.part == part and sample.at >= WARMUP * duration]
        if not mine:
            continue
        rss, fds = growth(samples, part, duration, "rss_kb"), growth(samples, part, duration, "fds")
        judged = part in JUDGED
        parts[part] = {"rss_growth_pct": rss, "fd_growth_pct": fds, "judged": judged,
                       "rss_kb": [mine[0].rss_kb, mine[-1].rss_kb], "fds": [mine[0].fds, mine[-1].fds],
                       "pids": mine[-1].pids}
        parts[part]["flat"] = flat(rss, fds, mine[0].fds)
        verdict = ("ok" if parts[part]["flat"] else "GROWS") if judged else "reported (holds the data)"
        print(f"{part:<14}{mine[-1].pids:>5}{mine[0].rss_kb / 1024:>12.1f} -> {mine[-1].rss_kb / 1024:<8.1f}"
              f"{rss:>+8.1f}%{mine[0].fds:>10} -> {mine[-1].fds:<6}{fds:>+8.1f}%  {verdict}")
    missing = [part for part in JUDGED if part not in parts or parts[part]["pids"] == 0]
    rss_growth = max((parts[part]["rss_growth_pct"] for part in JUDGED if part in parts), default=math.nan)
    fd_growth = max((parts[part]["fd_growth_pct"] for part in JUDGED if part in parts), default=math.nan)
    steady = p99_steady(p99_first, p99_last)
    details = {"minutes": soak.args.minutes, "rates": {"searches": soak.args.rate, "personal": soak.args.personal_rate,
                                                       "events": soak.args.events, "changes": soak.args.changes},
               "searches": len(searches), "failed_searches": failed_searches, "failures": soak.tally.failures,
               "events": len(soak.tally.events), "changes": soak.stream.acknowledged,
               "products": len(soak.stream.expected), "lost": lost, "parts": parts, "missing_processes": missing,
               "p99_first_ms": p99_first, "p99_last_ms": p99_last, "p99_steady": steady,
               "judged_window_s": [WARMUP * duration, duration]}
    (out / "summary.json").write_text(json.dumps(details, indent=2) + "\n")
    for problem in lost[:20]:
        print(f"soak: lost: {problem}", file=sys.stderr)
    if soak.tally.failures or failed_searches:
        print(f"soak: failed calls: searches {failed_searches} {soak.tally.failures}", file=sys.stderr)
    if missing:
        print(f"soak: no process left of {', '.join(missing)}", file=sys.stderr)
    print(f"p99 {'steady' if steady else 'NOT steady'}: {p99_first:.0f} ms in the judged window's first quarter, "
          f"{p99_last:.0f} ms in its last (steady: last <= {P99_RATIO:g} x first + {P99_SLACK_MS:g} ms)")
    print(f"results in {out}", flush=True)
    print(summary_line(soak.args.minutes, len(searches), len(soak.tally.events), soak.stream.acknowledged, len(lost),
                       failed, rss_growth, fd_growth, p99_first, p99_last), flush=True)
    grows = not all(parts[part]["flat"] for part in JUDGED if part in parts)
    return 1 if lost or failed or grows or missing or not steady else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load runs (default 10)")
    parser.add_argument("--rate", type=float, default=10.0, help="anonymous searches a second, open loop (default 10)")
    parser.add_argument("--personal-rate", type=float, default=2.0, help="personalized searches a second (default 2)")
    parser.add_argument("--events", type=float, default=5.0, help="feedback events a second (default 5)")
    parser.add_argument("--changes", type=float, default=1.0, help="catalog change calls a second (default 1)")
    parser.add_argument("--batch", type=int, default=3, help="changes drawn per catalog call (default 3)")
    parser.add_argument("--live", type=int, default=60, help="the run's own products kept at most: past it, the "
                                                             "oldest are deleted (default 60)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results/soak-<date-time>)")
    args = parser.parse_args(argv)
    if args.minutes < 1 or min(args.rate, args.personal_rate, args.events, args.changes, args.every) <= 0:
        parser.error("--minutes must be at least 1; rates and --every positive")
    if args.live < MIN_LIVE + args.batch:
        parser.error(f"--live must be at least {MIN_LIVE} + --batch: the changes draw from that many products")
    if args.every * 5 > args.minutes * 60 * (1 - WARMUP):
        parser.error("--every leaves fewer than 5 samples in the judged window: sample more often")
    from core.catalog import load_catalog  # noqa: PLC0415
    from core.judgments import load_judgments  # noqa: PLC0415
    from core.settings import Settings  # noqa: PLC0415
    from orchestrator.catalog.milvus_process import LocalMilvus  # noqa: PLC0415
    from orchestrator.harness import as_environment, catalog_stack, scratch_state  # noqa: PLC0415
    from orchestrator.triton_process import free_port  # noqa: PLC0415

    out = (args.out or RESULTS / time.strftime("soak-%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    products = [product.product_id for product in load_catalog(DEMO_CATALOG)]
    queries = list(load_judgments(DEMO_JUDGMENTS))
    token = secrets.token_hex(16)
    holder: list[Soak] = []
    with tempfile.TemporaryDirectory(prefix="shoprank-soak-") as scratch:
        scratch = Path(scratch)
        (scratch / "redis").mkdir()
        milvus = LocalMilvus(scratch / "milvus", log_path=out / "milvus.log")
        replica: Replica | None = None
        try:
            with redis_server(scratch / "redis") as redis_url:
                milvus.start()
                catalog_store = f"milvus://127.0.0.1:{milvus.port}"
                with catalog_stack(Settings.from_env(catalog_store=catalog_store, shop=SHOP), DEMO_CATALOG) as settings:
                    # The checkout's reranker versions serve; its rollout state is left alone.
                    files = scratch_state(scratch, rollout_from=settings.rollout_state, profile_store=redis_url)
                    env = {**os.environ, "SHOPRANK_ADMIN_TOKEN": token, **as_environment(files)}
                    serve_args = ["--catalog-store", catalog_store, "--shop", SHOP, "--triton-url",
                                  settings.triton_url]
                    replica = Replica("soak", serve_args, free_port(), free_port(), out / "service.log", env)
                    lost = asyncio.run(until_sigterm(_run(replica, token, args, products, queries, redis_url, out,
                                                          holder)))
        finally:
            if replica is not None:
                replica.stop()
            milvus.stop()
    if not holder:
        print("soak: the run did not start", file=sys.stderr)
        return 1
    return report(holder[0], lost, out)


async def _run(replica: Replica, token: str, args: argparse.Namespace, products: list[str], queries: list[str],
               redis_url: str, out: Path, holder: list) -> list[str]:
    replica.start()
    await replica.wait_ready()
    soak = Soak(replica, token, args, products, queries)
    holder.append(soak)
    print(f"soak: {args.minutes:g} min against {replica.address}: searches {args.rate:g}/s open loop + "
          f"{args.personal_rate:g}/s personalized, events {args.events:g}/s, catalog calls {args.changes:g}/s "
          f"({args.batch} changes each), a sample every {args.every:g} s; results in {out}", flush=True)
    try:
        await soak.run(out / "searches.csv")
        return await soak.lost(redis_url)
    finally:
        await soak.close()


if __name__ == "__main__":
    sys.exit(main())
