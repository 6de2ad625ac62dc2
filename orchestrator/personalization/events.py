"""Feedback events (a view, click, add-to-cart or purchase of one product by one user) and their validation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.errors import InvalidEvent

EVENT_TYPES = ("view", "click", "cart", "purchase")
MAX_ID_BYTES = 256
MAX_QUANTITY = 10_000
MAX_QUERY_CHARS = 1000
MAX_REQUEST_ID_CHARS = 64
MAX_POSITION = 1000  # an answer's largest top_k


@dataclass(frozen=True)
class Event:
    """One thing a user did with a product."""

    event_id: str
    user_id: str
    product_id: str
    type: str  # one of EVENT_TYPES
    time: float  # unix seconds
    query: str = ""
    quantity: int = 1
    category: str = ""  # the product's catalog category, filled in by the service before storing
    request_id: str = ""  # the answer that showed the product (SearchResponse.request_id), when the sender knows it
    position: int = 0  # its 1-based position in that answer; 0: not given


# What a profile store keeps of an event; request_id and position only join it to the answer it came from
# (orchestrator/experiments), which the impression log records.
STORED_FIELDS = ("event_id", "user_id", "product_id", "type", "time", "query", "quantity", "category")


def validate(event: Event, known_product: Callable[[str], bool], now: float, max_future_s: float = 300.0,
             latest: float | None = None) -> None:
    """Raise InvalidEvent, saying what is wrong, unless the event can be recorded as sent. `now` is the service's
    wall clock; `latest` (when later) the latest time it read before it stepped back: an event is in the future only
    past that."""
    label = f"event {event.event_id[:64]!r}"
    for field in ("event_id", "user_id", "product_id"):
        value = getattr(event, field)
        if not value or not value.strip():
            raise InvalidEvent(f"{label}: {field} is missing")
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as error:
            raise InvalidEvent(f"{label}: {field} is not valid Unicode ({error.reason})") from None
        if size > MAX_ID_BYTES:
            raise InvalidEvent(f"{label}: {field} is {size} bytes in UTF-8, over {MAX_ID_BYTES}")
    if event.type not in EVENT_TYPES:
        raise InvalidEvent(f"{label}: type {event.type!r} is not one of {', '.join(EVENT_TYPES)}")
    if not known_product(event.product_id):
        raise InvalidEvent(f"{label}: product {event.product_id!r} is not in the catalog")
    if not event.time > 0:  # also rejects NaN
        raise InvalidEvent(f"{label}: time is missing (got {event.time!r}; unix seconds expected)")
    latest = now if latest is None else max(now, latest)
    if event.time > latest + max_future_s:
        stepped_back = f" past {latest:.0f}, the latest time this service read before its clock stepped back" \
            if latest > now else ""
        raise InvalidEvent(f"{label}: time {event.time} is {event.time - now:.0f} s in the future "
                           f"(at most {max_future_s:.0f} s allowed{stepped_back})")
    if not 1 <= event.quantity <= MAX_QUANTITY:
        raise InvalidEvent(f"{label}: quantity {event.quantity} is outside 1..{MAX_QUANTITY}")
    if len(event.query) > MAX_QUERY_CHARS:
        raise InvalidEvent(f"{label}: query is {len(event.query)} characters, over {MAX_QUERY_CHARS}")
    if len(event.request_id) > MAX_REQUEST_ID_CHARS or not event.request_id.isprintable():
        raise InvalidEvent(f"{label}: request_id must be at most {MAX_REQUEST_ID_CHARS} printable characters "
                           "(the SearchResponse's request_id)")
    if not 0 <= event.position <= MAX_POSITION:
        raise InvalidEvent(f"{label}: position {event.position} is outside 1..{MAX_POSITION} (0 or unset: unknown)")
