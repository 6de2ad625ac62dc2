"""Paired bootstrap confidence intervals, for saying whether one ranker beats another on the same queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

_CHUNK = 1 << 22  # resampled indices held in memory at once


@dataclass(frozen=True)
class Interval:
    """A 95% interval of the mean per-query difference a - b."""

    mean_difference: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of zero."""
        return self.low > 0 or self.high < 0

    def text(self) -> str:
        """E.g. '+0.0123 [+0.0051, +0.0190] over 812 queries'."""
        return f"{self.mean_difference:+.4f} [{self.low:+.4f}, {self.high:+.4f}] over {self.n} queries"


def paired_bootstrap(a: Sequence[float], b: Sequence[float], samples: int = 2000, seed: int = 0) -> Interval:
    """The mean of a_i - b_i with a 95% percentile interval, resampling queries with replacement."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    differences = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if differences.ndim != 1 or not len(differences):
        raise ValueError("paired_bootstrap needs at least one pair of per-query values")
    if samples < 1:
        raise ValueError(f"samples must be positive, not {samples}")
    n = len(differences)
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // n)
    means = np.concatenate([differences[rng.integers(0, n, size=(min(rows, samples - start), n))].mean(axis=1)
                            for start in range(0, samples, rows)])
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(differences.mean()), float(low), float(high), n)
