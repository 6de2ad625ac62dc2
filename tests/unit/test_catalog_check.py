"""`make catalog-check`'s pure parts: the changes it draws, the final state it expects, how a probe judges a search,
how a stored product is compared, the percentile and the summary line."""

from __future__ import annotations

import math
from collections import Counter

from core._proto.shoprank.v1 import admin_pb2, ranking_pb2
from core.analysis import analyze
from loadtest.catalog_check import (
    MIN_LIVE,
    Change,
    ChangeStream,
    Expected,
    made_up_word,
    mismatch,
    percentile,
    probe,
    summary_line,
    visible,
)


def drawn(stream: ChangeStream, calls: int, size: int = 6) -> list:
    changes = []
    for _ in range(calls):
        batch = stream.draw(size)
        stream.acknowledge(batch)
        changes += batch
    return changes


def test_made_up_words_are_distinct_and_kept_whole_by_the_analyzer():
    words = [made_up_word(number) for number in range(1, 5000)]
    assert len(set(words)) == len(words)
    assert all(analyze(word) == [word] for word in words[:200] + words[-200:])


def test_the_first_changes_create_products_then_every_kind_follows():
    stream = ChangeStream(seed=3)
    first = stream.draw(MIN_LIVE)
    assert {change.kind for change in first} == {"new"}
    stream.acknowledge(first)
    kinds = Counter(change.kind for change in drawn(stream, 200))
    assert set(kinds) == {"new", "price", "stock", "title", "delete"}
    assert stream.acknowledged == MIN_LIVE + 1200


def test_the_expected_state_is_the_last_acknowledged_change_of_each_product():
    stream = ChangeStream(seed=7)
    changes = drawn(stream, 150)
    last = {}
    for change in changes:
        last[change.product_id] = change.after
    assert stream.expected == last
    seen = set()
    for change in changes:  # a product is new once, and never changed after its delete
        assert (change.kind == "new") == (change.product_id not in seen)
        seen.add(change.product_id)
    deleted = {pid for pid, state in stream.expected.items() if state is None}
    assert deleted
    for pid in deleted:
        assert [c.kind for c in changes if c.product_id == pid][-1] == "delete"
        assert [c.kind for c in changes if c.product_id == pid].count("delete") == 1


def test_a_change_drawn_but_not_acknowledged_leaves_the_expected_state_alone():
    stream = ChangeStream(seed=1)
    stream.acknowledge(stream.draw(MIN_LIVE))
    before = dict(stream.expected)
    stream.draw(6)  # its call failed: it is sent again as it was, or never
    assert stream.expected == before and stream.acknowledged == MIN_LIVE


def test_each_kind_changes_what_it_says_and_nothing_else():
    stream = ChangeStream(seed=11)
    stream.acknowledge(stream.draw(MIN_LIVE))
    for _ in range(100):
        batch = stream.draw(6)
        for change in batch:
            old = stream.expected.get(change.product_id)
            if change.kind == "price":
                assert change.after.price != old.price and (change.after.title, change.after.stock) == (old.title,
                                                                                                       old.stock)
            elif change.kind == "stock":
                assert (old.stock == 0) == (change.after.stock > 0) and change.after.price == old.price
            elif change.kind == "title":
                assert change.after.word != old.word and change.after.word in change.after.title.lower()
                assert change.word == change.after.word
            elif change.kind == "delete":
                assert change.after is None and change.word == old.word
        stream.acknowledge(batch)


def test_a_batch_touches_distinct_products_and_none_that_is_busy():
    stream = ChangeStream(seed=5)
    stream.acknowledge(stream.draw(MIN_LIVE + 10))
    busy = set(stream.live()[:15])
    for _ in range(50):
        batch = stream.draw(8, busy)
        ids = [change.product_id for change in batch]
        assert len(set(ids)) == len(ids) and not busy & set(ids)
        stream.acknowledge(batch)


def test_a_record_carries_the_whole_product():
    stream = ChangeStream(seed=2)
    change = stream.draw(1)[0]
    record = change.record()
    assert (record.product_id, record.title, record.price, record.stock) == (
        change.product_id, change.after.title, change.after.price, change.after.stock)


def change_of(kind: str, after: Expected | None, word: str = "") -> Change:
    """A change to product p1."""
    return Change(kind, "p1", after, word or after.word)


def test_probes_search_the_word_and_judge_presence_or_absence():
    product = Expected("Qykaloka kettle", "qykaloka", 20.0, 3)
    new = change_of("new", product)
    assert probe(new).query == "qykaloka" and probe(new).retrieval == ranking_pb2.RETRIEVAL_MODE_LEXICAL
    assert visible(new, ["x", "p1"]) and not visible(new, [])
    price = change_of("price", product)
    (band,) = probe(price).filters
    assert band.field == "price" and band.min < 20.0 < band.max and probe(price).include_out_of_stock
    sold_out = change_of("stock", Expected("Qykaloka kettle", "qykaloka", 20.0, 0))
    assert not probe(sold_out).include_out_of_stock
    assert visible(sold_out, []) and not visible(sold_out, ["p1"])
    back = change_of("stock", product)
    assert visible(back, ["p1"]) and not visible(back, [])
    deleted = change_of("delete", None, word="qykaloka")
    assert probe(deleted).include_out_of_stock and visible(deleted, []) and not visible(deleted, ["p1"])


def test_a_stored_product_matches_or_says_how_it_differs():
    expected = Expected("Qykaloka kettle", "qykaloka", 20.0, 3)
    stored = admin_pb2.ProductRecord(product_id="p1", title="Qykaloka kettle", price=20.0, stock=3)
    assert mismatch("p1", expected, stored) is None
    assert mismatch("p1", None, None) is None
    assert "still finds it" in mismatch("p1", None, stored)
    assert "NOT_FOUND" in mismatch("p1", expected, None)
    stale = admin_pb2.ProductRecord(product_id="p1", title="Qymimi kettle", stock=0)
    problem = mismatch("p1", expected, stale)
    assert "title" in problem and "price None != 20.0" in problem and "stock 0 != 3" in problem


def test_percentile_is_nearest_rank_and_nan_when_empty():
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50, 99, 100)
    assert percentile([7.0], 99) == 7.0 and percentile([3, 1, 2], 50) == 2
    assert math.isnan(percentile([], 50))


def test_the_summary_line():
    assert summary_line(0, 0, 1234, [10.0, 20.0, 30.0, 900.0]) == (
        "failed=0 lost=0 updates=1234 freshness_p50_ms=20 freshness_p99_ms=900")
    assert summary_line(2, 1, 0, []) == "failed=2 lost=1 updates=0 freshness_p50_ms=nan freshness_p99_ms=nan"
