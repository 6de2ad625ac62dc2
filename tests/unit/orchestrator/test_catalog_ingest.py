"""orchestrator.catalog.ingest: how a record sent to the catalog API is validated, and what writing it takes (what
is embedded, what only has its fields updated)."""

from __future__ import annotations

import asyncio
import dataclasses
import math

import pytest

from core.catalog import Product
from core.errors import DataError, InvalidRequest
from orchestrator.admin import incoming, to_record
from orchestrator.catalog.ingest import (EMBEDDED_FIELDS, Action, CatalogWriter, IncomingProduct, Plan, plan,
                                       sequential_plans, validate)
from orchestrator.catalog.milvus import EMBEDDING_FREE_FIELDS, CollectionSpec, StockedProduct

SPEC = CollectionSpec()
DRILL = Product("p1", "Cordless drill", description="Two batteries", brand="Kestrel", category="Drills",
                department="Tools", price=129.0, image_url="https://x/p1.jpg", attributes={"colour": "red"})


def record(stock: int | None = 3, attributes: dict | None = None, **fields) -> IncomingProduct:
    values = {"product_id": "p1", "title": "Cordless drill", "price": 129.0, **fields}
    return IncomingProduct(values, attributes or {}, stock)


def stocked(stock: int = 3, **changes) -> StockedProduct:
    return StockedProduct(dataclasses.replace(DRILL, **changes), stock)


# --- Validation -------------------------------------------------------------------------------------------------------


def test_a_record_is_read_as_the_catalog_loader_reads_a_row():
    item = validate(record(title="  Cordless drill ", brand="Kestrel", attributes={"colour": "red", "size": ""}), SPEC)
    assert item == StockedProduct(Product("p1", "Cordless drill", brand="Kestrel", price=129.0,
                                          attributes={"colour": "red"}), 3)


@pytest.mark.parametrize(("sent", "message"), [
    (record(product_id=""), "empty product_id"),
    (record(title=" "), "product 'p1' has an empty title"),
    (record(price=float("nan")), "price 'nan' of product 'p1' is invalid"),
    (record(price=-1.0), "price '-1' of product 'p1' is invalid"),
    (record(attributes={"price": "3"}), "product 'p1': attribute 'price' has the name of a product field"),
])
def test_a_record_the_loader_would_reject_is_rejected_with_its_message(sent, message):
    with pytest.raises(DataError, match=message):
        validate(sent, SPEC)


def test_what_the_collection_cannot_hold_is_rejected_before_anything_is_written():
    with pytest.raises(InvalidRequest, match="stock -1 is not a whole number"):
        validate(record(stock=-1), SPEC)
    with pytest.raises(InvalidRequest, match="title is longer than 4096 bytes"):
        validate(record(title="x" * 5000), SPEC)
    with pytest.raises(InvalidRequest, match="product_id holds a control character"):
        validate(record(product_id="fuzz\x01bad"), SPEC)  # rejected alone, not its batch at the read
    with pytest.raises(InvalidRequest, match="product_id is longer than 512 bytes as stored"):
        validate(record(product_id="'" * 200), SPEC)  # 200 bytes sent, 600 stored
    assert validate(record(product_id="men's-shirt"), SPEC).product.product_id == "men's-shirt"


def test_without_a_stock_a_stock_attribute_is_the_stock_as_in_a_catalog_file_and_never_kept():
    assert validate(record(stock=None), SPEC).stock == 1  # a file without a stock column: in stock
    item = validate(record(stock=None, attributes={"stock": "0", "colour": "red"}), SPEC)
    assert (item.stock, item.product.attributes) == (0, {"colour": "red"})
    assert validate(record(stock=5, attributes={"stock": "0"}), SPEC).stock == 5


# --- What writing a record takes --------------------------------------------------------------------------------------


def test_every_product_field_either_embeds_or_is_updated_alone():
    fields = {item.name for item in dataclasses.fields(Product)} - {"product_id"}
    assert fields == set(EMBEDDED_FIELDS) | set(EMBEDDING_FREE_FIELDS) - {"stock"}
    assert not set(EMBEDDED_FIELDS) & set(EMBEDDING_FREE_FIELDS)


def test_a_new_product_is_embedded():
    assert plan(stocked(), None) == Plan(Action.CREATE)


@pytest.mark.parametrize("change", [{"title": "Cordless drill 20V"}, {"description": "One battery"},
                                    {"brand": "Voltra"}, {"category": "Power tools"}])
