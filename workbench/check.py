"""`make workbench-check`: the workbench's browser journey (workbench/journey.py) against a fresh stack.

    .venv/bin/python -m workbench.check [--out DIR] [--triton-url HOST:PORT]

Starts Triton (or uses --triton-url) and a service on the demo catalog with its own scratch files (an empty profile
store, a copy of the checkout's rollout state, an admin API with a one-off token), the workbench on a free port, and
a second workbench whose service is down; drives headless Chromium through the journey; stops everything. Screenshots,
the judgments file the journey wrote, each check (checks.txt) and the service's log go to --out (default
benchmarks/results/workbench-<date-time>/). The last line is `pages=N checks=M failed=F`; the exit status is 1 when
a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

from core.catalog import shop_of
from orchestrator.harness import catalog_stack, scratch_state, settings_from, triton_options
from orchestrator.triton_process import free_port

from .config import DEMO_CATALOG, WorkbenchConfig
from .journey import Journey, report, summary
from .server import WorkbenchThread

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


async def _journey(settings, out: Path, token: str) -> Journey:
    """Start a service on `settings`, run the journey through workbenches on it (and on nothing), stop it."""
    from orchestrator.server import Service  # noqa: PLC0415

    service = await Service(dataclasses.replace(settings, port=0)).start()
    try:
        shop = shop_of(DEMO_CATALOG, settings.shop)
        config = WorkbenchConfig(servers=(f"{settings.host}:{service.port}",),
                                 admins=(f"{settings.host}:{service.admin_port}",), admin_token=token,
                                 catalogs=((shop, DEMO_CATALOG),), judgments_out=str(out / "judgments-{shop}.csv"),
                                 port=0)
        down = dataclasses.replace(config, servers=(f"127.0.0.1:{free_port()}",), admins=(),
                                   judgments_out=str(out / "unused-{shop}.csv"))

        def drive() -> Journey:
            with WorkbenchThread(config) as bench, WorkbenchThread(down) as dead:
                print(f"workbench on {bench.url} for the service at {config.servers[0]}; another on {dead.url} "
                      f"for {down.servers[0]}, where nothing listens", flush=True)
                journey = Journey(bench.url, config.judgments_file(shop), out, dead.url)
                journey.run()
                return journey

        return await asyncio.to_thread(drive)
    finally:
        await service.stop()


def run(args: argparse.Namespace, out: Path) -> Journey:
    """The journey on a fresh stack over the demo catalog."""
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="shoprank-workbench-") as scratch:
        def adjust(settings):
            return dataclasses.replace(settings, **scratch_state(Path(scratch), rollout_from=settings.rollout_state),
                                       admin_port=0, admin_token=token)

        with catalog_stack(settings_from(args), DEMO_CATALOG, adjust=adjust) as settings:
            return asyncio.run(_journey(settings, out, token))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="folder for the screenshots and reports "
                                                 "(default benchmarks/results/workbench-<date-time>)")
    triton_options(parser)
    args = parser.parse_args(argv)
    out = (args.out or RESULTS / f"workbench-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    console = logging.StreamHandler()
    console.setLevel(logging.ERROR)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[logging.FileHandler(out / "service.log", encoding="utf-8"), console], force=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stops the stack in its `finally`, as Ctrl-C does
    started = time.perf_counter()
    journey = run(args, out)
    with open(out / "checks.txt", "w", encoding="utf-8") as file:
        report(journey.checks, lambda line: print(line, file=file))
    report(journey.checks)
    print(f"screenshots, judgments and checks in {out} ({time.perf_counter() - started:.0f} s)")
    print(summary(journey), flush=True)
    return 1 if journey.failed else 0


if __name__ == "__main__":
    sys.exit(main())
