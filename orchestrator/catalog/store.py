"""The one retrieval interface: what a search asks of the catalog, whichever engine holds it.

    hits = await catalog.lexical("cordless drill", k=200, filters=filters)       # BM25 top k (matching only)
    hits = await catalog.nearest("dense", query_vector, k=200, filters=filters)  # ANN top k by inner product
    entries = await catalog.fetch(ids)                                          # the products (and vectors asked for)
    bm25 = await catalog.lexical_scores("cordless drill", ids)                   # BM25 of exactly those (0: none)
    cosines = await catalog.similarities("dense", query_vector, ids)            # inner products of exactly those

Two engines implement it: `MemoryCatalog` (memory.py: an index built by `shoprank index`, loaded in each
process) and the Milvus store (shared by every replica, changed live). A search asks each retriever for its top k,
then fetches the union and scores every candidate exactly with every retriever, so fusion sees complete scores
whatever the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from core.catalog import Product

from ..filters import Filter
from ..intent import IntentModel

VECTOR_FIELDS = ("dense", "multilingual")  # MiniLM's 384-d and the multilingual encoder's 512-d product vectors


@dataclass(frozen=True)
class Hits:
    """A retriever's top products, best first."""

    ids: list[str]
    scores: np.ndarray


@dataclass(frozen=True)
class Entries:
    """Products fetched by id, in the order asked; ids the catalog does not hold are left out."""

    products: list[Product]
    cjk: np.ndarray  # per product: its search text is written in CJK characters (core/language.py)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # field -> [products, dim] unit vectors
    # A stable order of the catalog's products (the index row; a write sequence in Milvus): candidates are kept in
    # it, so that ties rank the same whichever retriever found a product first.
    order: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    stock: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # units available, per product

    @property
    def ids(self) -> list[str]:
        return [product.product_id for product in self.products]


class CatalogStore(Protocol):
    """What the search path reads of one shop's catalog."""

    shop: str  # the shop's name, which keys what was learned for it
    version: str  # what is indexed, for the answer's model versions
    encoder_versions: dict[str, str]  # encoder model -> the version that embedded the products
    intent: IntentModel | None  # the catalog's categories as prototypes of their products (None: no categories)

    async def lexical(self, text: str, k: int, filters: Sequence[Filter] = (), in_stock: bool = False) -> Hits:
        """The k products with the highest BM25 score for `text` (only products that match a word; with
        `in_stock`, only products with stock)."""

    async def lexical_scores(self, text: str, ids: Sequence[str]) -> np.ndarray:
        """BM25 scores of exactly those products for `text`, in their order (0 where none of its words match)."""

    async def nearest(self, field: str, vector: np.ndarray, k: int, filters: Sequence[Filter] = (),
                      in_stock: bool = False) -> Hits:
        """The k products whose `field` vector has the highest inner product with `vector` (with `in_stock`, only
        products with stock)."""

    async def similarities(self, field: str, vector: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """The inner product of each of those products' `field` vector with `vector`, in their order (the engine
        computes them: no vector leaves it)."""

    async def fetch(self, ids: Sequence[str], vector_fields: Sequence[str] = ()) -> Entries:
        """The products with those ids (unknown ones left out), with the vector fields asked for."""

    def all_products(self) -> list[Product]:
        """Every product (for what is built from the whole catalog at start: the spelling vocabulary)."""
