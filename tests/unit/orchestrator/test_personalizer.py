"""orchestrator.personalization.personalizer on a tiny in-memory index and a real SQLite store (no Triton).

The end-to-end behaviour (gRPC, Triton, both stores) is in tests/integration/test_personalization.py; these pin
down which candidates the blend sees and how it orders and explains them.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from core.catalog import Product
from core.errors import InvalidEvent
from core.personal_blend import BIAS_COMPONENT, BLEND_FEATURES, FEATURE_GROUPS
from core.settings import Settings
from orchestrator.catalog.memory import MemoryCatalog
from orchestrator.catalog.store import Entries
from orchestrator.fusion import Fused, fuse
from orchestrator.personalization.blend import BlendModel
from orchestrator.personalization.events import Event
from orchestrator.personalization.personalizer import NeverBack, Personalizer, user_key
from orchestrator.personalization.store import open_store

PRODUCTS = [Product(f"p{i}", f"Product {i}", category="A" if i < 6 else "B", brand=f"brand{i % 3}") for i in range(10)]
NOW = 1_700_000_000.0


def linear_blend(directory, weights: dict[str, float]) -> BlendModel:
    """A linear blend whose score is the sum of the given features' raw values (NaN as 0), plus 0.5."""
    spec = {"weights": {name: weights.get(name, 0.0) for name in BLEND_FEATURES},
            "fill": dict.fromkeys(BLEND_FEATURES, 0.0), "mean": dict.fromkeys(BLEND_FEATURES, 0.0),
            "std": dict.fromkeys(BLEND_FEATURES, 1.0), "log1p": [], "bias": 0.5}
    (directory / "linear.json").write_text(json.dumps(spec))
    (directory / "manifest.json").write_text(json.dumps({"kind": "linear", "version": 3, "model_file": "linear.json",
                                                         "features": list(BLEND_FEATURES), "groups": FEATURE_GROUPS}))
    return BlendModel.load(directory)


@pytest.fixture
def setup(make_index, tmp_path):
    def build(blend: BlendModel | None, blend_depth: int = 3):
        store = open_store(f"sqlite:///{tmp_path / 'profiles.db'}")
        asyncio.run(store.start())
        index = make_index(PRODUCTS)
        settings = Settings(blend_depth=blend_depth)
        return Personalizer(store, MemoryCatalog(index), blend, settings, clock=lambda: NOW), index

    return build


def relevance_order(index) -> Fused:
    """Every product a candidate, by a descending score in id order: p0 first."""
    rows = np.arange(len(PRODUCTS))
    return fuse(rows, {"bm25": np.linspace(10, 1, len(rows))}, "weighted")


def every_product(personalizer: Personalizer) -> Entries:
    """The whole catalog as the candidates, in catalog order: candidate positions are catalog rows."""
    return asyncio.run(personalizer.catalog.fetch([product.product_id for product in PRODUCTS], ("dense",)))


def purchase(user: str, product: str, days_ago: float, event_id: str) -> Event:
    return Event(event_id, user, product, "purchase", NOW - days_ago * 86400)


def test_the_blend_sees_the_head_and_the_users_own_products_further_down(setup, tmp_path):
    personalizer, index = setup(linear_blend(tmp_path, {"user_purchases": 1.0}), blend_depth=3)
    asyncio.run(personalizer.record([purchase("u", "p8", 10, "e1"), purchase("u", "p8", 5, "e2")]))
    profile = asyncio.run(personalizer.profile("u"))
    pool = relevance_order(index)
    blended = asyncio.run(personalizer.blend(every_product(personalizer), pool, pool, profile))
    ids = [index.products[row].product_id for row in blended.rows]
    assert ids[0] == "p8"  # bought twice, from rank 9 to the top
    assert sorted(ids) == ["p0", "p1", "p2", "p8"]  # the head of 3 and the user's own product, nothing else


