"""MilvusStore, the search path's view of a shop's catalog in a real Milvus Lite server: what a search reads (the
retrievers' top k, stock, scripts, vectors), changes seen at the next call, and what is built from the whole catalog
(products for the spelling vocabulary, intent prototypes) followed on refresh."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from core.catalog import Product
from orchestrator.catalog.milvus import CatalogRecord, CollectionSpec, MilvusCatalog
from orchestrator.catalog.milvus_store import MilvusStore

pytestmark = pytest.mark.integration

RNG = np.random.default_rng(7)
PHONE, TEA = np.eye(512, dtype=np.float32)[0], np.eye(512, dtype=np.float32)[1]


def record(product_id: str, title: str, category: str, direction: np.ndarray, stock: int = 2) -> CatalogRecord:
    multilingual = direction + 0.05 * RNG.standard_normal(512).astype(np.float32)
    dense = RNG.standard_normal(384).astype(np.float32)
    return CatalogRecord(Product(product_id, title, category=category), stock, dense / np.linalg.norm(dense),
                         multilingual / np.linalg.norm(multilingual))


PRODUCTS = ([record(f"phone{i}", f"Voltra smartphone model {i}", "Phones", PHONE) for i in range(4)]
            + [record(f"tea{i}", f"Green tea tin {i}", "Tea", TEA) for i in range(4)]
            + [record("cn1", "星耀 5G手机", "Phones", PHONE), record("gone", "Voltra smartphone sold out", "Phones",
                                                                    PHONE, stock=0)])


@pytest.fixture
def shop(milvus):
    writer = MilvusCatalog(milvus.url, "store-test")
    writer.drop_all()
    writer.ensure(CollectionSpec(dense_version="1", multilingual_version="1", source="test"))
    writer.upsert(PRODUCTS)
    try:
        yield writer
    finally:
        writer.drop_all()
        writer.close()


def test_a_search_reads_the_retrievers_stock_and_scripts_from_milvus(milvus, shop):
    async def scenario():
        store = await MilvusStore.open(milvus.url, "store-test")
        try:
            hits = await store.lexical("smartphones", 10)  # stemmed as the in-process index does
            in_stock = await store.lexical("smartphones", 10, in_stock=True)
            nearest = await store.nearest("multilingual", PHONE, 3, in_stock=True)
            entries = await store.fetch(["cn1", "tea0", "missing", "gone"], ("dense",))
            scores = await store.lexical_scores("green tea", ["tea1", "phone1"])
            return store, hits, in_stock, nearest, entries, scores
        finally:
            store.close()

    store, hits, in_stock, nearest, entries, scores = asyncio.run(scenario())
    assert store.encoder_versions == {"bi_encoder": "1", "multilingual_encoder": "1"}
    assert "gone" in hits.ids and "gone" not in in_stock.ids and len(in_stock.ids) == 4
    assert all(pid.startswith(("phone", "cn")) for pid in nearest.ids)
    assert entries.ids == ["cn1", "tea0", "gone"] and entries.cjk.tolist() == [True, False, False]
    assert entries.stock.tolist() == [2, 2, 0] and entries.vectors["dense"].shape == (3, 384)
    assert scores[0] > 0 and scores[1] == 0
    assert store.intent is not None and set(store.intent.categories) == {"Phones", "Tea"}


def test_a_change_is_read_by_the_next_call_and_the_whole_catalog_follows_on_refresh(milvus, shop):
    async def scenario():
        store = await MilvusStore.open(milvus.url, "store-test")
        try:
            assert not await store.refresh()  # nothing changed
            shop.upsert([record("kettle1", "Gooseneck kettle", "Kettles", TEA)])
            found = await store.lexical("kettle", 5)  # at once, before any refresh
            before = {product.product_id for product in store.all_products()}
            changed = await store.refresh()
            return found, before, changed, {product.product_id for product in store.all_products()}
        finally:
            store.close()

    found, before, changed, after = asyncio.run(scenario())
    assert found.ids == ["kettle1"]
    assert "kettle1" not in before and changed and "kettle1" in after


def test_a_switch_to_another_generation_is_read_within_a_second_with_its_encoder_versions(milvus, shop):
    async def scenario():
        store = await MilvusStore.open(milvus.url, "store-test")
        try:
            first = (store.version, store.encoder_versions)
            number = shop.create_generation(CollectionSpec(dense_version="2", multilingual_version="1",
                                                           source="rebuilt"))
            shop.generation(number).upsert([record("new1", "Brand new kettle", "Kettles", TEA)])
            shop.switch_alias(number)
            await asyncio.sleep(1.2)  # reads take the alias as read up to a second ago
            await store.follow()  # what a service does every second
            second = (store.version, store.encoder_versions, (await store.lexical("kettle", 5)).ids)
            shop.switch_alias(number - 1)  # and back
            await asyncio.sleep(1.2)
            await store.follow()
            return first, second, store.encoder_versions
        finally:
            store.close()

    first, second, back = asyncio.run(scenario())
    assert first[1] == back == {"bi_encoder": "1", "multilingual_encoder": "1"}
    assert second[1] == {"bi_encoder": "2", "multilingual_encoder": "1"} and second[2] == ["new1"]
    assert first[0].endswith("/g1") and second[0].endswith("/g2")
