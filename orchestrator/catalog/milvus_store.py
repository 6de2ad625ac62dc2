"""The catalog in Milvus, shared by every replica: the search path's CatalogStore over MilvusCatalog, and the full
rebuild that fills a shop's next generation and switches its alias to it.

    store = await MilvusStore.open("milvus://127.0.0.1:19530", "demo")
    await rebuild(url, shop, catalog_file, products, triton_client, encoders)   # `shoprank index --catalog-store`

A search reads Milvus on every call, so a change acknowledged by Milvus is in the next search of every replica.
What is built from the whole catalog (the spelling vocabulary, the intent prototypes) is read once when a service
opens the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.catalog import Product, catalog_digest, stock_of
from core.errors import CatalogUnavailable
from core.language import CJK, script_of
from core.specs import BI_ENCODER, MULTILINGUAL_ENCODER
from core.tokenization import SentencePieceEncoder, TextEncoder

from ..deadline import within
from ..filters import Filter
from ..index import embed_products
from ..intent import IntentModel
from ..triton import TritonClient
from .milvus import CatalogRecord, CollectionSpec, MilvusCatalog, filter_expression
from .store import Entries, Hits

log = logging.getLogger(__name__)

# A read may use the shop's alias as read this long ago: a rebuild's switch reaches every replica within it.
ALIAS_TTL_S = 1.0


class MilvusStore:
    """CatalogStore over one shop's catalog in Milvus."""

    def __init__(self, catalog: MilvusCatalog, products: list[Product], intent: IntentModel | None,
                 reading: tuple[int, CollectionSpec]) -> None:
        self.catalog = catalog
        self._reading = reading  # the generation the alias named at the last `follow`, and its spec
        self.shop = catalog.shop
        self.intent = intent
        self._products = products
        self._text_digest = _text_digest(products)

    @classmethod
    async def open(cls, url: str, shop: str, timeout_s: float = 10.0) -> "MilvusStore":
        """The shop's live catalog; CatalogStoreError when Milvus does not hold one. Reads every product once
        (the spelling vocabulary, the intent prototypes)."""
        catalog = MilvusCatalog(url, shop, timeout_s, alias_ttl_s=ALIAS_TTL_S)
        return await asyncio.to_thread(cls._load, catalog)

    @classmethod
    def _load(cls, catalog: MilvusCatalog) -> "MilvusStore":
        generation, spec = catalog.reading()
        products, intent = _whole_catalog(catalog, spec)
        log.info("catalog of shop %r: %d products in Milvus generation %s", catalog.shop, len(products), generation)
        return cls(catalog, products, intent, (generation, spec))

    async def follow(self) -> None:
        """Take the generation the shop's alias names now, and its encoder versions (a service calls it every
        second, off the searches' path: they read `version` and `encoder_versions` without a call to Milvus)."""
        self._reading = await asyncio.to_thread(self.catalog.reading)

    @property
    def version(self) -> str:
        """The generation searches read, and the catalog file it was built from, as of the last `follow`."""
        generation, spec = self._reading
        return f"{spec.source[:12]}/g{generation}"

    @property
    def encoder_versions(self) -> dict[str, str]:
        """The encoder versions that embedded the generation searches read, as of the last `follow` (a switch to
        a generation embedded by other versions changes them: queries follow, and the service loads them)."""
        spec = self._reading[1]
        return {BI_ENCODER.name: spec.dense_version, MULTILINGUAL_ENCODER.name: spec.multilingual_version}

    async def refresh(self) -> bool:
        """Read the whole catalog again; when its text changed (products added, removed, renamed, moved to
        another category), take its products and intent prototypes from now on and return True."""
        products, intent = await asyncio.to_thread(_whole_catalog, self.catalog, self.catalog.spec)
        digest = _text_digest(products)
        if digest == self._text_digest:
            return False
        self._products, self.intent, self._text_digest = products, intent, digest
        log.info("catalog of shop %r changed: %d products; spelling vocabulary and intent follow", self.shop,
                 len(products))
        return True

    async def lexical(self, text: str, k: int, filters: Sequence[Filter] = (), in_stock: bool = False) -> Hits:
        hits = await self._read("lexical", self.catalog.lexical, text, k, filter_expression(filters, in_stock))
        return Hits(hits.ids, hits.scores.astype(np.float64))

    async def lexical_scores(self, text: str, ids: Sequence[str]) -> np.ndarray:
        return (await self._read("scores", self.catalog.lexical_scores_of, text, list(ids))).astype(np.float64)

    async def nearest(self, field: str, vector: np.ndarray, k: int, filters: Sequence[Filter] = (),
                      in_stock: bool = False) -> Hits:
        hits = await self._read("nearest", self.catalog.dense, field, vector, k,
                                filter_expression(filters, in_stock))
        return Hits(hits.ids, hits.scores.astype(np.float64))

    async def similarities(self, field: str, vector: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        scores = await self._read("similarities", self.catalog.similarities, field, vector, list(ids))
        return scores.astype(np.float64)

    async def fetch(self, ids: Sequence[str], vector_fields: Sequence[str] = ()) -> Entries:
        stocked, vectors = await self._read("fetch", self.catalog.fetch, list(ids), list(vector_fields))
        products = [item.product for item in stocked]
        cjk = np.array([script_of(product.search_text()) == CJK for product in products], dtype=bool)
        # Milvus keeps no order of its own: ties rank by product id.
        order = np.argsort(np.argsort(np.array([product.product_id for product in products], dtype=object),
                                      kind="stable"), kind="stable")
        stock = np.array([item.stock for item in stocked], dtype=np.int64)
        return Entries(products, cjk, vectors, order.astype(np.int64), stock)

    async def _read(self, what: str, function, *args):
        """A search's read of Milvus, in a thread, within the call's deadline (orchestrator/deadline.py)."""
        return await within(asyncio.to_thread(function, *args), self.catalog.timeout_s, f"Milvus ({what})",
                            timed_out=CatalogUnavailable)  # the store's own timeout: down, ask again later

    def all_products(self) -> list[Product]:
        return self._products

    def close(self) -> None:
        self.catalog.close()


def _whole_catalog(catalog: MilvusCatalog, spec: CollectionSpec) -> tuple[list[Product], IntentModel | None]:
    """Every product, and the intent prototypes of their categories (from their multilingual vectors)."""
    products: list[Product] = []
    vectors: list[np.ndarray] = []
    for batch, fields in catalog.scan(("multilingual",)):
        products += [item.product for item in batch]
        vectors.append(fields["multilingual"])
    embeddings = np.concatenate(vectors) if vectors else np.zeros((0, spec.multilingual_dim), np.float32)
    return products, IntentModel.fit(embeddings, [product.category for product in products])


def _text_digest(products: list[Product]) -> str:
    """What the spelling vocabulary and the intent prototypes are built from, as one digest."""
    digest = hashlib.sha256()
    for product in sorted(products, key=lambda item: item.product_id):
        digest.update(f"{product.product_id}\0{product.search_text()}\0{product.category}\n".encode())
    return digest.hexdigest()


def is_current(url: str, shop: str, catalog_file: Path, timeout_s: float = 10.0) -> bool:
    """Whether the shop's live generation in Milvus was built from this catalog file's content."""
    catalog = MilvusCatalog(url, shop, timeout_s)
    try:
        return catalog.live_generation() is not None and catalog.spec.source == catalog_digest(catalog_file)
    finally:
        catalog.close()


async def rebuild(url: str, shop: str, catalog_file: Path, products: list[Product], client: TritonClient,
                  encoders: tuple[TextEncoder, SentencePieceEncoder], show_progress: bool = True) -> int:
    """Embed the products through Triton, fill the shop's next generation with them, and switch the shop's alias
    to it (the previous generation stays, to switch back); the new generation's number."""
    vectors = await embed_products(products, client, *encoders, show_progress=show_progress)
    catalog = MilvusCatalog(url, shop, timeout_s=60.0)
    try:
        spec = CollectionSpec(dense_version=vectors.versions[BI_ENCODER.name],
                              multilingual_version=vectors.versions[MULTILINGUAL_ENCODER.name],
                              source=catalog_digest(catalog_file))
        number = await asyncio.to_thread(catalog.create_generation, spec)
        generation = catalog.generation(number)
        records = [CatalogRecord(product, stock_of(product), dense, multilingual)
                   for product, dense, multilingual in zip(products, vectors.dense, vectors.multilingual)]
        await asyncio.to_thread(generation.upsert, records)
        await asyncio.to_thread(catalog.switch_alias, number)
        return number
    finally:
        catalog.close()