def test_a_change_of_what_the_encoders_read_embeds_again(change):
    new = stocked(**change)
    assert new.product.search_text() != DRILL.search_text() or new.product.meaning_text() != DRILL.meaning_text()
    assert plan(new, stocked()).action == Action.REEMBED


def test_a_brand_already_in_the_title_changes_no_text_but_is_still_written_whole():
    stored = stocked(title="Kestrel cordless drill", brand="Kestrel")
    new = stocked(title="Kestrel cordless drill", brand="KESTREL")
    assert new.product.search_text() == stored.product.search_text()
    assert plan(new, stored).action == Action.REEMBED  # update_fields cannot change a brand


def test_price_stock_department_image_and_attributes_change_alone_and_only_what_changed_is_sent():
    assert plan(stocked(stock=0, price=99.0), stocked()) == Plan(Action.UPDATE_FIELDS, {"price": 99.0, "stock": 0})
    assert plan(stocked(price=None), stocked()) == Plan(Action.UPDATE_FIELDS, {"price": None})
    changed = stocked(department="Garden", image_url="", attributes={"colour": "blue"})
    assert plan(changed, stocked()) == Plan(Action.UPDATE_FIELDS, {"department": "Garden", "image_url": "",
                                                                   "attributes": {"colour": "blue"}})


def test_the_same_record_again_writes_nothing():
    assert plan(stocked(), stocked()) == Plan(Action.UNCHANGED)


# --- The API's record <-> the domain ----------------------------------------------------------------------------------


def test_a_stored_product_round_trips_through_the_api_record():
    for item in (stocked(), stocked(stock=0, price=None, attributes={})):
        assert validate(incoming(to_record(item)), SPEC) == item
    assert not to_record(stocked(price=None)).HasField("price")
    assert incoming(to_record(stocked(price=0.0))).fields["price"] == 0.0


# --- A product sent more than once ------------------------------------------------------------------------------------


def test_each_record_is_planned_against_the_one_before_it_and_the_last_is_what_is_stored():
    cheaper, renamed = stocked(price=99.0), stocked(title="Cordless drill, two batteries")
    new = StockedProduct(Product("p2", "Hammer"), 1)
    plans, last = sequential_plans([cheaper, cheaper, new, renamed, new], {"p1": stocked()})
    assert [step.action for step in plans] == [Action.UPDATE_FIELDS, Action.UNCHANGED, Action.CREATE, Action.REEMBED,
                                               Action.UNCHANGED]
    assert last == {"p1": renamed, "p2": new}


class FakeCatalog:
    """What CatalogWriter asks of MilvusCatalog, in memory, counting the reads and writes."""

    shop = "demo"
    spec = SPEC

    def __init__(self, products: list[StockedProduct]) -> None:
        self.products = {item.product.product_id: item for item in products}
        self.reads: list[list[str]] = []
        self.updates: list[dict] = []

    def get(self, ids):
        self.reads.append(list(ids))
        return [self.products[product_id] for product_id in dict.fromkeys(ids) if product_id in self.products]

    def update_fields(self, changes):
        self.updates.append(dict(changes))
        for product_id, fields in changes.items():
            item = self.products[product_id]
            self.products[product_id] = StockedProduct(dataclasses.replace(item.product, price=fields.get(
                "price", item.product.price)), fields.get("stock", item.stock))
        return []


def test_a_feed_repeating_a_product_reads_and_writes_it_once_a_batch_and_counts_every_record():
    catalog = FakeCatalog([stocked()])
    writer = CatalogWriter(catalog, client=None, encoders=None, batch=256)

    async def feed():
        for number in range(2000):  # the stored drill, its price and stock changed by every record but the first few
            yield record(price=99.0 if number < 1000 else 89.0, stock=3 if number < 3 else number % 2 + 3,
                         description="Two batteries", brand="Kestrel", category="Drills", department="Tools",
                         image_url="https://x/p1.jpg", attributes={"colour": "red"})

    result = asyncio.run(writer.upsert(feed()))
    assert catalog.reads == [["p1"]] * math.ceil(2000 / 256)  # one read of the product a batch
    # at most one write of it a batch, its last record's change from the stored product (none when it is the same)
    assert catalog.updates == [{"p1": {"price": 99.0, "stock": 4}}, {"p1": {"price": 89.0}}]
    assert catalog.products["p1"] == stocked(price=89.0, stock=4)  # the last record sent
    assert (result.received, result.stored, result.errors) == (2000, 2000, [])
    # as if written one by one: the first changes the price, the next two nothing, then each changes the stock
    assert (result.fields_updated, result.unchanged, result.created, result.reembedded) == (1998, 2, 0, 0)