def test_group_weights_scale_contributions_and_the_explanation_sums_to_the_score(setup, tmp_path):
    personalizer, index = setup(linear_blend(tmp_path, {"user_purchases": 1.0, "relevance": 0.1}), blend_depth=3)
    asyncio.run(personalizer.record([purchase("u", "p8", 10, "e1")]))
    profile = asyncio.run(personalizer.profile("u"))
    pool = relevance_order(index)
    blended = asyncio.run(personalizer.blend(every_product(personalizer), pool, pool, profile, {"preference": 0.0}, explain=True))
    assert index.products[blended.rows[0]].product_id == "p0"  # preference off: relevance decides
    blend_parts = [c for c in blended.components if ":" in c.name]
    total = np.sum([c.contribution for c in blend_parts], axis=0)
    assert total == pytest.approx(blended.scores)
    by_name = {c.name: c for c in blended.components}
    assert np.all(by_name["preference:user_purchases"].contribution == 0)
    assert by_name[BIAS_COMPONENT].contribution[0] == pytest.approx(0.5)
    assert by_name["bm25"].contribution.sum() == 0  # relevance components explain the input, add nothing


def test_without_a_blend_model_the_relevance_order_is_kept_and_features_explained(setup):
    personalizer, index = setup(None, blend_depth=3)
    asyncio.run(personalizer.record([purchase("u", "p8", 10, "e1")]))
    profile = asyncio.run(personalizer.profile("u"))
    pool = relevance_order(index)
    blended = asyncio.run(personalizer.blend(every_product(personalizer), pool, pool, profile, explain=True))
    assert [index.products[row].product_id for row in blended.rows] == ["p0", "p1", "p2", "p8"]
    purchases = {c.name: c for c in blended.components}["preference:user_purchases"]
    assert purchases.raw.tolist() == [0, 0, 0, 1] and np.all(purchases.contribution == 0)


def test_cold_start_users_have_no_profile(setup):
    personalizer, _ = setup(None)
    assert asyncio.run(personalizer.profile("nobody")) is None


def test_recorded_events_carry_their_products_category_and_bad_ones_are_refused(setup):
    personalizer, _ = setup(None)
    asyncio.run(personalizer.record([purchase("u", "p7", 1, "e1")]))
    [stored] = asyncio.run(personalizer.store.user_events("u"))
    assert stored.category == "B"
    with pytest.raises(InvalidEvent, match="not in the catalog"):
        asyncio.run(personalizer.record([purchase("u", "nope", 1, "e2")]))
    with pytest.raises(InvalidEvent, match="future"):
        asyncio.run(personalizer.record([Event("e3", "u", "p1", "click", NOW + 3600)]))
    assert len(asyncio.run(personalizer.store.user_events("u"))) == 1


def test_a_batch_of_events_is_checked_with_one_catalog_read_each_bad_one_named_in_place(setup):
    personalizer, _ = setup(None)
    reads = []
    fetch = personalizer.catalog.fetch

    async def counted(ids, vector_fields=()):
        reads.append(list(ids))
        return await fetch(ids, vector_fields)

    personalizer.catalog.fetch = counted
    events = [purchase("u", "p7", 1, "e1"), purchase("u", "nope", 1, "e2"), Event("e3", "u", "p1", "click", NOW + 3600),
              Event("e4", "", "p1", "click", NOW), purchase("u", "p7", 2, "e5"), purchase("u", "p1", 2, "e6")]
    checked = asyncio.run(personalizer.check_all(events))
    assert reads == [["p7", "nope", "p1"]]  # once, each product once, none for the malformed event
    assert [item.category if isinstance(item, Event) else type(item).__name__ for item in checked] == \
        ["B", "InvalidEvent", "InvalidEvent", "InvalidEvent", "B", "A"]
    assert "not in the catalog" in str(checked[1]) and "future" in str(checked[2]) and "user_id" in str(checked[3])
    assert asyncio.run(personalizer.check_all([])) == [] and len(reads) == 1  # nothing to read


