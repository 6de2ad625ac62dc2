"""What the guards watch: each version's recent outcomes and latencies, and how far its rankings agree with the
stable version's in shadow mode.

Rank-biased overlap (Webber, Moffat and Zobel 2010) compares two rankings with the top weighted most:
    RBO(A, B) = (1 - p) * sum_{d=1..k} p^(d-1) * |A[:d] & B[:d]| / d
truncated at depth k (a lower bound of the infinite sum; 1 for identical lists only in the limit), so it is
reported with the extrapolated remainder added: identical rankings score 1, disjoint ones 0.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass


def rank_biased_overlap(first: list, second: list, p: float = 0.9) -> float:
    """Extrapolated RBO of two rankings cut at the same depth: 1 when identical, 0 when disjoint."""
    depth = min(len(first), len(second))
    if depth == 0:
        return 1.0
    seen_first: set = set()
    seen_second: set = set()
    overlap = 0
    total = 0.0
    for d in range(1, depth + 1):
        a, b = first[d - 1], second[d - 1]
        if a == b:
            overlap += 1
        else:
            overlap += (a in seen_second) + (b in seen_first)
        seen_first.add(a)
        seen_second.add(b)
        total += p ** (d - 1) * overlap / d
    return (1 - p) * total + p ** depth * overlap / depth


@dataclass(frozen=True)
class WindowStats:
    requests: int
    errors: int
    p99_ms: float  # nan without requests

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


class SlidingWindow:
    """The outcomes of the last `seconds`: (time, ok, latency in ms) per request."""

    def __init__(self, seconds: float, clock=time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._events: deque[tuple[float, bool, float]] = deque()

    def add(self, ok: bool, latency_ms: float) -> None:
        self._events.append((self.clock(), ok, latency_ms))
        self._trim()

    def _trim(self) -> None:
        horizon = self.clock() - self.seconds
        while self._events and self._events[0][0] < horizon:
            self._events.popleft()

    def stats(self) -> WindowStats:
        self._trim()
        latencies = sorted(latency for _, _, latency in self._events)
        errors = sum(not ok for _, ok, _ in self._events)
        p99 = latencies[min(len(latencies) - 1, math.ceil(0.99 * len(latencies)) - 1)] if latencies else math.nan
        return WindowStats(len(latencies), errors, p99)


class AgreementWindow:
    """Shadow agreements (RBO of the candidate's ranking against the stable one's) of the last `seconds`."""

    def __init__(self, seconds: float, clock=time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._values: deque[tuple[float, float]] = deque()
        self.skipped = 0  # shadow scorings not run because the reranker was at its limit

    def add(self, value: float) -> None:
        self._values.append((self.clock(), value))
        horizon = self.clock() - self.seconds
        while self._values and self._values[0][0] < horizon:
            self._values.popleft()

    def mean(self) -> tuple[float, int]:
        """(mean agreement, how many rankings were compared) over the window; (nan, 0) when none were."""
        horizon = self.clock() - self.seconds
        values = [value for when, value in self._values if when >= horizon]
        return (sum(values) / len(values), len(values)) if values else (math.nan, 0)
