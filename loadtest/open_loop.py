"""An open-loop load generator: searches sent at a fixed rate whatever the service answers, as shoppers do.

    .venv/bin/python -m loadtest.open_loop --target 127.0.0.1:50051 --rate 40 --seconds 30 --out calls.csv

A closed loop (Locust's users wait for each answer before the next call) slows down with the service and hides
overload; here call i is sent at start + i / rate, on time even when earlier calls have not answered. Each call has
the deadline --deadline-ms. Queries are the judged queries of --judgments, in turn. It writes one row per call:
when it was sent (seconds from the start), its latency, its status, whether the answer was degraded, and for a
refused call the server's retry hint (retry-after-ms).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from core.judgments import load_judgments

DEFAULT_JUDGMENTS = Path("data/demo/judgments.csv")
FIELDS = ("sent_s", "latency_ms", "status", "degraded", "retry_after_ms")


@dataclass(frozen=True)
class Call:
    sent_s: float  # seconds from the start of the run
    latency_ms: float
    status: str  # "OK" or the gRPC status code's name
    degraded: bool = False
    retry_after_ms: str = ""


async def run(target: str, rate: float, seconds: float, queries: list[str], deadline_s: float) -> list[Call]:
    """Send `rate` searches a second for `seconds`, each at its planned time; every call's outcome."""
    calls: list[Call] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = ranking_pb2_grpc.RankingStub(channel)
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def one(index: int, planned: float) -> None:
            sent = loop.time()
            call = stub.Search(ranking_pb2.SearchRequest(query=queries[index % len(queries)]), timeout=deadline_s)
            try:
                response = await call
                calls.append(Call(planned, (loop.time() - sent) * 1000.0, "OK", response.degraded))
            except grpc.RpcError as error:
                hint = ""
                if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    hint = dict(await call.trailing_metadata() or ()).get("retry-after-ms", "")
                calls.append(Call(planned, (loop.time() - sent) * 1000.0, error.code().name, False, hint))

        tasks = []
        total = int(rate * seconds)
        for index in range(total):
            planned = index / rate
            delay = start + planned - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index, planned)))
        await asyncio.gather(*tasks)
    return calls


def write(calls: list[Call], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for call in sorted(calls, key=lambda item: item.sent_s):
            writer.writerow([f"{call.sent_s:.4f}", f"{call.latency_ms:.2f}", call.status, int(call.degraded),
                             call.retry_after_ms])


def read(path: Path) -> list[Call]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [Call(float(row["sent_s"]), float(row["latency_ms"]), row["status"], row["degraded"] == "1",
                     row["retry_after_ms"]) for row in csv.DictReader(handle)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.open_loop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="host:port of the service")
    parser.add_argument("--rate", type=float, required=True, help="searches a second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--deadline-ms", type=float, default=2000.0, help="each call's deadline (default 2000)")
    parser.add_argument("--judgments", type=Path, default=DEFAULT_JUDGMENTS, help="its queries are sent, in turn")
    parser.add_argument("--out", type=Path, required=True, help="the calls, one CSV row each")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")
    queries = list(load_judgments(args.judgments))
    started = time.perf_counter()
    calls = asyncio.run(run(args.target, args.rate, args.seconds, queries, args.deadline_ms / 1000.0))
    write(calls, args.out)
    print(f"{len(calls)} calls at {args.rate:g}/s in {time.perf_counter() - started:.1f}s -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
