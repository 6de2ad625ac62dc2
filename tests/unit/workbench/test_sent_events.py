"""The events the workbench sent, per shopper: what the page lists as the shopper's recent events."""

from workbench.events import KEPT_PER_USER, SentEvent, SentEvents


def event(at: float, product: str = "D1") -> SentEvent:
    return SentEvent(at=at, kind="click", product_id=product, title="t", query="q", position=1)


def test_a_shopper_s_events_newest_first_per_server_and_bounded():
    events = SentEvents()
    for second in range(KEPT_PER_USER + 5):
        events.add("a:1", "alice", event(float(second)))
    events.add("a:1", "bob", event(1000.0))
    events.add("b:2", "carol", event(2000.0))
    alice = events.of("a:1", "alice")
    assert len(alice) == KEPT_PER_USER and alice[0].at == KEPT_PER_USER + 4
    assert events.of("b:2", "alice") == []
    assert events.users("a:1") == ["bob", "alice"]
