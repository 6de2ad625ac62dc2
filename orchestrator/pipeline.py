"""The ranking pipeline: validate -> correct spelling -> encode the query -> retrieve -> fuse -> rerank ->
personalize -> top k, with explanations.

Domain types only; the servicer converts to and from protobuf.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np

from core.errors import InvalidRequest, StoreError, TritonError
from core.features import match_features
from core.settings import Settings
from core.specs import BI_ENCODER, RERANKER
from core.spelling import SpellingCorrector
from core.tokenization import PairEncoder, TextEncoder

from .filters import Filter
from .fusion import Component, combine_with_reranker, fuse
from .index import CatalogIndex
from .personalization.blend import check_weights
from .personalization.personalizer import Personalizer
from .retrieval import top_rows
from .triton import TritonClient

MODES = ("hybrid", "lexical", "dense")
STORE_DOWN = "off: the profile store is unavailable"


@dataclass(frozen=True)
class SearchQuery:
    """One search as the caller asked for it."""

    query: str
    user_id: str = ""
    top_k: int | None = None
    filters: tuple[Filter, ...] = ()
    candidate_ids: tuple[str, ...] = ()
    explain: bool = False
    mode: str = "hybrid"
    skip_rerank: bool = False
    correct_spelling: bool = True
    personalize: bool = True
    blend_weights: dict[str, float] | None = None  # group weights overriding the learned blend's (experiments)


@dataclass(frozen=True)
class ScoredItem:
    product_id: str
    title: str
    score: float
    components: tuple[tuple[str, float, int, float], ...] = ()  # (name, raw, rank, contribution)


@dataclass(frozen=True)
class SearchResult:
    items: list[ScoredItem]
    model_versions: dict[str, str]
    degraded_reason: str = ""
    took_ms: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)
    corrected_query: str = ""  # what was searched for, when spelling correction changed the query
    personalized: bool = False
    personalization: str = ""  # why the order is, or is not, personalized

    @property
    def degraded(self) -> bool:
        return bool(self.degraded_reason)


class QueryEncoder:
    """Tokenizes in-process and gets the query embedding from Triton."""

    def __init__(self, client: TritonClient, tokenizer: TextEncoder) -> None:
        self.client = client
        self.tokenizer = tokenizer

    async def encode(self, text: str) -> np.ndarray:
        output = await self.client.infer(BI_ENCODER, self.tokenizer([text]))
        return output["embedding"][0]


class Reranker:
    """Scores (query, product text) pairs with the cross-encoder in Triton: one request per query.

    At most `max_in_flight` requests wait on Triton at once; past that a query is not queued behind them
    (where it would most likely miss its deadline anyway) but answered at once in fused order, degraded.
    """

    def __init__(self, client: TritonClient, tokenizer: PairEncoder, weights: dict[str, float], timeout_s: float,
                 max_in_flight: int = 2) -> None:
        self.client = client
        self.tokenizer = tokenizer
        self.weights = weights
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def score(self, query: str, texts: list[str]) -> np.ndarray:
        """Cross-encoder scores; TritonError when Triton fails, the deadline passes or the reranker is busy."""
        if self.in_flight >= self.max_in_flight:
            raise TritonError(f"reranker busy: {self.in_flight} requests already in flight")
        self.in_flight += 1
        try:
            feeds = self.tokenizer(query, texts)
            output = await asyncio.wait_for(self.client.infer(RERANKER, feeds), self.timeout_s)
        except asyncio.TimeoutError:
            raise TritonError(f"reranker missed its {self.timeout_s * 1000:.0f} ms deadline") from None
        finally:
            self.in_flight -= 1
        return output["score"][:, 0]


class Pipeline:
    """Answers SearchQuery objects against one loaded index."""

    def __init__(self, settings: Settings, index: CatalogIndex, encoder: QueryEncoder, model_versions: dict[str, str],
                 reranker: Reranker | None = None, speller: SpellingCorrector | None = None,
                 personalizer: Personalizer | None = None) -> None:
        self.settings = settings
        self.index = index
        self.encoder = encoder
        self.reranker = reranker
        self.speller = speller
        self.personalizer = personalizer
        self.model_versions = {**model_versions, "index": index.version}
        if personalizer is not None and personalizer.model is not None:
            self.model_versions["blend"] = str(personalizer.model.version)

    def validate(self, request: SearchQuery) -> int:
        """Raise InvalidRequest for anything malformed; return the effective top_k."""
        settings = self.settings
        if not request.query.strip():
            raise InvalidRequest("query is empty")
        if len(request.query) > settings.max_query_chars:
            raise InvalidRequest(f"query has {len(request.query)} characters; the limit is {settings.max_query_chars}")
        top_k = settings.default_top_k if request.top_k is None else request.top_k
        if not 1 <= top_k <= settings.max_top_k:
            raise InvalidRequest(f"top_k must be between 1 and {settings.max_top_k}, not {top_k}")
        if request.mode not in MODES:
            raise InvalidRequest(f"unknown retrieval mode {request.mode!r}; known: {', '.join(MODES)}")
        for item in request.filters:
            item.validate()
        if len(request.user_id.encode("utf-8")) > settings.max_user_id_bytes:
            raise InvalidRequest(f"user_id is over {settings.max_user_id_bytes} bytes")
        check_weights(request.blend_weights or {})
        if len(request.candidate_ids) > settings.max_candidates:
            raise InvalidRequest(f"{len(request.candidate_ids)} candidate ids; the limit is {settings.max_candidates}")
        unknown = [pid for pid in request.candidate_ids if pid not in self.index.row_of]
        if unknown:
            shown = ", ".join(repr(pid) for pid in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise InvalidRequest(f"{len(unknown)} candidate id(s) not in the catalog: {shown}")
        return top_k

    async def search(self, request: SearchQuery) -> SearchResult:
        """Rank the catalog, or the given candidates, for the query."""
        started = time.perf_counter()
        top_k = self.validate(request)
        index, settings = self.index, self.settings
        use_lexical = request.mode in ("hybrid", "lexical")
        use_dense = request.mode in ("hybrid", "dense")
        # Every model sees the corrected query: retrieval, the cross-encoder and the match features. Under 1 ms
        # for a typical query, but up to ~40 ms for 1,000 characters of long unknown words: off the event loop.
        # The user's profile loads from the store while the query is understood and retrieved.
        profile_task = None
        if self.personalizer is not None and request.user_id and request.personalize:
            profile_task = asyncio.create_task(self.personalizer.profile(request.user_id))
        query = request.query
        if self.speller is not None and request.correct_spelling:
            query = await asyncio.to_thread(self.speller.correct, query)

        # Exhaustive: the caller narrowed the set (candidates or filters), so every allowed row is scored exactly.
        allowed: np.ndarray | None = None
        if request.candidate_ids:
            allowed = np.unique(np.array([index.row_of[pid] for pid in request.candidate_ids], dtype=np.int64))
        mask = index.filter_columns.mask(list(request.filters))
        if mask is not None:
            allowed = np.flatnonzero(mask) if allowed is None else allowed[mask[allowed]]

        embedding_task = asyncio.create_task(self.encoder.encode(query)) if use_dense else None
        # BM25 is scored even in dense mode: it is cheap, overlaps the Triton call, and is the fallback if Triton fails.
        lexical_scores = await asyncio.to_thread(index.lexical.scores, query)

        degraded_reason = ""
        profile, personalization = None, _why_not_personal(self.personalizer, request)
        if profile_task is not None:
            try:
                profile = await profile_task
            except StoreError as error:
                degraded_reason = _also(degraded_reason, f"personalization skipped, non-personalized order: {error}")
                personalization = STORE_DOWN
            else:
                personalization = (f"personalized from {profile.events} events" if profile is not None
                                   else "cold start: no events for this user yet, non-personalized order")
        query_embedding = None
        if embedding_task is not None:
            try:
                query_embedding = await embedding_task
            except TritonError as error:
                degraded_reason = _also(degraded_reason, f"dense retrieval skipped, lexical results only: {error}")
                use_dense, use_lexical = False, True

        depth = max(settings.retrieve_depth, top_k)
        if allowed is not None:
            rows = allowed
        else:
            pools = []
            if use_lexical:
                matched = np.flatnonzero(lexical_scores > 0)
                pools.append(top_rows(matched, lexical_scores[matched], depth)[0])
            if use_dense:
                pools.append(index.dense.search(query_embedding, depth)[0])
            if profile is not None:  # the user's own products that match the query are candidates too
                touched = self.personalizer.touched_rows(profile)
                pools.append(touched[lexical_scores[touched] > 0])
            rows = np.unique(np.concatenate(pools)) if pools else np.zeros(0, dtype=np.int64)

        raw: dict[str, np.ndarray] = {}
        if use_lexical:
            raw["bm25"] = lexical_scores[rows].astype(np.float64)
        if use_dense:
            raw["dense"] = index.dense.scores(query_embedding, rows).astype(np.float64)
        fused = pool = fuse(rows, raw, settings.fusion, settings.rrf_k, settings.blend_lexical_weight)

        if self.reranker is not None and settings.rerank_depth > 0 and not request.skip_rerank and len(fused.rows):
            depth = min(max(settings.rerank_depth, top_k), len(fused.rows))
            texts = [index.products[int(row)].search_text() for row in fused.rows[:depth]]
            scoring = asyncio.create_task(self.reranker.score(query, texts))
            # One turn of the loop runs the task up to its Triton call, or to its refusal when the reranker is
            # busy; only an admitted query gets its match features, computed while Triton scores the pairs.
            await asyncio.sleep(0)
            features = {} if scoring.done() else await asyncio.to_thread(match_features, query, texts)
            try:
                scores = await scoring
            except TritonError as error:
                degraded_reason = _also(degraded_reason, f"reranking skipped, fused order: {error}")
            else:
                fused = combine_with_reranker(fused, scores, self.reranker.weights, features)

        personalized = False
        if profile is not None and len(fused.rows):
            try:
                # A narrowed search (filters, candidates) already says what is relevant; otherwise only products
                # that match the query's words carry the user's and the shop's signals.
                matching = None if allowed is not None else lexical_scores > 0
                fused = await self.personalizer.blend(fused, pool, profile, request.blend_weights, request.explain,
                                                      depth=top_k, matching=matching)
                personalized = self.personalizer.model is not None
            except StoreError as error:
                degraded_reason = _also(degraded_reason, f"personalization skipped, non-personalized order: {error}")
                personalization = STORE_DOWN
            else:
                if not personalized:
                    personalization = "off: no blend model loaded; features shown, relevance order kept"

        items = []
        for position in range(min(top_k, len(fused.rows))):
            product = index.products[int(fused.rows[position])]
            components = ()
            if request.explain:
                components = tuple(_explain(component, position) for component in fused.components)
            items.append(ScoredItem(product.product_id, product.title, float(fused.scores[position]), components))
        return SearchResult(
            items=items,
            model_versions=dict(self.model_versions),
            degraded_reason=degraded_reason,
            took_ms=(time.perf_counter() - started) * 1000.0,
            corrected_query=query if query != request.query else "",
            personalized=personalized,
            personalization=personalization,
        )


def _explain(component: Component, position: int) -> tuple[str, float, int, float]:
    return (
        component.name,
        float(component.raw[position]),
        int(component.rank[position]),
        float(component.contribution[position]),
    )


def _why_not_personal(personalizer: Personalizer | None, request: SearchQuery) -> str:
    """What the response says when the user's profile is not asked for."""
    if personalizer is None:
        return "off: personalization is not configured"
    if not request.user_id:
        return "anonymous: no user_id, non-personalized order"
    if not request.personalize:
        return "off by request"
    return ""


def _also(reasons: str, reason: str) -> str:
    """The degraded reasons so far with one more."""
    return f"{reasons}; {reason}" if reasons else reason
