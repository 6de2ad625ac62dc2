"""Retrieve the candidates: BM25 and both ANN indexes (or the rows the caller narrowed the search to), fused.

In a query's candidates, what a component cannot read (a Chinese title for the English models, a title in another
script for BM25) gets the value that component gives the readable candidate at the same quantile of the
multilingual cosine (fusion.impute), so it is neither pushed down nor lifted by a model blind to it.
"""

from __future__ import annotations

import asyncio

import numpy as np

from core.errors import TritonError
from core.language import CJK, NONE
from core.settings import Settings

from ..fusion import fuse, impute
from ..index import CatalogIndex
from ..personalization.personalizer import Personalizer
from ..retrieval import top_rows
from .context import SearchContext


class Retrieve:
    """Every candidate the query can find, scored by each retriever and fused: `context.pool` and `.ranking`."""

    name = "retrieve"  # includes waiting for the query's embeddings and the user's profile

    def __init__(self, settings: Settings, index: CatalogIndex, personalizer: Personalizer | None) -> None:
        self.settings = settings
        self.index = index
        self.personalizer = personalizer

    async def run(self, context: SearchContext) -> None:
        index, request = self.index, context.request
        context.allowed = self._allowed(context)
        # BM25 is scored even in dense mode: it is cheap, overlaps the Triton calls, and is the fallback if Triton fails.
        lexical_scores = context.lexical_scores = await asyncio.to_thread(index.lexical.scores, context.query)
        profile = await context.user_profile()
        query_embedding, multilingual_embedding, dense_failed = await self._embeddings(context)
        use_lexical = request.mode in ("hybrid", "lexical") or dense_failed
        context.multilingual_embedding = multilingual_embedding

        rows = context.allowed
        if rows is None:
            depth = max(self.settings.retrieve_depth, context.top_k)
            pools = []
            if use_lexical:
                matched = np.flatnonzero(lexical_scores > 0)
                pools.append(top_rows(matched, lexical_scores[matched], depth)[0])
            if query_embedding is not None:
                pools.append(index.dense.search(query_embedding, depth)[0])
            if multilingual_embedding is not None:
                pools.append(index.multilingual.search(multilingual_embedding, depth)[0])
            if profile is not None:  # the user's own products that match the query are candidates too
                touched = self.personalizer.touched_rows(profile)
                pools.append(touched[lexical_scores[touched] > 0])
            rows = np.unique(np.concatenate(pools)) if pools else np.zeros(0, dtype=np.int64)

        # What each component can read: BM25 and word overlap a product in the query's script, MiniLM and the
        # cross-encoder a product not written in CJK characters (they never see a CJK query).
        script = context.script
        same_script = context.same_script = (np.ones(len(index.products), dtype=bool) if script == NONE
                                             else index.cjk == (script == CJK))
        raw: dict[str, np.ndarray] = {}
        proxy = None  # the multilingual cosine reads every candidate: it stands in for the others where they can't
        if multilingual_embedding is not None:
            proxy = index.multilingual.scores(multilingual_embedding, rows).astype(np.float64)
        if use_lexical:
            raw["bm25"] = impute(lexical_scores[rows].astype(np.float64), same_script[rows], proxy)
        if query_embedding is not None:
            raw["dense"] = impute(index.dense.scores(query_embedding, rows).astype(np.float64), ~index.cjk[rows], proxy)
        if proxy is not None:
            raw["multilingual"] = proxy
        settings = self.settings
        context.pool = context.ranking = fuse(rows, raw, settings.fusion, settings.rrf_k, settings.fusion_lexical_weight)

    def _allowed(self, context: SearchContext) -> np.ndarray | None:
        """The rows the caller narrowed the search to (candidate ids, filters), every one scored exactly; None: all."""
        request, index = context.request, self.index
        allowed = None
        if request.candidate_ids:
            allowed = np.unique(np.array([index.row_of[pid] for pid in request.candidate_ids], dtype=np.int64))
        mask = index.filter_columns.mask(list(request.filters))
        if mask is not None:
            allowed = np.flatnonzero(mask) if allowed is None else allowed[mask[allowed]]
        return allowed

    @staticmethod
    async def _embeddings(context: SearchContext) -> tuple[np.ndarray | None, np.ndarray | None, bool]:
        """The query's MiniLM and multilingual embeddings, each None where not asked for, and whether Triton failed
        (then both are None, and the answer is lexical, degraded)."""
        tasks = (context.embedding_task, context.multilingual_task)
        try:
            embedding, multilingual = [None if task is None else await task for task in tasks]
        except TritonError as error:
            for task in tasks:
                if task is not None:
                    task.cancel()
            context.trace.degrade("dense_unavailable", error)
            return None, None, True
        return embedding, multilingual, False
