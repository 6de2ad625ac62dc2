"""Changing a shop's catalog in Milvus while it serves: records validated as the catalog loader validates a row,
each product embedded through Triton only when the text its encoders read has changed.

    writer = CatalogWriter(catalog, triton_client, product_encoders(settings))
    result = await writer.upsert(records)            # an async iterable of IncomingProduct -> UpsertResult
    deleted, not_found = await writer.delete(["p1", "p2"])
    stocked = await writer.get("p1")                  # None when the catalog does not hold it

What an upserted record costs, by what differs from the stored product (`plan`):
    new, or its title, description, brand or category changed   embedded with both encoders, the row written whole
    only price, stock, department, image_url or attributes        MilvusCatalog.update_fields: nothing embedded
    nothing                                                       nothing written
A product sent more than once is stored as its last record (the last write wins), and each record is counted by
what it changes from the one before it: within a batch only the last is written, so a feed that repeats a product
costs no more reads or writes than one that sends it once.
Products are embedded with the encoder versions the live generation was built with (its CollectionSpec), never the
newest Triton serves: queries are encoded by the catalog's versions, and every product must match them.

A batch is answered only after Milvus acknowledged its writes (on Milvus Lite a committed SQLite transaction): an
acknowledged change outlives `kill -9` of Milvus or of this process. The writes of one writer are serialized (an
asyncio.Lock), since update_fields reads rows and writes them back; replicas do not share that lock, so two replicas
changing the same product's embedding-free fields at the same instant may keep only one change (the last written).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from core.catalog import KNOWN_COLUMNS, product_from_row, stock_of
from core.errors import DataError, InvalidRequest, ShoprankError
from core.specs import BI_ENCODER, MULTILINGUAL_ENCODER
from core.tokenization import SentencePieceEncoder, TextEncoder

from ..index import embed_products
from ..triton import TritonClient
from .milvus import (ATTRIBUTES, DEPARTMENT, EMBEDDING_FREE_FIELDS, IMAGE_URL, PRICE, STOCK, CatalogRecord,
                     CollectionSpec, MilvusCatalog, StockedProduct, check_storable)

log = logging.getLogger(__name__)

# The fields the encoders' texts are made of (Product.search_text, meaning_text): a change embeds the product again.
# A brand or category already written in the title leaves the texts as they were, but the row must still be written
# whole, which update_fields cannot do; such a rare change is embedded too.
EMBEDDED_FIELDS = ("title", "description", "brand", "category")
BATCH = 256  # records per read, embedding and write


@dataclass(frozen=True)
class IncomingProduct:
    """A product record as a caller sent it, not yet validated."""

    fields: Mapping[str, Any]  # the catalog's columns (product_id, title, ..., price: None for none)
    attributes: Mapping[str, str] = field(default_factory=dict)
    stock: int | None = None  # None: a `stock` attribute, as a catalog file's column, else DEFAULT_STOCK

    @property
    def product_id(self) -> str:
        return str(self.fields.get("product_id") or "")


@dataclass(frozen=True)
class RecordError:
    """A record left out of an upsert: its position in the stream (from 0) and why."""

    index: int
    product_id: str
    message: str


@dataclass
class UpsertResult:
    """What an upsert did with each record it received."""

    received: int = 0
    created: int = 0
    reembedded: int = 0
    fields_updated: int = 0
    unchanged: int = 0
    errors: list[RecordError] = field(default_factory=list)

    @property
    def stored(self) -> int:
        return self.created + self.reembedded + self.fields_updated + self.unchanged


class Action(Enum):
    CREATE = "create"
    REEMBED = "reembed"
    UPDATE_FIELDS = "update_fields"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Plan:
    """What writing a record takes: its action and, for UPDATE_FIELDS, the changed fields (update_fields' form)."""

    action: Action
    fields: dict[str, Any] = field(default_factory=dict)


def validate(record: IncomingProduct, spec: CollectionSpec) -> StockedProduct:
    """The record as a stored product, validated as `load_catalog` validates a row (core.catalog.product_from_row) and
    as the collection's schema holds it; DataError or InvalidRequest saying what is wrong. Without a stock, a `stock`
    attribute is the stock, as a catalog file's column is (core.catalog.stock_of); it is never kept as an attribute."""
    named = sorted(set(record.attributes) & set(KNOWN_COLUMNS))
    if named:
        raise DataError(f"product {record.product_id!r}: attribute {named[0]!r} has the name of a product field; "
                        f"send it as that field")
    product = product_from_row({**record.attributes, **record.fields})
    stock = stock_of(product) if record.stock is None else record.stock
    if STOCK in product.attributes:
        product = replace(product, attributes={key: value for key, value in product.attributes.items() if key != STOCK})
    check_storable(product, stock, spec)
    return StockedProduct(product, stock)


def plan(new: StockedProduct, stored: StockedProduct | None) -> Plan:
    """What writing `new` over the `stored` version of the product takes (None: not stored)."""
    if stored is None:
        return Plan(Action.CREATE)
    if any(getattr(new.product, name) != getattr(stored.product, name) for name in EMBEDDED_FIELDS):
        return Plan(Action.REEMBED)
    values = {PRICE: lambda item: item.product.price, STOCK: lambda item: item.stock,
              DEPARTMENT: lambda item: item.product.department, IMAGE_URL: lambda item: item.product.image_url,
              ATTRIBUTES: lambda item: item.product.attributes}
    changed = {name: values[name](new) for name in EMBEDDING_FREE_FIELDS if values[name](new) != values[name](stored)}
    return Plan(Action.UPDATE_FIELDS, changed) if changed else Plan(Action.UNCHANGED)


def sequential_plans(items: Sequence[StockedProduct], stored: Mapping[str, StockedProduct]) -> tuple[
        list[Plan], dict[str, StockedProduct]]:
    """What each record does when the batch is written in the order sent: planned against the record before it of
    the same product, the first against the `stored` version (by product id; absent: not stored). Also the last record
    of each product: what the catalog holds once the batch is written."""
    plans = []
    last: dict[str, StockedProduct] = {}
    for item in items:
        product_id = item.product.product_id
        plans.append(plan(item, last.get(product_id, stored.get(product_id))))
        last[product_id] = item
    return plans, last


class CatalogWriter:
    """Upserts, deletes and reads of one shop's catalog in Milvus (the admin API's catalog calls)."""

    def __init__(self, catalog: MilvusCatalog, client: TritonClient,
                 encoders: tuple[TextEncoder, SentencePieceEncoder], batch: int = BATCH) -> None:
        self.catalog = catalog
        self.client = client
        self.encoders = encoders
        self.batch = batch
        self._lock = asyncio.Lock()

    async def upsert(self, records: AsyncIterable[IncomingProduct]) -> UpsertResult:
        """Insert or replace whole products, a batch at a time as they arrive; a record that is not valid is reported
        by its index and left out, the rest are kept. Returns once every kept record is stored. A failure of Milvus
        or Triton raises its error, saying from which index on records may not be stored."""
        result = UpsertResult()
        spec = await asyncio.to_thread(lambda: self.catalog.spec)
        batch: list[tuple[int, StockedProduct]] = []
        async for record in records:
            index = result.received
            result.received += 1
            try:
                item = validate(record, spec)
            except (DataError, InvalidRequest) as error:
                result.errors.append(RecordError(index, record.product_id, str(error)))
                continue
            if len(batch) >= self.batch:
                await self._write(batch, result)
                batch = []
            batch.append((index, item))
        if batch:
            await self._write(batch, result)
        return result

    async def _write(self, batch: Sequence[tuple[int, StockedProduct]], result: UpsertResult) -> None:
        try:
            async with self._lock:
                await self._write_locked([item for _, item in batch], result)
        except ShoprankError as error:
            raise type(error)(f"{error}; the records from index {batch[0][0]} on may not be stored (those before "
                              f"are): send them again") from error

    async def _write_locked(self, items: Sequence[StockedProduct], result: UpsertResult) -> None:
        ids = list(dict.fromkeys(item.product.product_id for item in items))
        stored = {item.product.product_id: item for item in await asyncio.to_thread(self.catalog.get, ids)}
        plans, last = sequential_plans(items, stored)
        # Only the last record of each product is written (the batch's last write wins), planned against the stored
        # product: a feed that repeats a product costs one read and one write of it a batch.
        writes = {product_id: plan(item, stored.get(product_id)) for product_id, item in last.items()}
        embed = [last[product_id] for product_id, step in writes.items()
                 if step.action in (Action.CREATE, Action.REEMBED)]
        updates = {product_id: step.fields for product_id, step in writes.items() if step.action == Action.UPDATE_FIELDS}
        if updates:
            gone = set(await asyncio.to_thread(self.catalog.update_fields, updates))
            # Deleted since it was read (by another replica): the record is whole, so it is stored anew, and the
            # product's first record of the batch counts as its creation.
            first = {}
            for position, item in enumerate(items):
                first.setdefault(item.product.product_id, position)
            for product_id in gone:
                plans[first[product_id]] = Plan(Action.CREATE)
                embed.append(last[product_id])
        if embed:
            await self._embed_and_store(embed)
        counts = Counter(step.action for step in plans)
        result.created += counts[Action.CREATE]
        result.reembedded += counts[Action.REEMBED]
        result.fields_updated += counts[Action.UPDATE_FIELDS]
        result.unchanged += counts[Action.UNCHANGED]
        log.info("catalog of shop %r: %d products embedded and stored, %d with only fields updated, %d unchanged",
                 self.catalog.shop, len(embed), counts[Action.UPDATE_FIELDS], counts[Action.UNCHANGED])

    async def _embed_and_store(self, items: Sequence[StockedProduct]) -> None:
        spec = await asyncio.to_thread(lambda: self.catalog.spec)
        versions = {BI_ENCODER.name: spec.dense_version, MULTILINGUAL_ENCODER.name: spec.multilingual_version}
        vectors = await embed_products([item.product for item in items], self.client, *self.encoders,
                                       show_progress=False, versions=versions)
        records = [CatalogRecord(item.product, item.stock, dense, multilingual)
                   for item, dense, multilingual in zip(items, vectors.dense, vectors.multilingual)]
        await asyncio.to_thread(self.catalog.upsert, records)

    async def delete(self, ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """Remove products; returns (the ids deleted, the ids the catalog did not hold)."""
        unique = list(dict.fromkeys(ids))
        if not unique or not all(unique):
            raise InvalidRequest("name the products to delete by their non-empty product ids")
        async with self._lock:
            held = {item.product.product_id for item in await asyncio.to_thread(self.catalog.get, unique)}
            deleted = [product_id for product_id in unique if product_id in held]
            if deleted:
                await asyncio.to_thread(self.catalog.delete, deleted)
        return deleted, [product_id for product_id in unique if product_id not in held]

    async def get(self, product_id: str) -> StockedProduct | None:
        """The stored product with its stock; None when the catalog does not hold it."""
        if not product_id:
            raise InvalidRequest("a product_id is needed")
        found = await asyncio.to_thread(self.catalog.get, [product_id])
        return found[0] if found else None
