"""A load run's one-line summary and its latency-over-time plot, from the files Locust and the locustfile wrote.

Inputs: Locust's `<prefix>_stats.csv` (totals), `<prefix>_stats_history.csv` written with --csv-full-history (one row
a second; the Aggregated row's percentiles are then over the last 10 s), and the locustfile's --degraded-csv
(timestamp,requests,degraded for every second). Imports no locust; matplotlib only to plot.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

AGGREGATED = "Aggregated"
# The degraded share is plotted over the same trailing window as Locust's current percentiles.
WINDOW_S = 10


@dataclass(frozen=True)
class Summary:
    """A whole run's totals and latency percentiles (ms)."""

    requests: int
    failures: int
    degraded: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rps: float

    @property
    def degraded_share(self) -> float:
        return self.degraded / self.requests if self.requests else 0.0

    def line(self) -> str:
        return (f"requests={self.requests} failures={self.failures} degraded={self.degraded} "
                f"({self.degraded_share:.1%}) p50_ms={self.p50_ms:.0f} p95_ms={self.p95_ms:.0f} "
                f"p99_ms={self.p99_ms:.0f} rps={self.rps:.1f}")


@dataclass(frozen=True)
class History:
    """The Aggregated row of Locust's stats history: one value a second, NaN where there was nothing to measure."""

    timestamps: list[int]
    users: list[int]
    rps: list[float]
    p50_ms: list[float]
    p95_ms: list[float]
    p99_ms: list[float]


def _number(text: str) -> float:
    """Locust's CSV value as a float; "N/A" (no request yet) is NaN."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def _aggregated(path: Path) -> list[dict[str, str]]:
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if row["Name"] == AGGREGATED]


def _window_percentile(text: str) -> float:
    """A percentile of the history; Locust writes 0 while its 10 s window holds no call yet: NaN, as for "N/A"."""
    value = _number(text)
    return math.nan if value == 0 else value


def read_history(path: Path) -> History:
    """The Aggregated rows of a `<prefix>_stats_history.csv`."""
    rows = _aggregated(path)
    return History(
        timestamps=[int(row["Timestamp"]) for row in rows],
        users=[int(row["User Count"]) for row in rows],
        rps=[_number(row["Requests/s"]) for row in rows],
        p50_ms=[_window_percentile(row["50%"]) for row in rows],
        p95_ms=[_window_percentile(row["95%"]) for row in rows],
        p99_ms=[_window_percentile(row["99%"]) for row in rows],
    )


def read_timeline(path: Path) -> dict[int, tuple[int, int]]:
    """Unix second -> (requests, degraded) from the locustfile's --degraded-csv."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return {int(row["timestamp"]): (int(row["requests"]), int(row["degraded"])) for row in csv.DictReader(handle)}


def degraded_share(timeline: dict[int, tuple[int, int]], window_s: int = WINDOW_S) -> tuple[list[int], list[float]]:
    """For every second of the timeline, the share of calls that ended in the trailing `window_s` seconds and were
    degraded answers (NaN when none ended)."""
    if not timeline:
        return [], []
    seconds = list(range(min(timeline), max(timeline) + 1))
    shares = []
    for second in seconds:
        counts = [timeline.get(s, (0, 0)) for s in range(second - window_s + 1, second + 1)]
        requests = sum(c[0] for c in counts)
        shares.append(sum(c[1] for c in counts) / requests if requests else math.nan)
    return seconds, shares


def summarize(stats_csv: Path, timeline_csv: Path) -> Summary:
    """The run's totals from Locust's `<prefix>_stats.csv` and the degraded count from the --degraded-csv."""
    rows = _aggregated(stats_csv)
    if not rows:
        raise ValueError(f"{stats_csv} has no {AGGREGATED} row")
    row = rows[-1]
    degraded = sum(d for _, d in read_timeline(timeline_csv).values())
    return Summary(
        requests=int(row["Request Count"]),
        failures=int(row["Failure Count"]),
        degraded=degraded,
        p50_ms=_number(row["50%"]),
        p95_ms=_number(row["95%"]),
        p99_ms=_number(row["99%"]),
        rps=_number(row["Requests/s"]),
    )


def plot(history_csv: Path, timeline_csv: Path, png: Path, title: str = "") -> Path:
    """Two panels over seconds since the start: p50/p95/p99 (trailing 10 s) with the user count; the degraded share
    (trailing 10 s) with requests/s. Writes `png` and returns it."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    history = read_history(history_csv)
    seconds, shares = degraded_share(read_timeline(timeline_csv))
    starts = [values[0] for values in (history.timestamps, seconds) if values]
    t0 = min(starts) if starts else 0
    x = [t - t0 for t in history.timestamps]

    figure, (latency, degraded) = plt.subplots(2, 1, sharex=True, figsize=(10, 7), height_ratios=(3, 2))
    for values, label, color in ((history.p50_ms, "p50", "tab:green"), (history.p95_ms, "p95", "tab:orange"),
                                 (history.p99_ms, "p99", "tab:red")):
        latency.plot(x, values, label=label, color=color)
    latency.set_ylabel(f"latency, ms (last {WINDOW_S} s)")
    latency.set_ylim(bottom=0)
    latency.grid(alpha=0.3)
    users = latency.twinx()
    users.step(x, history.users, where="post", color="grey", linestyle="--", linewidth=1, label="users")
    users.set_ylabel("users")
    users.set_ylim(bottom=0, top=max(history.users, default=0) * 1.25 + 1)
    lines = latency.get_lines() + users.get_lines()
    latency.legend(lines, [line.get_label() for line in lines], loc="upper left")

    degraded.plot([s - t0 for s in seconds], [share * 100 for share in shares], color="tab:purple",
                  label=f"degraded share (last {WINDOW_S} s)")
    degraded.set_ylabel("degraded, % of calls")
    degraded.set_ylim(-2, 102)
    degraded.set_xlabel("seconds since start")
    degraded.grid(alpha=0.3)
    rps = degraded.twinx()
    rps.plot(x, history.rps, color="tab:blue", linewidth=1, alpha=0.6, label=f"requests/s (last {WINDOW_S} s)")
    rps.set_ylabel("requests/s")
    rps.set_ylim(bottom=0)
    lines = degraded.get_lines() + rps.get_lines()
    degraded.legend(lines, [line.get_label() for line in lines], loc="upper left")

    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)
    return Path(png)
