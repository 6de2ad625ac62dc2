"""`make load`: Locust's step load, headless and bounded in time, against a running service or a fresh stack.

    .venv/bin/python -m loadtest.run --seconds 60                          # starts Triton and a service, stops them
    .venv/bin/python -m loadtest.run --seconds 30 --host 127.0.0.1:50051   # a service that is already running

Run from the repository root. Without --host it starts Triton and a service on the demo catalog (the index is
built once and cached under .shoprank/indexes; the profile store is a new empty SQLite file and the rollout state a
copy of the checkout's), as `shoprank eval` does, and stops both at the end, on failure, on Ctrl-C or SIGTERM. Locust runs in its own process (it patches the process
with gevent). Its CSV files, HTML report, the degraded answers per second and a latency plot go to --out
(default benchmarks/results/<date-time>/); the exit status is Locust's (loadtest/locustfile.py's thresholds).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from core.errors import ShoprankError
from orchestrator.harness import catalog_stack, local, scratch_state, settings_from, triton_options

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEMO_CATALOG = Path("data/demo/catalog.csv")
LOCUSTFILE = "loadtest/locustfile.py"
LOCUSTFILES = f"{LOCUSTFILE},loadtest/shapes.py"
# Locust writes its reports when it stops: time to do so after an interrupt, before it is killed.
LOCUST_STOP_S = 20.0
INTERRUPTED = 130


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """Where one run's files go."""

    out: Path

    @property
    def csv_prefix(self) -> Path:
        return self.out / "locust"

    @property
    def stats(self) -> Path:
        return self.out / "locust_stats.csv"

    @property
    def history(self) -> Path:
        return self.out / "locust_stats_history.csv"

    @property
    def degraded(self) -> Path:
        return self.out / "degraded.csv"

    @property
    def html(self) -> Path:
        return self.out / "report.html"

    @property
    def plot(self) -> Path:
        return self.out / "latency.png"

    @property
    def service_log(self) -> Path:
        return self.out / "service.log"


def locust_command(host: str, seconds: int, files: RunFiles, users: int = 0) -> list[str]:
    """Locust, headless, for `seconds` against `host` (host:port), writing `files`: with the step shape, or with
    `users` steady users (all spawned at once) when given."""
    load = ["-f", LOCUSTFILES] if not users else ["-f", LOCUSTFILE, "-u", str(users), "-r", str(users)]
    return [sys.executable, "-m", "locust", *load, "--headless", "--only-summary",
            "--host", host, "--run-time", f"{seconds}s",
            "--csv", str(files.csv_prefix), "--csv-full-history", "--html", str(files.html),
            "--degraded-csv", str(files.degraded)]


async def run_locust(command: list[str]) -> int:
    """Run Locust to its end and return its exit status; if cancelled (Ctrl-C), let it stop and write its reports."""
    process = await asyncio.create_subprocess_exec(*command, cwd=ROOT)
    try:
        return await process.wait()
    except asyncio.CancelledError:
        # Ctrl-C in a terminal reaches Locust too; otherwise (SIGTERM to this process) it is told here, by SIGINT:
        # a headless Locust running a shape writes its reports on SIGINT but dies at once on SIGTERM.
        for stop in (None, functools.partial(process.send_signal, signal.SIGINT), process.kill):
            if stop is not None and process.returncode is None:
                stop()
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), 3.0 if stop is None else LOCUST_STOP_S)
                break
            except asyncio.TimeoutError:
                continue
        raise


def on_demo_stack(args: argparse.Namespace, work: Callable[[str], Awaitable[int]]) -> int:
    """Start Triton and a service on the demo catalog, return `work(address)`, stop both (also on failure or
    Ctrl-C). The service has its own scratch files: an empty profile store, and a copy of the checkout's rollout
    state when there is one (the same reranker versions serve; the checkout's state is never written)."""
    with tempfile.TemporaryDirectory(prefix="shoprank-load-") as scratch:
        def adjust(settings):
            return dataclasses.replace(settings, **scratch_state(Path(scratch), rollout_from=settings.rollout_state),
                                       admin_port=0)

        with catalog_stack(settings_from(args), DEMO_CATALOG, adjust=adjust) as settings:
            return asyncio.run(until_sigterm(_serve(settings, work)))


async def _serve(settings, work: Callable[[str], Awaitable[int]]) -> int:
    from orchestrator.server import Service  # noqa: PLC0415

    service = await Service(local(settings)).start()
    address = f"{settings.host}:{service.port}"
    print(f"shoprank serving on {address} (Triton at {service.triton_url}, profiles {settings.profile_store})",
          flush=True)
    impressions = service.impressions
    try:
        return await work(address)
    finally:
        await service.stop()
        print("shoprank service stopped", flush=True)
        if impressions is not None:  # closed by the stop: every queued record is written or counted as dropped
            counts = impressions.counts
            lost = sum(value for outcome, value in counts.items() if outcome.startswith("dropped"))
            print(f"impression log: written={counts['written']} lost={lost} ({settings.impression_log})", flush=True)


async def until_sigterm(awaitable: Awaitable[int]) -> int:
    """Await `awaitable` in asyncio.run's main task; SIGTERM cancels that task as asyncio.run does on Ctrl-C, so that
    the service stops while its own tasks still run."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    try:
        return await awaitable
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def report(files: RunFiles, title: str) -> str | None:
    """Plot the run and return its summary line, or None (with the reason printed) when Locust wrote no stats."""
    from loadtest.report import plot, summarize  # noqa: PLC0415

    missing = [path.name for path in (files.stats, files.history, files.degraded) if not path.is_file()]
    if missing:
        print(f"no report: Locust did not write {', '.join(missing)} in {files.out}", file=sys.stderr)
        return None
    summary = summarize(files.stats, files.degraded)
    plot(files.history, files.degraded, files.plot, title=f"{title}\n{summary.line()}")
    return summary.line()


def log_to(path: Path) -> None:
    """The started service's log goes to `path` (a line for every degraded answer under load); errors also to the
    terminal."""
    console = logging.StreamHandler()
    console.setLevel(logging.ERROR)
    logfile = logging.FileHandler(path, encoding="utf-8")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[logfile, console], force=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="host:port of a running shoprank service (default: start one)")
    parser.add_argument("--seconds", type=int, default=60, help="how long Locust runs (default 60)")
    parser.add_argument("--out", type=Path, help="folder for the results (default benchmarks/results/<date-time>)")
    triton_options(parser)
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM stops the run as Ctrl-C does: Locust, the service and Triton stop in their `finally`
    # (until_sigterm while asyncio runs).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    files = RunFiles(args.out or RESULTS / time.strftime("%Y%m%d-%H%M%S"))
    files.out.mkdir(parents=True, exist_ok=True)
    if not args.host:
        log_to(files.service_log)

    async def work(address: str) -> int:
        print(f"Locust: step load for {args.seconds} s against {address}", flush=True)
        return await run_locust(locust_command(address, args.seconds, files))

    try:
        code = asyncio.run(until_sigterm(work(args.host))) if args.host else on_demo_stack(args, work)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        code = INTERRUPTED
    except ShoprankError as error:
        print(f"load: error: {error}", file=sys.stderr)
        return 2
    target = args.host or "a fresh demo stack"
    line = report(files, f"shoprank step load, {args.seconds} s against {target}")
    log = f", {files.service_log.name}" if files.service_log.is_file() else ""
    print(f"\nresults in {files.out}: {files.html.name} (Locust's report), {files.plot.name}, "
          f"{files.csv_prefix.name}_*.csv, {files.degraded.name}{log}")
    if line is not None:
        print(f"load: {line} (exit status {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
