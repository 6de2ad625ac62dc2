"""The ranking pipeline: validate -> correct spelling -> encode the query -> retrieve -> fuse -> rerank ->
personalize -> top k, with explanations.

Two encoders: the English MiniLM bi-encoder ("dense") and the multilingual one ("multilingual"). A query in
Chinese (core/language.py) is not given to the English-only models at all (MiniLM, the cross-encoder); in a
query's candidates, what a component cannot read (a Chinese title for the English models, a title in another
script for BM25 and word overlap) gets the value that component gives the readable candidate at the same quantile
of the multilingual cosine (fusion.impute), so it is neither pushed down nor lifted by a model blind to it.
The combination has weights per query script (`combination.json`: {"latin": {...}, "cjk": {...}}).

Versions: every Triton call names its model version. The encoders' are the index's own (CatalogIndex.encoder_
versions: a query is encoded by the version that encoded the products it is matched against); the reranker's, and
the combination weights exported with it, come from the rollout controller's route for the request (a canary's
share of users gets the candidate; a shadow's candidate scores beside the stable version off the request path).

Domain types only; the servicer converts to and from protobuf.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from core.errors import DeadlineMissed, InvalidRequest, RerankerBusy, StoreError, TritonError
from core.features import match_features
from core.language import CJK, LATIN, NONE, script_of
from core.settings import Settings
from core.specs import BI_ENCODER, MULTILINGUAL_ENCODER, RERANKER
from core.spelling import SpellingCorrector
from core.tokenization import PairEncoder, SentencePieceEncoder, TextEncoder
from core.weights import DEFAULT_WEIGHTS

from .filters import Filter
from .fusion import Component, combine, combined_scores, fuse, impute
from .index import CatalogIndex
from .metrics import Metrics
from .personalization.blend import check_weights
from .personalization.personalizer import Personalizer
from .retrieval import top_rows
from .rollout.controller import RolloutController, Route
from .rollout.guards import rank_biased_overlap
from .triton import TritonClient

log = logging.getLogger(__name__)

MODES = ("hybrid", "lexical", "dense")
STORE_DOWN = "off: the profile store is unavailable"
# What a degraded response tells the caller: a stable code and a sentence. The error itself (addresses, client
# messages) goes to the log, never to the caller.
DEGRADED = {
    "dense_unavailable": "dense retrieval skipped, lexical results only",
    "reranker_busy": "cross-encoder skipped, ranked without it: the reranker is at its limit of concurrent queries",
    "reranker_deadline": "cross-encoder skipped, ranked without it: the reranker missed its deadline",
    "reranker_failed": "cross-encoder skipped, ranked without it: the reranker failed",
    "store_unavailable": "personalization skipped, non-personalized order: the profile store is unavailable",
}


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
    combination_weights: dict[str, float] | None = None  # overriding the served combination's (experiments)


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
    """Tokenizes in-process and gets the query's embeddings from Triton: MiniLM's, and the multilingual one's,
    from the model version given (the pipeline gives its index's)."""

    def __init__(self, client: TritonClient, tokenizer: TextEncoder,
                 multilingual_tokenizer: SentencePieceEncoder | None = None) -> None:
        self.client = client
        self.tokenizer = tokenizer
        self.multilingual_tokenizer = multilingual_tokenizer

    async def encode(self, text: str, version: str) -> np.ndarray:
        output = await self.client.infer(BI_ENCODER, self.tokenizer([text]), version)
        return output["embedding"][0]

    async def encode_multilingual(self, text: str, version: str) -> np.ndarray:
        output = await self.client.infer(MULTILINGUAL_ENCODER, self.multilingual_tokenizer([text]), version)
        return output["embedding"][0]


class Reranker:
    """Scores (query, product text) pairs with the cross-encoder in Triton: one request per query.

    At most `max_in_flight` requests wait on Triton at once; past that a query is not queued behind them
    (where it would most likely miss its deadline anyway) but answered at once without the cross-encoder
    (the same weights over the cheap components), degraded.
    """

    def __init__(self, client: TritonClient, tokenizer: PairEncoder, timeout_s: float, max_in_flight: int = 2) -> None:
        self.client = client
        self.tokenizer = tokenizer
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    def admit(self) -> None:
        """RerankerBusy when `max_in_flight` requests are already waiting on Triton."""
        if self.in_flight >= self.max_in_flight:
            raise RerankerBusy(f"reranker busy: {self.in_flight} requests already in flight")

    async def score(self, query: str, texts: list[str], version: str = "") -> np.ndarray:
        """Cross-encoder scores of that version; TritonError when Triton fails, the deadline passes or the
        reranker is busy."""
        self.admit()
        self.in_flight += 1
        try:
            feeds = self.tokenizer(query, texts)
            output = await asyncio.wait_for(self.client.infer(RERANKER, feeds, version), self.timeout_s)
        except asyncio.TimeoutError:
            raise DeadlineMissed(f"reranker missed its {self.timeout_s * 1000:.0f} ms deadline") from None
        finally:
            self.in_flight -= 1
        return output["score"][:, 0]


class Pipeline:
    """Answers SearchQuery objects against one loaded index."""

    def __init__(self, settings: Settings, index: CatalogIndex, encoder: QueryEncoder, model_versions: dict[str, str],
                 reranker: Reranker | None = None, speller: SpellingCorrector | None = None,
                 personalizer: Personalizer | None = None,
                 combination: dict[str, dict[str, float]] | None = None) -> None:
        self.settings = settings
        self.index = index
        self.encoder = encoder
        self.reranker = reranker
        self.metrics: Metrics | None = None  # set by the service when it serves metrics
        # Query script -> combination weights; a script without weights keeps the fused order. By default the
        # cross-encoder alone orders latin queries' candidates, as without a combination.json.
        self.combination = combination if combination is not None else {LATIN: dict(DEFAULT_WEIGHTS)}
        self.speller = speller
        self.personalizer = personalizer
        self.rollout: RolloutController | None = None  # set by the service: the reranker's version per request
        self._shadows: set[asyncio.Task] = set()
        self.model_versions = {**model_versions, **index.encoder_versions, "index": index.version}
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
        for name, value in (request.combination_weights or {}).items():
            if name not in DEFAULT_WEIGHTS:
                raise InvalidRequest(f"unknown combination component {name!r}; known: {', '.join(DEFAULT_WEIGHTS)}")
            if not math.isfinite(value):
                raise InvalidRequest(f"combination weight of {name} must be finite, not {value}")
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
        timings: dict[str, float] = {}
        lap = [started]

        def stage(name: str) -> None:  # the time since the previous stage ended
            now = time.perf_counter()
            timings[name] = (now - lap[0]) * 1000.0
            lap[0] = now

        top_k = self.validate(request)
        index, settings = self.index, self.settings
        use_lexical = request.mode in ("hybrid", "lexical")
        use_dense = request.mode in ("hybrid", "dense")
        use_multilingual = use_dense and self.encoder.multilingual_tokenizer is not None
        # Every model sees the corrected query: retrieval, the cross-encoder and the match features. Under 1 ms
        # for a typical query, but up to ~40 ms for 1,000 characters of long unknown words: off the event loop.
        # The user's profile loads from the store while the query is understood and retrieved.
        profile_task = None
        if self.personalizer is not None and request.user_id and request.personalize:
            profile_task = asyncio.create_task(self.personalizer.profile(request.user_id))
        query = request.query
        if self.speller is not None and request.correct_spelling:
            query = await asyncio.to_thread(self.speller.correct, query)
        script = script_of(query)
        english = script != CJK  # MiniLM and the cross-encoder read it
        stage("correct")

        # Exhaustive: the caller narrowed the set (candidates or filters), so every allowed row is scored exactly.
        allowed: np.ndarray | None = None
        if request.candidate_ids:
            allowed = np.unique(np.array([index.row_of[pid] for pid in request.candidate_ids], dtype=np.int64))
        mask = index.filter_columns.mask(list(request.filters))
        if mask is not None:
            allowed = np.flatnonzero(mask) if allowed is None else allowed[mask[allowed]]

        # The index's own encoder versions: its product vectors came from them.
        versions = index.encoder_versions
        embedding_task = (asyncio.create_task(self.encoder.encode(query, versions[BI_ENCODER.name]))
                          if use_dense and english else None)
        multilingual_task = (asyncio.create_task(self.encoder.encode_multilingual(query, versions[MULTILINGUAL_ENCODER.name]))
                             if use_multilingual else None)
        # BM25 is scored even in dense mode: it is cheap, overlaps the Triton call, and is the fallback if Triton fails.
        lexical_scores = await asyncio.to_thread(index.lexical.scores, query)

        degraded_reason = ""
        profile, personalization = None, _why_not_personal(self.personalizer, request)
        if profile_task is not None:
            try:
                profile = await profile_task
            except StoreError as error:
                degraded_reason = _degrade(degraded_reason, "store_unavailable", error)
                personalization = STORE_DOWN
            else:
                personalization = (f"personalized from {profile.events} events" if profile is not None
                                   else "cold start: no events for this user yet, non-personalized order")
        query_embedding = multilingual_embedding = None
        try:
            if embedding_task is not None:
                query_embedding = await embedding_task
            if multilingual_task is not None:
                multilingual_embedding = await multilingual_task
        except TritonError as error:
            for task in (embedding_task, multilingual_task):
                if task is not None:
                    task.cancel()
            degraded_reason = _degrade(degraded_reason, "dense_unavailable", error)
            query_embedding = multilingual_embedding = None
            use_lexical = True

        depth = max(settings.retrieve_depth, top_k)
        if allowed is not None:
            rows = allowed
        else:
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
        same_script = np.ones(len(index.products), dtype=bool) if script == NONE else index.cjk == (script == CJK)
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
        fused = pool = fuse(rows, raw, settings.fusion, settings.rrf_k, settings.blend_lexical_weight)
        stage("retrieve")  # encoding, both retrievers, the profile's load, fusion

        route = Route("")
        combination = self.combination
        if self.rollout is not None:
            route = self.rollout.route(RERANKER.name, request.user_id or request.query)
            combination = self.rollout.combination(route.version)
        weights = combination.get(CJK if script == CJK else LATIN)
        if request.combination_weights is not None:
            weights = {name: request.combination_weights.get(name, 0.0) for name in DEFAULT_WEIGHTS}
        if request.skip_rerank or not len(fused.rows):
            weights = None
        rerank = (weights is not None and weights.get("reranker", 0.0) != 0.0 and english
                  and self.reranker is not None and settings.rerank_depth > 0)
        # Weights without the cross-encoder (a CJK query's) combine the cheap components alone.
        combine_cheaply = weights is not None and weights.get("reranker", 0.0) == 0.0
        if rerank or combine_cheaply:
            depth = min(max(settings.rerank_depth or 100, top_k), len(fused.rows))
            depth_rows = fused.rows[:depth]
            depth_proxy = next((c.raw[:depth] for c in fused.components if c.name == "multilingual"), None)
            texts = [index.products[int(row)].search_text() for row in depth_rows]
            # The weights without the cross-encoder's: they order a cascade, and rank when it cannot answer.
            cheap_weights = {**weights, "reranker": 0.0}
            ranks_without_it = any(cheap_weights.values())  # weights of the cross-encoder alone have no cheap order
            # A cascade scores only the first `cross_encoder_depth` of the cheap order: the match features first.
            cascade = rerank and 0 < settings.cross_encoder_depth < depth and ranks_without_it
            scored = np.arange(depth)  # positions in depth_rows the cross-encoder scores
            standing = None  # in a cascade, each candidate's place in the cheap order (higher is better)
            scoring = (asyncio.create_task(self._score(query, texts, route.version))
                       if rerank and not cascade else None)

            async def cheap_features() -> dict[str, np.ndarray]:  # match features and intent of the depth rows
                features = await asyncio.to_thread(match_features, query, texts)
                if "overlap" in features:
                    features["overlap"] = impute(features["overlap"], same_script[depth_rows], depth_proxy)
                if index.intent is not None and multilingual_embedding is not None:
                    features["intent"] = index.intent.feature(multilingual_embedding, depth_rows)
                return features

            # One turn of the loop runs the task up to its Triton call, or to its refusal when the reranker is
            # busy; an admitted query gets its match features while Triton scores the pairs.
            await asyncio.sleep(0)
            extra: dict[str, np.ndarray] | None = None
            try:
                if cascade:
                    self.reranker.admit()  # a busy reranker refuses before the features are computed
                if scoring is None or not scoring.done():
                    extra = await cheap_features()
                if cascade:  # the cheap order: the weights without the cross-encoder, ties in the fused order
                    cheap = combined_scores(fused, cheap_weights, extra)
                    cheap_order = np.lexsort((np.arange(depth), -cheap))
                    standing = np.empty(depth)
                    standing[cheap_order] = -np.arange(depth)  # higher is better
                    scored = np.sort(cheap_order[:settings.cross_encoder_depth])
                    scoring = self._score(query, [texts[i] for i in scored], route.version)
                if scoring is not None:
                    scores = await scoring
                    extra = {"reranker": self._reranker_scores(scores, scored, depth_rows, depth_proxy, standing), **extra}
            except TritonError as error:
                code = ("reranker_busy" if isinstance(error, RerankerBusy)
                        else "reranker_deadline" if isinstance(error, DeadlineMissed) else "reranker_failed")
                degraded_reason = _degrade(degraded_reason, code, error)
                # Without the cross-encoder, the same weights rank by what they have without it.
                if ranks_without_it:
                    fused = combine(fused, cheap_weights, extra if extra is not None else await cheap_features())
            else:
                before, fused = fused, combine(fused, weights, extra)
                if route.shadow and scoring is not None:
                    # The shadow ranks by its own version's weights, unless the request named weights for both.
                    shadow_weights = (weights if request.combination_weights is not None
                                      else self.rollout.combination(route.shadow).get(CJK if script == CJK else LATIN))
                    self._shadow(route.shadow, shadow_weights, query, [texts[i] for i in scored], before, extra,
                                 fused.rows[:top_k], scored, depth_rows, depth_proxy, standing)

        stage("rerank")  # cross-encoder and match features, or the cheap combination, where they ran
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
                degraded_reason = _degrade(degraded_reason, "store_unavailable", error)
                personalization = STORE_DOWN
            else:
                if not personalized:
                    personalization = "off: no blend model loaded; features shown, relevance order kept"

        stage("personalize")
        items = []
        for position in range(min(top_k, len(fused.rows))):
            product = index.products[int(fused.rows[position])]
            components = ()
            if request.explain:
                components = tuple(_explain(component, position) for component in fused.components)
            items.append(ScoredItem(product.product_id, product.title, float(fused.scores[position]), components))
        took_ms = (time.perf_counter() - started) * 1000.0
        timings["total"] = took_ms
        if self.metrics is not None:
            self.metrics.observe(timings, degraded_reason)
        model_versions = dict(self.model_versions)
        if route.version:
            model_versions[RERANKER.name] = route.version
        return SearchResult(
            items=items,
            model_versions=model_versions,
            degraded_reason=degraded_reason,
            timings_ms=timings,
            took_ms=took_ms,
            corrected_query=query if query != request.query else "",
            personalized=personalized,
            personalization=personalization,
        )

    def _reranker_scores(self, scores: np.ndarray, scored: np.ndarray, depth_rows: np.ndarray,
                         depth_proxy: np.ndarray | None, standing: np.ndarray | None) -> np.ndarray:
        """The cross-encoder's `scores` of the `scored` positions as a component of all `depth_rows`.

        Products it cannot read (CJK titles) get its score at their quantile of the multilingual cosine among
        the ones it read; in a cascade, candidates it did not score get its score at their quantile of the
        cheap order (`standing`: the weights without it) among the ones it scored: neither pushed down nor lifted.
        """
        proxy = None if depth_proxy is None else depth_proxy[scored]
        readable = impute(scores.astype(np.float64), ~self.index.cjk[depth_rows[scored]], proxy)
        if len(scored) == len(depth_rows):
            return readable
        values = np.zeros(len(depth_rows))
        values[scored] = readable
        was_scored = np.zeros(len(depth_rows), dtype=bool)
        was_scored[scored] = True
        return impute(values, was_scored, standing)

    async def _score(self, query: str, texts: list[str], version: str) -> np.ndarray:
        """The reranker's scores from that version, counted in flight on it and recorded for its guards."""
        if self.rollout is None:
            return await self.reranker.score(query, texts, version)
        started = time.perf_counter()
        with self.rollout.track(RERANKER.name, version):
            try:
                scores = await self.reranker.score(query, texts, version)
            except RerankerBusy:
                raise  # refused before reaching the version: not the version's failure
            except TritonError:
                self.rollout.record(RERANKER.name, version, False, (time.perf_counter() - started) * 1000.0)
                raise
        self.rollout.record(RERANKER.name, version, True, (time.perf_counter() - started) * 1000.0)
        return scores

    def _shadow(self, version: str, weights: dict[str, float], query: str, texts: list[str], before, extra: dict,
                served: np.ndarray, scored: np.ndarray, depth_rows: np.ndarray, depth_proxy, standing) -> None:
        """Score the same candidates (`texts`, at the `scored` positions) with the shadow version after the answer
        is sent, rank them with `weights`, and record the RBO of its top against the served top. Skipped (and
        counted) when the reranker is at its limit: a shadow never delays or refuses a served query."""

        async def run() -> None:
            try:
                scores = await self._score(query, texts, version)
            except TritonError:
                self.rollout.record_agreement(RERANKER.name, version, None)
                return
            reranker = self._reranker_scores(scores, scored, depth_rows, depth_proxy, standing)
            shadow = combine(before, weights, {**extra, "reranker": reranker})
            agreement = rank_biased_overlap(served.tolist(), shadow.rows[:len(served)].tolist())
            self.rollout.record_agreement(RERANKER.name, version, agreement)

        task = asyncio.create_task(run())
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)


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


def _degrade(reasons: str, code: str, error: Exception) -> str:
    """The degraded reasons so far with one more, as the caller sees it ("code: sentence"); the error is logged."""
    log.warning("degraded answer (%s): %s", code, error)
    reason = f"{code}: {DEGRADED[code]}"
    return f"{reasons}; {reason}" if reasons else reason
