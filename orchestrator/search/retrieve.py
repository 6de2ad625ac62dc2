"""Retrieve the candidates: BM25 and both ANN indexes (or the products the caller named), scored exactly, fused.

Each retriever returns its top `retrieve_depth` (within the caller's filters); the union, and the user's own products
that match the query, are fetched with their vectors and scored by every retriever, so fusion sees complete scores.
In a query's candidates, what a component cannot read (a Chinese title for the English models, a title in another
script for BM25) gets the value that component gives the readable candidate at the same quantile of the
multilingual cosine (fusion.impute), so it is neither pushed down nor lifted by a model blind to it.
"""

from __future__ import annotations

import asyncio

import numpy as np

from core.errors import InvalidRequest, TritonError
from core.language import CJK, NONE
from core.settings import Settings

from ..catalog.store import CatalogStore, Entries
from ..deadline import cancel_and_wait
from ..fusion import fuse, impute
from ..personalization.personalizer import Personalizer
from .context import SearchContext


class Retrieve:
    """Every candidate the query can find, scored by each retriever and fused: `context.pool` and `.ranking`."""

    name = "retrieve"  # includes waiting for the query's embeddings and the user's profile

    def __init__(self, settings: Settings, catalog: CatalogStore, personalizer: Personalizer | None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.personalizer = personalizer

    async def run(self, context: SearchContext) -> None:
        catalog, request, query = self.catalog, context.request, context.query
        depth = max(self.settings.retrieve_depth, context.top_k)
        context.narrowed = bool(request.candidate_ids or request.filters)
        # BM25 runs even in dense mode: it is cheap, overlaps the Triton calls, and is the fallback if Triton fails.
        in_stock = not request.include_out_of_stock
        lexical = None if request.candidate_ids else await catalog.lexical(query, depth, request.filters, in_stock)
        profile = await context.user_profile()
        query_embedding, multilingual_embedding, dense_failed = await self._embeddings(context)
        context.multilingual_embedding = multilingual_embedding
        use_lexical = request.mode in ("hybrid", "lexical") or dense_failed

        touched: list[str] = []  # the user's own products no retriever found: candidates if they match the query
        if request.candidate_ids:
            ids = list(dict.fromkeys(request.candidate_ids))
        else:
            pools = [lexical.ids] if use_lexical else []
            nearest = [catalog.nearest(field, embedding, depth, request.filters, in_stock) for field, embedding in
                       (("dense", query_embedding), ("multilingual", multilingual_embedding)) if embedding is not None]
            pools += [hits.ids for hits in await asyncio.gather(*nearest)]
            ids = list(dict.fromkeys(pid for pool in pools for pid in pool))
            if profile is not None and not request.filters:
                found_already = set(ids)
                touched = [pid for pid in self.personalizer.touched_ids(profile) if pid not in found_already]
                ids += touched
        # Every candidate scored by every retriever, in the engine; the products' own vectors only for the blend.
        embeddings = {"dense": query_embedding, "multilingual": multilingual_embedding}
        fields = [field for field, embedding in embeddings.items() if embedding is not None]
        found, bm25, *cosines = await asyncio.gather(
            catalog.fetch(ids, ("dense",) if profile is not None else ()), catalog.lexical_scores(query, ids),
            *(catalog.similarities(field, embeddings[field], ids) for field in fields))
        if request.candidate_ids and len(found.products) < len(ids):
            _unknown(ids, found)
        position = {pid: i for i, pid in enumerate(ids)}
        unmatched = {pid for pid in touched if bm25[position[pid]] <= 0}
        candidates = context.candidates = _in_catalog_order(found, in_stock, unmatched)
        kept = np.array([position[pid] for pid in candidates.ids], dtype=np.int64)
        lexical_scores = context.lexical_scores = bm25[kept].astype(np.float64)
        cosine = {field: values[kept].astype(np.float64) for field, values in zip(fields, cosines)}

        # What each component can read: BM25 and word overlap a product in the query's script, MiniLM and the
        # cross-encoder a product not written in CJK characters (they never see a CJK query).
        script, cjk = context.script, candidates.cjk
        same_script = context.same_script = np.ones(len(cjk), dtype=bool) if script == NONE else cjk == (script == CJK)
        raw: dict[str, np.ndarray] = {}
        proxy = None  # the multilingual cosine reads every candidate: it stands in for the others where they can't
        if multilingual_embedding is not None:
            proxy = cosine["multilingual"]
        if use_lexical:
            raw["bm25"] = impute(lexical_scores, same_script, proxy)
        if query_embedding is not None:
            raw["dense"] = impute(cosine["dense"], ~cjk, proxy)
        if proxy is not None:
            raw["multilingual"] = proxy
        settings = self.settings
        positions = np.arange(len(candidates.products), dtype=np.int64)
        context.pool = context.ranking = fuse(positions, raw, settings.fusion, settings.rrf_k,
                                              settings.fusion_lexical_weight)

    @staticmethod
    async def _embeddings(context: SearchContext) -> tuple[np.ndarray | None, np.ndarray | None, bool]:
        """The query's MiniLM and multilingual embeddings, each None where not asked for, and whether Triton failed
        (then both are None, and the answer is lexical, degraded)."""
        tasks = (context.embedding_task, context.multilingual_task)
        try:
            embedding, multilingual = [None if task is None else await task for task in tasks]
        except TritonError as error:
            await cancel_and_wait(*tasks)  # the other encoding too (it may have failed as well: its error is read)
            context.trace.degrade("dense_unavailable", error)
            return None, None, True
        return embedding, multilingual, False


def _in_catalog_order(entries: Entries, in_stock: bool, left_out: set[str]) -> Entries:
    """The entries in the catalog's own order, so that ties rank alike whichever retriever found a product, without
    those `left_out`; with `in_stock`, only those with stock (a named candidate or the user's own product may have
    none)."""
    order = np.argsort(entries.order, kind="stable")
    if in_stock:
        order = order[entries.stock[order] > 0]
    if left_out:
        order = np.array([i for i in order.tolist() if entries.products[i].product_id not in left_out], dtype=np.int64)
    return Entries([entries.products[i] for i in order.tolist()], entries.cjk[order],
                   {name: vectors[order] for name, vectors in entries.vectors.items()}, entries.order[order],
                   entries.stock[order])


def _unknown(asked: list[str], found: Entries) -> None:
    """InvalidRequest naming the candidate ids the catalog does not hold."""
    known = set(found.ids)
    unknown = [pid for pid in asked if pid not in known]
    shown = ", ".join(repr(pid) for pid in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
    raise InvalidRequest(f"{len(unknown)} candidate id(s) not in the catalog: {shown}")