def test_the_time_an_event_may_reach_never_goes_back_with_the_wall_clock():
    steady = [100.0]
    never_back = NeverBack(monotonic=lambda: steady[0])
    assert never_back(NOW) == NOW
    steady[0] += 10
    assert never_back(NOW + 10) == NOW + 10  # the wall clock moving on, as it should
    steady[0] += 5
    assert never_back(NOW + 15 - 3600) == NOW + 15  # stepped back an hour: the highest time read, moved on 5 s
    steady[0] += 5
    assert never_back(NOW + 7200) == NOW + 7200  # stepped forward: taken at once
    steady[0] += 1
    assert never_back(NOW) == NOW + 7201


def test_user_key_is_a_keyed_hash_that_hides_the_id():
    assert user_key("alice", b"k1") == user_key("alice", b"k1")
    assert user_key("alice", b"k1") != user_key("alice", b"k2")
    assert "alice" not in user_key("alice", b"k1")


def test_the_most_bought_candidates_further_down_join_the_blend(setup, tmp_path):
    personalizer, index = setup(linear_blend(tmp_path, {"popularity": 1.0}), blend_depth=3)
    others = [purchase(f"other{i}", "p9", 3, f"o{i}") for i in range(3)] + [purchase("other9", "p6", 3, "o9")]
    asyncio.run(personalizer.record(others + [purchase("u", "p1", 10, "e1")]))
    profile = asyncio.run(personalizer.profile("u"))
    pool = relevance_order(index)
    personalizer.settings = Settings(blend_depth=3, popular_depth=1)
    blended = asyncio.run(personalizer.blend(every_product(personalizer), pool, pool, profile))
    ids = [index.products[row].product_id for row in blended.rows]
    assert ids[0] == "p9"  # bought by three users: the most popular candidate, from rank 10
    assert sorted(ids) == ["p0", "p1", "p2", "p9"]  # p6, bought once, is past popular_depth


def test_popularity_is_read_once_then_refreshed_in_the_background_after_new_events(setup):
    personalizer, index = setup(None)

    async def scenario():
        await personalizer.record([purchase("a", "p9", 3, "e1"), purchase("a", "p9", 2, "e2")])
        first = await personalizer.popularity()  # the first read holds up its caller
        await personalizer.record([purchase("b", "p9", 1, "e3")])
        stale = await personalizer.popularity()  # a search never waits: the last read, and a read started
        await personalizer._refreshing
        return first, stale, await personalizer.popularity()

    first, stale, fresh = asyncio.run(scenario())
    assert first.figures["p9"] == (2, 1)
    assert stale is first
    assert fresh.figures["p9"] == (3, 1)
    assert fresh.category_purchases == {"B": 3.0}


def test_products_that_do_not_match_the_query_carry_no_personal_or_popularity_signal(setup, tmp_path):
    personalizer, index = setup(linear_blend(tmp_path, {"user_purchases": 1.0, "popularity": 1.0}), blend_depth=3)
    others = [purchase(f"other{i}", "p7", 3, f"o{i}") for i in range(3)]
    asyncio.run(personalizer.record(others + [purchase("u", "p8", 10, "e1"), purchase("u", "p1", 10, "e2")]))
    profile = asyncio.run(personalizer.profile("u"))
    pool = relevance_order(index)
    matching = np.ones(len(PRODUCTS), dtype=bool)
    matching[[1, 7, 8]] = False  # the user's p1 in the head, the popular p7 and the user's p8 below it
    blended = asyncio.run(personalizer.blend(every_product(personalizer), pool, pool, profile, explain=True, matching=matching))
    ids = [index.products[row].product_id for row in blended.rows]
    assert sorted(ids) == ["p0", "p1", "p2"]  # neither p7 nor p8 joins; p1 stays, with no signal of its own
    by_name = {c.name: c for c in blended.components}
    p1 = ids.index("p1")
    assert by_name["preference:user_purchases"].raw[p1] == 0 and by_name["popularity:popularity"].raw[p1] == 0
    unmatched = asyncio.run(personalizer.blend(every_product(personalizer), pool, pool, profile, matching=None))
    assert {"p7", "p8"} <= {index.products[row].product_id for row in unmatched.rows}
