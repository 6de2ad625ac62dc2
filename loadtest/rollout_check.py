"""`make rollout-check`: a whole release under steady Locust load, and the proof that no request failed.

    .venv/bin/python -m loadtest.rollout_check

It copies the exported cpu model repository into a scratch folder (hard links), starts Triton and a service on
the demo catalog with the admin API on, and runs Locust at a steady rate. Meanwhile, in order:

    before     steady load on the stable reranker version
    export     `shoprank export --model reranker --force` writes a new version under load (gated on the demo set)
    canary 10  `shoprank rollout start reranker NEW --canary 10` (loaded and warmed before any traffic)
    canary 50  `shoprank rollout shift reranker 50`
    promoted   `shoprank rollout promote reranker`; the old version is unloaded once drained
    rollback   `shoprank rollout start reranker OLD --canary 10`, then `shoprank rollout rollback reranker`
    quality    a worse version (its combination ranks latin queries by BM25 alone: demo nDCG@10 0.833 against the
               stable 0.938) goes out with `--interleave 100`; the shoppers' clicks must make the quality guard roll
               it back (a "guard: quality: ..." rollback) within QUALITY_TIMEOUT_S
    after      steady load again

The Locust shoppers search the demo's judged queries and send their clicks back (loadtest/locustfile.py
--shopper-clicks: a position-based click model over the judged gains) with each answer's request id: what the
quality guard judges by. Each call's end time, latency, outcome and reranker version are recorded (--requests-csv).
At the end it prints p50/p95/p99 of the searches, requests/s and the degraded share per phase, writes them with
Locust's reports under benchmarks/results/rollout-<date-time>/, and prints exactly one last line:

    failed=N requests=M degraded=D p50_ms=.. p99_ms=..

where failed and requests count every call (searches and feedback), and the percentiles are the searches'.

The exit status is 1 if any request failed or a step of the rollout did not do what it should, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from core.model_repository import versions
from loadtest.run import DEMO_CATALOG, RESULTS, ROOT, RunFiles, locust_command, log_to, run_locust, until_sigterm

USERS = 3
PHASE_S = {"before": 20, "canary 10": 20, "canary 50": 20, "promoted": 20, "rollback": 15, "after": 15}
STEP_TIMEOUT_S = 300.0
QUALITY_TIMEOUT_S = 240.0  # the worse version must be rolled back by the quality guard within this


@dataclasses.dataclass
class Phase:
    name: str
    started: float
    ended: float = 0.0


def linked_copy(source: Path, target: Path) -> None:
    """A copy of a model repository folder (a target, a version) whose files are hard links where the filesystem
    allows: nothing in a version is ever written over."""

    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link, ignore=shutil.ignore_patterns("__pycache__"))


def shoprank(*args: str, env: dict | None = None, timeout: float = STEP_TIMEOUT_S,
             echo: bool = True) -> subprocess.CompletedProcess:
    """Run the shoprank CLI as a user would, echoing what it prints (`echo`: also the command and its output when
    it succeeds)."""
    command = [sys.executable, "-m", "cli", *args]
    if echo:
        print("$ shoprank " + " ".join(args), flush=True)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    output = (result.stdout + result.stderr).strip()
    if output and (echo or result.returncode != 0):
        print("  " + output.replace("\n", "\n  ")[-3000:], flush=True)
    return result


def write_worse_version(reranker: Path, stable: str) -> str:
    """A new reranker version: the stable one's files, with a combination that ranks latin queries by BM25 alone
    (and no shop's own weights); its number."""
    worse = str(versions(reranker)[-1] + 1)
    linked_copy(reranker / stable, reranker / worse)
    combination = reranker / worse / "combination.json"
    weights = json.loads(combination.read_text()) if combination.is_file() else {}
    combination.unlink(missing_ok=True)  # a hard link to the stable version's file: never written through
    worse_weights = {"latin": {"bm25": 1.0}}
    if "cjk" in weights:
        worse_weights["cjk"] = weights["cjk"]
    combination.write_text(json.dumps(worse_weights, indent=2) + "\n")
    return worse


def phase_figures(rows: list[dict], phases: list[Phase]) -> list[dict]:
    """p50/p95/p99 latency, requests/s, failures and degraded share of the requests that ended in each phase."""
    result = []
    for phase in phases:
        every = [row for row in rows if phase.started <= row["time"] < phase.ended]
        inside = [row for row in every if row.get("call", "Search") == "Search"]
        latencies = np.array([row["latency_ms"] for row in inside]) if inside else np.zeros(0)
        seconds = max(phase.ended - phase.started, 1e-9)
        result.append({
            "phase": phase.name,
            "seconds": round(seconds, 1),
            "requests": len(inside),
            "feedback": len(every) - len(inside),
            "failed": sum(not row["ok"] for row in every),
            "degraded_share": (sum(row["degraded"] for row in inside) / len(inside)) if inside else 0.0,
            "rps": len(inside) / seconds,
            **{f"p{q}_ms": float(np.percentile(latencies, q)) if len(latencies) else float("nan") for q in (50, 95, 99)},
            "reranker_versions": sorted({row["version"] for row in inside if row["version"]}),
        })
    return result


def read_requests(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [{"time": float(row["time"]), "latency_ms": float(row["latency_ms"]), "ok": row["ok"] == "1",
                 "degraded": row["degraded"] == "1", "version": row["reranker_version"],
                 "call": row.get("call") or "Search"}
                for row in csv.DictReader(handle)]


def summary_line(rows: list[dict]) -> str:
    searches = [row for row in rows if row.get("call", "Search") == "Search"]
    latencies = np.array([row["latency_ms"] for row in searches]) if searches else np.zeros(1)
    return (f"failed={sum(not row['ok'] for row in rows)} requests={len(rows)} "
            f"degraded={sum(row['degraded'] for row in rows)} p50_ms={np.percentile(latencies, 50):.0f} "
            f"p99_ms={np.percentile(latencies, 99):.0f}")


def table(figures: list[dict]) -> str:
    lines = ["| phase | s | requests | failed | req/s | p50 ms | p95 ms | p99 ms | degraded | reranker versions |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for item in figures:
        lines.append(f"| {item['phase']} | {item['seconds']:.0f} | {item['requests']} | {item['failed']} | "
                     f"{item['rps']:.1f} | {item['p50_ms']:.0f} | {item['p95_ms']:.0f} | {item['p99_ms']:.0f} | "
                     f"{item['degraded_share']:.1%} | {', '.join(item['reranker_versions'])} |")
    return "\n".join(lines)


class Release:
    """Drives the release through the CLI, recording the phases; `problems` lists what went wrong."""

    def __init__(self, repository_root: Path, admin: str, token: str) -> None:
        self.repository_root = repository_root
        self.admin = admin
        self.env = {"SHOPRANK_ADMIN_TOKEN": token}
        self.phases: list[Phase] = []
        self.problems: list[str] = []

    def enter(self, name: str) -> None:
        now = time.time()
        if self.phases:
            self.phases[-1].ended = now
        self.phases.append(Phase(name, now))
        print(f"--- {name}", flush=True)

    async def rollout(self, *args: str) -> dict | None:
        # In a thread: the service answering the call runs on this event loop.
        result = await asyncio.to_thread(shoprank, "rollout", *args, "--admin", self.admin, "--json", env=self.env)
        if result.returncode != 0:
            self.problems.append(f"`shoprank rollout {' '.join(args)}` exited {result.returncode}")
            return None
        return json.loads(result.stdout)

    async def status(self) -> dict:
        result = await asyncio.to_thread(shoprank, "rollout", "status", "reranker", "--admin", self.admin, "--json",
                                         env=self.env, echo=False)
        return json.loads(result.stdout)[0] if result.returncode == 0 else {}

    async def wait_unloaded(self, keep: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (await self.status()).get("loaded_versions") == [keep]:
                return
            await asyncio.sleep(1.0)
        self.problems.append(f"the versions other than {keep} were not unloaded within {timeout_s:.0f}s")

    async def quality_guard(self, stable: str) -> None:
        """Roll a worse version out as an interleaved canary to every request; the quality guard must roll it back."""
        worse = write_worse_version(self.repository_root / "cpu" / "reranker", stable)
        if await self.rollout("start", "reranker", worse, "--interleave", "100") is None:
            return
        deadline = time.monotonic() + QUALITY_TIMEOUT_S
        while time.monotonic() < deadline:
            await asyncio.sleep(2.0)
            status = await self.status()
            if status.get("candidate_version", "") != worse:
                break
        else:
            self.problems.append(f"the worse version {worse} was not rolled back within {QUALITY_TIMEOUT_S:.0f}s")
            await self.rollout("rollback", "reranker", "--reason", "rollout-check: the quality guard did not decide")
            return
        rollback = [event for event in status.get("history", []) if event.get("action") == "rollback"
                    and event.get("version") == worse]
        reason = rollback[-1].get("detail", "") if rollback else ""
        print(f"  version {worse} rolled back: {reason}", flush=True)
        if not reason.startswith("guard: quality:"):
            self.problems.append(f"the worse version {worse} ended otherwise than by the quality guard: {reason!r}")
        await self.wait_unloaded(stable)

    async def run(self) -> None:
        self.enter("before")
        await asyncio.sleep(PHASE_S["before"])
        old = (await self.status()).get("stable_version", "")
        self.enter("export")
        exported = await asyncio.to_thread(
            shoprank, "export", "--model-repository", str(self.repository_root), "--model", "reranker", "--force",
            "--gate-judgments", "data/demo/judgments.csv", "--gate-catalog", "data/demo/catalog.csv",
            "--skip-precision", "fp16")
        if exported.returncode != 0:
            self.problems.append("the export of a new reranker version failed")
            return
        new = str(versions(self.repository_root / "cpu" / "reranker")[-1])
        self.enter("canary 10")
        if await self.rollout("start", "reranker", new, "--canary", "10") is None:
            return
        await asyncio.sleep(PHASE_S["canary 10"])
        self.enter("canary 50")
        await self.rollout("shift", "reranker", "50")
        await asyncio.sleep(PHASE_S["canary 50"])
        self.enter("promoted")
        promoted = await self.rollout("promote", "reranker")
        if promoted is not None and promoted.get("stable_version") != new:
            self.problems.append(f"after promote the stable version is {promoted.get('stable_version')}, not {new}")
        await self.wait_unloaded(new)
        await asyncio.sleep(PHASE_S["promoted"])
        self.enter("rollback")
        if await self.rollout("start", "reranker", old, "--canary", "10") is not None:
            await asyncio.sleep(PHASE_S["rollback"])
            rolled = await self.rollout("rollback", "reranker", "--reason", "rollout-check")
            if rolled is not None and (rolled.get("stable_version"), rolled.get("candidate_version", "")) != (new, ""):
                self.problems.append(f"after rollback the versions are {rolled.get('stable_version')}/"
                                     f"{rolled.get('candidate_version')}")
            await self.wait_unloaded(new)
        self.enter("quality")
        await self.quality_guard(new)
        self.enter("after")
        await asyncio.sleep(PHASE_S["after"])
        self.phases[-1].ended = time.time()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.rollout_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository",
                        help="the exported repository to copy (its cpu target; default model_repository)")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results/rollout-<date-time>)")
    args = parser.parse_args(argv)
    from core.settings import Settings  # noqa: PLC0415
    from orchestrator.harness import catalog_stack, scratch_state  # noqa: PLC0415
    from orchestrator.triton_process import free_port  # noqa: PLC0415

    # The verdict here is failed requests; latency is reported per phase, not judged (Locust's own p95 limit off).
    os.environ["SHOPRANK_LOADTEST_P95_MS"] = "inf"
    files = RunFiles(args.out or RESULTS / time.strftime("rollout-%Y%m%d-%H%M%S"))
    files.out.mkdir(parents=True, exist_ok=True)
    requests_csv = files.out / "requests.csv"
    log_to(files.service_log)
    token, admin_port = secrets.token_hex(16), free_port()
    with tempfile.TemporaryDirectory(prefix="shoprank-rollout-check-") as scratch:
        root = Path(scratch) / "model_repository"
        linked_copy(args.model_repository / "cpu", root / "cpu")

        def adjust(settings):
            return dataclasses.replace(settings, **scratch_state(Path(scratch)), admin_token=token,
                                       admin_port=admin_port)

        release = Release(root, f"127.0.0.1:{admin_port}", token)
        settings = Settings.from_env(model_repository=root / "cpu")
        with catalog_stack(settings, DEMO_CATALOG, adjust=adjust) as settings:
            asyncio.run(until_sigterm(_check(settings, files, requests_csv, release)))
    rows = read_requests(requests_csv) if requests_csv.is_file() else []
    figures = phase_figures(rows, release.phases)
    (files.out / "phases.json").write_text(json.dumps(figures, indent=2) + "\n")
    (files.out / "phases.md").write_text(table(figures) + "\n")
    print("\n" + table(figures))
    for problem in release.problems:
        print(f"rollout-check: {problem}", file=sys.stderr)
    print(f"results in {files.out}", flush=True)
    line = summary_line(rows)
    print(line, flush=True)
    failed = sum(not row["ok"] for row in rows)
    return 1 if failed or release.problems or not rows else 0


async def _check(settings, files: RunFiles, requests_csv: Path, release: Release) -> None:
    from orchestrator.harness import local  # noqa: PLC0415
    from orchestrator.server import Service  # noqa: PLC0415

    service = await Service(local(settings)).start()
    address = f"{settings.host}:{service.port}"
    print(f"shoprank serving on {address}, admin on 127.0.0.1:{service.admin_port}", flush=True)
    total_s = sum(PHASE_S.values()) + 3 * STEP_TIMEOUT_S + QUALITY_TIMEOUT_S  # an upper bound: Locust is stopped when the release ends
    command = locust_command(address, int(total_s), files, users=USERS) + ["--requests-csv", str(requests_csv),
                                                                            "--shopper-clicks"]
    locust = asyncio.create_task(run_locust(command))
    try:
        await asyncio.sleep(5.0)  # users spawned
        await release.run()
    finally:
        locust.cancel()  # SIGINT: Locust stops and writes its reports (its exit status is not the verdict here)
        await asyncio.gather(locust, return_exceptions=True)
        await service.stop()


if __name__ == "__main__":
    sys.exit(main())
