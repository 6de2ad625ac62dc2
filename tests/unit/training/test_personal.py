"""training.personal: reading users' orders, the replay's times, and the purchase-count reference ranking."""

from __future__ import annotations

from collections import Counter

import pytest

from core.catalog import Product
from core.errors import DataError
from training.personal import DAY, LoggedEvent, UserHistory, load_histories, purchase_count_order, replay_messages

EVENTS = """user_id,order_id,day,product_id,event
u1,o1,0,a,purchase
u1,o1,0,b,purchase
u2,o9,0,a,purchase
u1,o2,7,a,purchase
u1,o2,7,c,view
u1,o3,9,b,purchase
u1,o3,9,d,purchase
"""


def test_the_last_order_is_held_out_and_the_past_kept_in_order(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(EVENTS)
    histories = load_histories(path)
    u1 = histories["u1"]
    assert [(e.product_id, e.day) for e in u1.past] == [("a", 0), ("b", 0), ("a", 7), ("c", 7)]
    assert [e.product_id for e in u1.last_order] == ["b", "d"]
    categories = {"a": "fruit", "b": "fruit", "c": "dairy", "d": "bread"}
    assert u1.queries(categories) == [("fruit", {"b"}), ("bread", {"d"})]
    assert histories["u2"].past == [] and [e.product_id for e in histories["u2"].last_order] == ["a"]


def test_without_order_ids_a_day_is_an_order(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,day,product_id,event\nu,0,a,purchase\nu,3,b,purchase\nu,3,c,purchase\n")
    history = load_histories(path)["u"]
    assert [e.product_id for e in history.last_order] == ["b", "c"]


@pytest.mark.parametrize("row, message", [("u,o,x,a,purchase", "day"), ("u,o,1,a,bought", "event"), (",o,1,a,view", "empty")])
def test_bad_rows_are_named_by_line(tmp_path, row, message):
    path = tmp_path / "events.csv"
    path.write_text("user_id,order_id,day,product_id,event\n" + row + "\n")
    with pytest.raises(DataError, match=f"line 2.*{message}"):
        load_histories(path)


def test_replayed_times_put_the_last_order_today_and_keep_days_whole(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(EVENTS)
    history = load_histories(path)["u1"]
    now = 1_700_000_000.0 + 5000.0
    messages = replay_messages(history, now)
    times = [m.time.ToNanoseconds() / 1e9 for m in messages]
    today = (now // DAY) * DAY
    assert [int(t // DAY) for t in times] == [int(today // DAY) - 9] * 2 + [int(today // DAY) - 2] * 2
    assert times == sorted(times) and max(times) <= now
    assert len({m.event_id for m in messages}) == len(messages)


def test_purchase_count_order_breaks_ties_by_popularity():
    products = [Product(pid, pid) for pid in ("a", "b", "c", "d")]
    history = UserHistory("u", past=[LoggedEvent(line, pid, "purchase", 0, "o1") for line, pid in enumerate("ccb")])
    assert purchase_count_order(history, products, Counter({"d": 5, "a": 1})) == ["c", "b", "d", "a"]
