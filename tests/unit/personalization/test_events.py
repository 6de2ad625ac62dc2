"""validate: each rule a feedback event must pass before it is stored."""

from __future__ import annotations

import dataclasses
import math

import pytest

from core.errors import InvalidEvent
from orchestrator.personalization.events import Event, validate

NOW = 1_700_000_000.0
CATALOG = {"p1", "p2"}


def event(**changes) -> Event:
    return dataclasses.replace(Event("e1", "u1", "p1", "click", NOW - 60, query="cordless drill"), **changes)


def check(candidate: Event, known=CATALOG.__contains__, max_future_s: float = 300.0) -> None:
    validate(candidate, known, NOW, max_future_s)


def test_valid_events_pass():
    check(event())
    check(event(type="purchase", quantity=10_000, time=NOW + 300, query="q" * 1000, category="power tools"))


@pytest.mark.parametrize("field", ["event_id", "user_id", "product_id"])
@pytest.mark.parametrize("value", ["", "   "])
def test_a_missing_id_is_rejected(field, value):
    with pytest.raises(InvalidEvent, match=f"{field} is missing"):
        check(event(**{field: value}))


@pytest.mark.parametrize("field", ["event_id", "user_id", "product_id"])
def test_ids_are_limited_to_256_bytes_of_utf8(field):
    check(event(**{field: "a" * 256}), known=lambda product_id: True)
    check(event(**{field: "鑽" * 85}), known=lambda product_id: True)  # 255 bytes
    for value, size in [("a" * 257, 257), ("鑽" * 100, 300)]:  # 100 characters, 300 bytes
        with pytest.raises(InvalidEvent, match=f"{field} is {size} bytes in UTF-8, over 256"):
            check(event(**{field: value}), known=lambda product_id: True)


def test_an_id_that_is_not_unicode_is_rejected():
    with pytest.raises(InvalidEvent, match="user_id is not valid Unicode"):
        check(event(user_id="u\ud800"))


@pytest.mark.parametrize("type_", ["like", "Click", ""])
def test_an_unknown_type_is_rejected(type_):
    with pytest.raises(InvalidEvent, match="is not one of view, click, cart, purchase"):
        check(event(type=type_))


def test_an_unknown_product_is_rejected():
    with pytest.raises(InvalidEvent, match="product 'p9' is not in the catalog"):
        check(event(product_id="p9"))


@pytest.mark.parametrize("time", [0.0, -1.0, math.nan])
def test_a_missing_time_is_rejected(time):
    with pytest.raises(InvalidEvent, match="time is missing"):
        check(event(time=time))


def test_a_time_too_far_in_the_future_is_rejected():
    with pytest.raises(InvalidEvent, match="301 s in the future"):
        check(event(time=NOW + 301))
    with pytest.raises(InvalidEvent, match="in the future"):
        check(event(time=math.inf))
    check(event(time=NOW + 5))
    with pytest.raises(InvalidEvent, match="at most 0 s allowed"):
        check(event(time=NOW + 5), max_future_s=0)


def test_after_the_clock_steps_back_an_event_is_in_the_future_only_past_the_latest_time_read():
    validate(event(time=NOW + 3600), CATALOG.__contains__, NOW, 300.0, latest=NOW + 3600)
    with pytest.raises(InvalidEvent, match=r"is 3901 s in the future \(at most 300 s allowed past 1700003600, the "
                                           r"latest time this service read before its clock stepped back\)"):
        validate(event(time=NOW + 3901), CATALOG.__contains__, NOW, 300.0, latest=NOW + 3600)
    with pytest.raises(InvalidEvent, match=r"301 s in the future \(at most 300 s allowed\)"):
        validate(event(time=NOW + 301), CATALOG.__contains__, NOW, 300.0, latest=NOW - 60)  # never behind now


@pytest.mark.parametrize("quantity", [0, -1, 10_001])
def test_an_absurd_quantity_is_rejected(quantity):
    with pytest.raises(InvalidEvent, match=f"quantity {quantity} is outside 1..10000"):
        check(event(type="purchase", quantity=quantity))


def test_a_query_over_1000_characters_is_rejected():
    check(event(query="鑽" * 1000))  # characters, not bytes
    with pytest.raises(InvalidEvent, match="query is 1001 characters, over 1000"):
        check(event(query="q" * 1001))
