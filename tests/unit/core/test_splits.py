from collections import Counter

import pytest

from core.splits import select, split_of


def test_split_depends_only_on_the_normalized_query():
    assert split_of("Cordless  Drill") == split_of("cordless drill")
    assert split_of("cordless drill") == split_of("cordless drill")


def test_shares_are_near_80_10_10():
    counts = Counter(split_of(f"query number {n}") for n in range(20_000))
    assert abs(counts["train"] / 20_000 - 0.8) < 0.02
    assert abs(counts["dev"] / 20_000 - 0.1) < 0.01
    assert abs(counts["test"] / 20_000 - 0.1) < 0.01


def test_select_keeps_whole_queries_of_one_split():
    judgments = {f"q{n}": {"p": 1.0} for n in range(200)}
    parts = {name: select(judgments, name) for name in ("train", "dev", "test")}
    assert sum(len(part) for part in parts.values()) == 200
    assert not set(parts["train"]) & set(parts["test"])
    assert select(judgments, None) is judgments
    with pytest.raises(ValueError, match="unknown split"):
        select(judgments, "validation")
