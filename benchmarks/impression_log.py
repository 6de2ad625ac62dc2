"""What the impression log costs the search path, and how fast its writer writes.

Usage:
    .venv/bin/python benchmarks/impression_log.py [--records 200000] [--rate 20000] [--products 20]
        [--searches 20000] [--search-rate 2000]

Measures, on this process's main thread, in a temporary directory on the default file system:
- record(): the time of each call in microseconds (p50, p99, p99.9, max), --records impressions of --products
  products each, offered at --rate per second in 1 ms ticks (the caller sleeps between ticks, as an event loop
  waits for its sockets) while the writer runs, and how many the log refused;
- a search-like task (about 100 µs of pure Python, then one record()) timed --searches times, without a log and
  then with one writing: the difference of their p99 is what the log adds to a search's p99, the writer's use of
  the GIL included. Once paced at --search-rate a second (sleeping between searches, as an event loop waits on its
  sockets), once back to back: an event loop that is never idle, the worst case, where the writer gets the GIL
  only when the interpreter forces a switch (every 5 ms) and then holds it for up to a chunk (0.5 ms);
- the writer's throughput: --records impressions queued before start(), then start() and close() (everything
  encoded, written and fsynced), in records per second.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.experiments.impressions import ImpressionLog, Impression, encode  # noqa: E402


def impressions(count: int, products: int) -> list[Impression]:
    """Impressions like an interleaved search's: hashed user, a page of products, the arm of each."""
    now = time.time()
    return [Impression(f"request-{number:08d}", now + number / 1000, "shop-1", f"{number % 5000:064x}",
                       "cordless drill 18v", tuple(f"product-{(number + index) % 50000}" for index in range(products)),
                       tuple("control" if (number + index) % 2 else "treatment" for index in range(products)),
                       experiment="reranker-v3-vs-v2", model_versions={"reranker": "3", "encoder": "1"})
            for number in range(count)]


def percentiles_us(seconds: np.ndarray) -> dict[str, float]:
    p50, p99, p999 = np.percentile(seconds * 1e6, [50, 99, 99.9])
    return {"p50": round(float(p50), 2), "p99": round(float(p99), 2), "p99.9": round(float(p999), 2),
            "max": round(float(seconds.max() * 1e6), 2)}


def record_cost(items: list[Impression], rate: float, directory: Path) -> dict:
    """Each record()'s time with the writer running: every millisecond, a millisecond's share of `rate` calls,
    then a sleep until the next one, as an event loop that waits for its sockets in between."""
    log = ImpressionLog(directory / "record").start()
    times = np.empty(len(items))
    per_tick = max(1, round(rate / 1000))
    began = time.perf_counter()
    for tick, offset in enumerate(range(0, len(items), per_tick)):
        for index in range(offset, min(offset + per_tick, len(items))):
            start = time.perf_counter()
            log.record(items[index])
            times[index] = time.perf_counter() - start
        time.sleep(max(0.0, began + (tick + 1) / 1000 - time.perf_counter()))
    log.close()
    counts = log.counts
    return {"record_us": percentiles_us(times), "written": counts["written"], "refused": counts["dropped_full"]}


def search_like() -> int:
    """About 100 µs of pure Python, standing for a search's own work on the event loop."""
    return sum(index * index for index in range(2500))


def searches(items: list[Impression], log: ImpressionLog | None, rate: float) -> np.ndarray:
    """Each search's time: its work, then record(); `rate` searches a second with sleeps between, 0 back to back."""
    times = np.empty(len(items))
    began = time.perf_counter()
    for index, item in enumerate(items):
        start = time.perf_counter()
        search_like()
        if log is not None:
            log.record(item)
        times[index] = time.perf_counter() - start
        if rate:
            time.sleep(max(0.0, began + (index + 1) / rate - time.perf_counter()))
    return times


def search_cost(items: list[Impression], directory: Path, rate: float) -> dict:
    """A search-like task's times without a log and with one, and what the log added to their p99."""
    searches(items[:1000], None, 0)  # warm-up
    without = searches(items, None, rate)
    log = ImpressionLog(directory / f"search-{rate}").start()
    with_log = searches(items, log, rate)
    log.close()
    return {"without_log": percentiles_us(without), "with_log": percentiles_us(with_log),
            "p99_added_us": round(float(np.percentile(with_log, 99) - np.percentile(without, 99)) * 1e6, 2),
            "refused": log.counts["dropped_full"]}


def writer_throughput(items: list[Impression], directory: Path) -> dict:
    """Records per second from start() to the end of close(), everything queued beforehand."""
    log = ImpressionLog(directory / "throughput", queue_size=len(items))
    for item in items:
        log.record(item)
    began = time.perf_counter()
    log.start()
    log.close(timeout_s=600)
    seconds = time.perf_counter() - began
    files = sorted((directory / "throughput").iterdir())
    return {"writer_records_per_s": round(log.counts["written"] / seconds),
            "writer_mb_per_s": round(sum(path.stat().st_size for path in files) / seconds / 2**20, 1),
            "files": len(files)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=20_000, help="record() calls per second")
    parser.add_argument("--products", type=int, default=20, help="shown products per impression")
    parser.add_argument("--searches", type=int, default=20_000)
    parser.add_argument("--search-rate", type=float, default=2000, help="searches per second in the paced run")
    args = parser.parse_args()

    items = impressions(args.records, args.products)
    result: dict = {"records": args.records, "rate": args.rate, "products": args.products,
                    "line_bytes": len(encode(items[0]))}
    with tempfile.TemporaryDirectory(prefix="shoprank-bench-") as directory:
        result.update(record_cost(items, args.rate, Path(directory)))
        result["search_us_paced"] = search_cost(items[:args.searches], Path(directory), args.search_rate)
        result["search_us_busy"] = search_cost(items[:args.searches], Path(directory), 0)
        result.update(writer_throughput(items, Path(directory)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
