"""The catalog in a real Milvus Lite server (started by LocalMilvus on a free port): writes seen at once by another
connection, filters that hostile strings cannot escape, generations behind the shop's alias, and acknowledged writes
that outlive `kill -9` of the server."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from core.catalog import Product
from core.errors import ConfigError, InvalidRequest
from orchestrator.filters import Filter
from orchestrator.catalog.milvus import (DENSE, MULTILINGUAL, CatalogRecord, CatalogStoreError, CatalogUnavailable,
                                         CollectionSpec, MilvusCatalog, filter_expression)
from orchestrator.catalog.milvus_process import LocalMilvus, milvus_endpoint

pytestmark = pytest.mark.integration

RNG = np.random.default_rng(23)


def unit(dim: int) -> np.ndarray:
    vector = RNG.standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def record(product_id: str, title: str, stock: int = 3, **fields) -> CatalogRecord:
    return CatalogRecord(Product(product_id, title, **fields), stock, unit(384), unit(512))


CATALOG = [
    record("p1", "Cordless drill with two batteries", brand="DeWalt", category="Power Tools", price=129.0),
    record("p2", "Claw hammer, fiberglass handle", brand="Estwing", category="Hand Tools", price=24.5),
    record("p3", "Interior paint, eggshell white", brand="BEHR", category="Paint", price=None, stock=0),
]


@pytest.fixture(scope="module")
def milvus(tmp_path_factory):
    """A server of this module's own, not conftest's shared one: a test here kills it with SIGKILL."""
    server = LocalMilvus(tmp_path_factory.mktemp("milvus"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def catalog(milvus, request):
    """A fresh shop of its own (named after the test), holding CATALOG."""
    shop = request.node.name.replace("_", "-").lower()[:60]
    store = MilvusCatalog(milvus.url, shop)
    try:
        store.drop_all()
        store.ensure()
        store.upsert(CATALOG)
        yield store
    finally:
        store.close()


def test_an_upsert_is_found_at_once_through_another_connection(milvus, catalog):
    replica = MilvusCatalog(milvus.url, catalog.shop)
    try:
        new = record("p4", "Stainless steel cordless kettle", brand="Cuisinart", category="Kitchen", price=59.0)
        catalog.upsert([new])  # acknowledged: no wait, no flush before reading it elsewhere
        lexical = replica.lexical("kettles", 10)  # the english analyzer stems
        assert lexical.ids[0] == "p4" and lexical.scores[0] > 0
        dense = replica.dense(DENSE, new.dense, 1)
        assert dense.ids == ["p4"] and dense.scores[0] == pytest.approx(1.0, abs=1e-5)
        assert replica.dense(MULTILINGUAL, new.multilingual, 1).ids == ["p4"]
        assert replica.count() == 4
        [stored] = replica.get(["p4"])
        assert stored.product == new.product and stored.stock == 3
    finally:
        replica.close()


def test_candidates_found_elsewhere_are_scored_exactly(catalog):
    assert catalog.lexical_scores_of("cordless drill", ["p2", "missing", "p1"]).tolist() == \
        pytest.approx([0.0, 0.0, float(catalog.lexical("cordless drill", 1).scores[0])])
    vectors = catalog.vectors_of(MULTILINGUAL, ["p3", "missing", "p1"])
    np.testing.assert_allclose(vectors[0], CATALOG[2].multilingual, atol=1e-6)
    assert not vectors[1].any()
    np.testing.assert_allclose(vectors[2], CATALOG[0].multilingual, atol=1e-6)


def test_a_price_change_is_seen_at_once_and_keeps_the_vectors(catalog):
    before = catalog.vectors_of(DENSE, ["p1"])
    assert catalog.update_fields({"p1": {"price": 99.0, "stock": 0}, "missing": {"stock": 1}}) == ["missing"]
    [stored] = catalog.get(["p1"])
    assert stored.product.price == 99.0 and stored.stock == 0
    assert stored.product.title == CATALOG[0].product.title
    np.testing.assert_array_equal(catalog.vectors_of(DENSE, ["p1"]), before)
    assert catalog.lexical("drill", 5).ids == ["p1"]  # the text (and its BM25 terms) survived the rewrite
    cheap = filter_expression([Filter("price", max=100)])
    assert set(catalog.dense(DENSE, CATALOG[0].dense, 5, cheap).ids) == {"p1", "p2"}
    assert "p1" not in catalog.dense(DENSE, CATALOG[0].dense, 5, filter_expression(in_stock=True)).ids


def test_a_delete_hides_the_product_from_every_read(catalog):
    catalog.delete(["p2", "never-stored"])
    assert catalog.get(["p2"]) == []
    assert "p2" not in catalog.lexical("hammer", 5).ids
    assert "p2" not in catalog.dense(DENSE, CATALOG[1].dense, 5).ids
    assert catalog.count() == 2


def test_filters_match_exactly_and_hostile_values_stay_literals(catalog):
    weird = 'We"ird\\Cat'
    catalog.upsert([record("q1", "Drill bit set", category=weird), record("q2", "Drill press", category="we"),
                    record("q3", "Drill case", category='" or product_id != "')])
    keep = filter_expression([Filter("category", any_of=(weird.upper(),))])
    assert catalog.lexical("drill", 10, keep).ids == ["q1"]
    assert catalog.dense(DENSE, CATALOG[0].dense, 10, keep).ids == ["q1"]
    escape = filter_expression([Filter("category", any_of=('" or product_id != "',))])
    assert catalog.lexical("drill", 10, escape).ids == ["q3"]
    assert catalog.get(['p1" or product_id != "']) == []  # ids are literals too
    priced = filter_expression([Filter("price", min=0)])  # p3 has no price: it passes no price filter
    assert set(catalog.dense(DENSE, CATALOG[2].dense, 10, priced).ids) == {"p1", "p2"}
    brands = filter_expression([Filter("brand", any_of=("dewalt", "BEHR"))], in_stock=True)
    assert catalog.lexical("drill paint", 10, brands).ids == ["p1"]


@pytest.mark.parametrize("product_id", ["men's-shirt", "'", "x') OR ('1'='1"])
def test_a_product_id_with_an_apostrophe_is_stored_read_searched_written_again_and_deleted(milvus, catalog,
                                                                                          product_id):
    # Milvus Lite 2.5.1 quotes the keys it deletes (and upserts) in an SQLite statement without escaping them: such
    # a key failed every upsert, and the crafted one deleted every row of the collection from its store.
    new = record(product_id, "Quokkabrite flannel shirt", brand="Quokka", category="Shirts", price=30.0)
    catalog.upsert([new])
    catalog.upsert([new])  # a second write replaces the first (a delete, then an insert)
    assert [item.product for item in catalog.get([product_id])] == [new.product]
    assert catalog.lexical("flannel", 5).ids == [product_id]
    assert catalog.dense(DENSE, new.dense, 1).ids == [product_id]
    assert catalog.lexical_scores_of("flannel", [product_id, "p1"])[0] > 0
    assert catalog.similarities(DENSE, new.dense, [product_id])[0] == pytest.approx(1.0, abs=1e-5)
    assert catalog.update_fields({product_id: {"stock": 0}}) == []
    assert [item.product.product_id for batch, _ in catalog.scan() for item in batch].count(product_id) == 1
    assert catalog.count() == 4
    catalog.delete([product_id])
    assert catalog.get([product_id]) == [] and catalog.count() == 3
    reopened = MilvusCatalog(milvus.url, catalog.shop)  # what the store holds, not only the server's memory
    try:
        assert sorted(item.product.product_id for item in reopened.get(["p1", "p2", "p3"])) == ["p1", "p2", "p3"]
    finally:
        reopened.close()


@pytest.mark.parametrize("product_id", ["fuzz\x01bad", "tab\tid", "x\ue027"])
def test_an_id_the_catalog_cannot_hold_is_refused_on_write_and_not_found_on_read(catalog, product_id):
    with pytest.raises(InvalidRequest, match="product_id holds"):
        catalog.upsert([record(product_id, "Wombatine camping plate")])
    assert catalog.get([product_id, "p1"])[0].product.product_id == "p1"
    assert catalog.lexical_scores_of("drill", [product_id]).tolist() == [0.0]
    catalog.delete([product_id])  # not stored: ignored


def test_a_rebuild_goes_live_by_switching_the_alias_and_can_switch_back(milvus, catalog):
    reader = MilvusCatalog(milvus.url, catalog.shop)
    try:
        assert reader.live_generation() == 1
        number = catalog.create_generation(CollectionSpec(index_type="FLAT", analyzer="standard"))
        assert number == 2 and reader.live_generation() == 1
        assert catalog.generation(2).lexical("drill", 5).ids == []  # BM25 over no documents: nothing, not an error
        catalog.generation(2).upsert([record("n1", "Cordless drill, new generation")])
        assert reader.count() == 3  # still generation 1
        catalog.switch_alias(2)
        assert reader.count() == 1 and reader.lexical("drill", 5).ids == ["n1"]
        assert reader.spec.index_type == "FLAT"
        catalog.upsert([record("n2", "Written after the switch")])  # writes follow the alias too
        assert catalog.generation(2).count() == 2 and catalog.generation(1).count() == 3
        catalog.switch_alias(1)
        assert reader.lexical("drill", 5).ids == ["p1"]
        assert [(item.number, item.live) for item in reader.generations()] == [(1, True), (2, False)]
        with pytest.raises(Exception, match="live"):
            catalog.drop_generation(1)
        catalog.drop_generation(2)
        assert [item.number for item in reader.generations()] == [1]
    finally:
        reader.close()


def test_a_shop_without_a_catalog_says_so(milvus):
    store = MilvusCatalog(milvus.url, "no-such-shop")
    try:
        with pytest.raises(CatalogStoreError, match="no-such-shop"):
            store.lexical("drill", 5)
    finally:
        store.close()


CRAFTED = "x') OR ('1'='1"


def test_acknowledged_writes_outlive_kill_9_of_the_server(tmp_path):
    server = LocalMilvus(tmp_path / "milvus")
    try:
        server.start()
        with pytest.raises(ConfigError, match="in use"):
            LocalMilvus(tmp_path / "milvus").start()  # one server per data directory
        store = MilvusCatalog(server.url, "durable", timeout_s=3.0)
        store.ensure()
        store.upsert(CATALOG)
        store.update_fields({"p1": {"price": 1.0}})
        store.delete(["p2"])
        store.upsert([record("p5", "Acknowledged just before the crash")])
        # Milvus Lite quotes deleted keys unescaped in SQLite: this id once deleted every row from the store, unseen
        # until the server started again (see milvus.py's APOSTROPHE_KEY).
        store.upsert([record(CRAFTED, "Crafted key")])
        store.upsert([record(CRAFTED, "Crafted key, again")])
        os.kill(server.pid, signal.SIGKILL)  # right after the acknowledgement
        deadline = time.monotonic() + 10
        while server.exit_code is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.exit_code == -signal.SIGKILL
        with pytest.raises(CatalogUnavailable):
            store.count()
        server.start()  # same port, same data directory
        assert store.count() == 4  # the same client reconnects
        assert [item.product.product_id for item in store.get(["p1", "p2", "p3", "p5", CRAFTED])] == \
            ["p1", "p3", "p5", CRAFTED]
        assert store.get(["p1"])[0].product.price == 1.0
        assert store.lexical("crash", 5).ids == ["p5"]
        store.close()
    finally:
        server.stop()


def test_milvus_endpoint_starts_a_server_only_without_a_url(tmp_path):
    with milvus_endpoint("http://milvus.example:19530", tmp_path) as url:
        assert url == "http://milvus.example:19530"
    assert not any(tmp_path.iterdir())
    with milvus_endpoint("", tmp_path / "data") as url:
        store = MilvusCatalog(url, "endpoint")
        try:
            assert store.ensure() == 1
        finally:
            store.close()
