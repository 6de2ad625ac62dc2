"""core.stats.paired_bootstrap: the interval of a mean paired difference."""

from __future__ import annotations

import numpy as np
import pytest

from core.stats import Interval, paired_bootstrap


def test_constant_difference_has_a_point_interval():
    interval = paired_bootstrap([0.5, 0.7, 0.9], [0.4, 0.6, 0.8])
    assert interval.mean_difference == pytest.approx(0.1)
    assert interval.low == pytest.approx(0.1) and interval.high == pytest.approx(0.1)
    assert interval.n == 3 and interval.excludes_zero


def test_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(7)
    b = rng.random(900)
    a = b + rng.normal(0.02, 0.1, 900)
    interval = paired_bootstrap(a, b, samples=4000)
    differences = a - b
    half_width = 1.96 * differences.std(ddof=1) / np.sqrt(900)
    assert interval.mean_difference == pytest.approx(differences.mean())
    assert interval.low == pytest.approx(differences.mean() - half_width, abs=0.002)
    assert interval.high == pytest.approx(differences.mean() + half_width, abs=0.002)
    assert interval.low < interval.mean_difference < interval.high
    assert interval.excludes_zero


def test_no_difference_does_not_exclude_zero():
    rng = np.random.default_rng(1)
    a = rng.random(300)
    interval = paired_bootstrap(a, a + rng.normal(0, 0.05, 300))
    assert interval.low < 0 < interval.high and not interval.excludes_zero


def test_pairs_matter_not_just_means():
    # Same values, paired so that every query gains: a large unpaired spread, yet a sure paired gain.
    b = np.linspace(0, 1, 200)
    interval = paired_bootstrap(b + 0.01, b)
    assert interval.low == pytest.approx(0.01) and interval.excludes_zero


def test_seeded_and_antisymmetric():
    rng = np.random.default_rng(3)
    a, b = rng.random(150), rng.random(150)
    assert paired_bootstrap(a, b, seed=5) == paired_bootstrap(a, b, seed=5)
    assert paired_bootstrap(a, b, seed=5) != paired_bootstrap(a, b, seed=6)
    forward, backward = paired_bootstrap(a, b), paired_bootstrap(b, a)
    assert backward.mean_difference == pytest.approx(-forward.mean_difference)
    assert backward.low == pytest.approx(-forward.high) and backward.high == pytest.approx(-forward.low)


def test_text():
    assert Interval(0.0123, 0.0051, 0.019, 812).text() == "+0.0123 [+0.0051, +0.0190] over 812 queries"
    assert Interval(-0.002, -0.01, 0.006, 5).text() == "-0.0020 [-0.0100, +0.0060] over 5 queries"
    assert Interval(-0.02, -0.03, -0.01, 5).excludes_zero and not Interval(0.0, 0.0, 0.01, 5).excludes_zero


@pytest.mark.parametrize("a, b", [([1.0, 2.0], [1.0]), ([], [])])
def test_refuses_unpaired_or_empty(a, b):
    with pytest.raises(ValueError):
        paired_bootstrap(a, b)
