"""The catalog from an index built by `shoprank index` and loaded into this process: BM25 (bm25s) and FAISS HNSW.

Each process holds its own copy, fixed at load: a change to the catalog means a new index. Filters narrow each
retriever to the products that pass them, and a narrowed retriever scores every product it may return exactly.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from core.catalog import Product, stock_of

from ..filters import Filter
from ..index import CatalogIndex
from ..retrieval import DenseIndex, top_rows
from .store import Entries, Hits

# BM25 over the whole catalog is kept for the last few query texts: a search asks for the top k, then for the scores
# of every candidate, of the same text.
LEXICAL_CACHE = 16


class MemoryCatalog:
    """CatalogStore over an in-memory CatalogIndex."""

    def __init__(self, index: CatalogIndex) -> None:
        self.index = index
        self.shop = index.shop
        self.version = index.version
        self.encoder_versions = index.encoder_versions
        self.intent = index.intent
        self._vectors: dict[str, DenseIndex] = {"dense": index.dense, "multilingual": index.multilingual}
        self._stock = np.array([stock_of(product) for product in index.products], dtype=np.int64)
        self._lexical: OrderedDict[str, np.ndarray] = OrderedDict()

    async def _bm25(self, text: str) -> np.ndarray:
        scores = self._lexical.get(text)
        if scores is None:
            scores = await asyncio.to_thread(self.index.lexical.scores, text)
            self._lexical[text] = scores
            while len(self._lexical) > LEXICAL_CACHE:
                self._lexical.popitem(last=False)
        return scores

    def _allowed(self, filters: Sequence[Filter], in_stock: bool) -> np.ndarray | None:
        mask = self.index.filter_columns.mask(list(filters))
        if in_stock and not self._stock.all():
            mask = self._stock > 0 if mask is None else mask & (self._stock > 0)
        return None if mask is None else np.flatnonzero(mask)

    def _ids(self, rows: np.ndarray) -> list[str]:
        products = self.index.products
        return [products[row].product_id for row in rows.tolist()]

    async def lexical(self, text: str, k: int, filters: Sequence[Filter] = (), in_stock: bool = False) -> Hits:
        scores = await self._bm25(text)
        matched = np.flatnonzero(scores > 0)
        allowed = self._allowed(filters, in_stock)
        if allowed is not None:
            matched = np.intersect1d(matched, allowed)
        rows, best = top_rows(matched, scores[matched], k)
        return Hits(self._ids(rows), best)

    async def lexical_scores(self, text: str, ids: Sequence[str]) -> np.ndarray:
        return self._aligned(await self._bm25(text), ids)

    async def nearest(self, field: str, vector: np.ndarray, k: int, filters: Sequence[Filter] = (),
                      in_stock: bool = False) -> Hits:
        index = self._vectors[field]
        allowed = self._allowed(filters, in_stock)
        if allowed is None:
            rows, scores = index.search(vector, k)
        else:  # exactly, over the products that pass
            rows, scores = top_rows(allowed, index.scores(vector, allowed), k)
        return Hits(self._ids(rows), np.asarray(scores, dtype=np.float64))

    async def similarities(self, field: str, vector: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        rows = self._rows_of(ids)
        scores = np.zeros(len(ids), dtype=np.float64)
        scores[rows >= 0] = self._vectors[field].scores(vector, rows[rows >= 0])
        return scores

    def _aligned(self, values: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """The catalog-wide `values` of those ids, in their order (0 for an id the catalog does not hold)."""
        rows = self._rows_of(ids)
        return np.where(rows >= 0, values[np.maximum(rows, 0)], 0.0).astype(np.float64)

    async def fetch(self, ids: Sequence[str], vector_fields: Sequence[str] = ()) -> Entries:
        rows = self._rows_of(ids)
        rows = rows[rows >= 0]  # the ids this catalog holds, in their order
        return Entries([self.index.products[row] for row in rows.tolist()], self.index.cjk[rows],
                       {field: self._vectors[field].embeddings[rows] for field in vector_fields}, rows,
                       self._stock[rows])

    def _rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """The catalog row of each id, in their order; -1 for an id the catalog does not hold."""
        row_of = self.index.row_of
        return np.array([row_of.get(pid, -1) for pid in ids], dtype=np.int64)

    def all_products(self) -> list[Product]:
        return self.index.products
