"""Rerank the head of the fused order: match features, the query's category (intent) and the cross-encoder,
combined by the weights of the reranker version that answers.

Weights: the combination exported with each reranker version, per query script (`combination.json`:
{"latin": {...}, "cjk": {...}}); a script without weights keeps the fused order. The version comes from the rollout
controller's route for the request: a canary's share of users gets the candidate, and a shadow's candidate scores
beside the stable version after the answer is sent. A cascade sends the cross-encoder only the first
`cross_encoder_depth` candidates of the order of the weights without it. Without the cross-encoder's scores (busy,
past its deadline, Triton failed) the same weights rank by what they have without it, degraded.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from core.errors import DeadlineMissed, RerankerBusy, TritonError
from core.features import match_features
from core.language import CJK, LATIN
from core.settings import Settings
from core.specs import RERANKER
from core.weights import DEFAULT_WEIGHTS

from ..catalog.store import CatalogStore
from ..deadline import cancel_and_wait
from ..fusion import Fused, combine, combined_scores, impute
from ..rollout.controller import RolloutController, Route
from ..rollout.guards import rank_biased_overlap
from .context import SearchContext
from .cross_encoder import CrossEncoder


@dataclass(frozen=True)
class Head:
    """The first candidates of the fused order, the ones this stage scores."""

    rows: np.ndarray  # positions among the search's candidates
    texts: list[str]
    categories: list[str]
    cjk: np.ndarray  # written in CJK characters: the cross-encoder cannot read them
    proxy: np.ndarray | None  # their multilingual cosine, which stands in where another model cannot read

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class Scored:
    """Which of the head the cross-encoder scores: `positions` in it, and in a cascade each candidate's place in
    the cheap order (`standing`, higher is better) to give the others its score at their place."""

    positions: np.ndarray
    standing: np.ndarray | None = None


class Rerank:
    """The head of `context.ranking` re-ordered by the combination weights of the version that answers."""

    name = "rerank"

    def __init__(self, settings: Settings, catalog: CatalogStore, cross_encoder: CrossEncoder | None,
                 combination: dict[str, dict[str, float]], rollout: RolloutController | None,
                 shop_weights: bool = False) -> None:
        self.settings = settings
        self.catalog = catalog
        self.cross_encoder = cross_encoder
        self.combination = combination  # query script -> weights, when no rollout controller gives them
        self.shop_weights = shop_weights  # whether those are the shop's own
        self.rollout = rollout
        self._shadows: set[asyncio.Task] = set()

    async def run(self, context: SearchContext) -> None:
        settings, fused = self.settings, context.ranking
        context.route, weights, own = self._route(context)
        if context.request.skip_rerank or not len(fused.rows) or weights is None:
            return
        context.shop_weights = own
        with_it = weights.get("reranker", 0.0) != 0.0
        rerank = (with_it and context.script != CJK and self.cross_encoder is not None and settings.rerank_depth > 0)
        if with_it and not rerank:  # the cross-encoder is weighted but cannot score: the fused order stays
            return
        head = self._head(context, min(max(settings.rerank_depth or 100, context.top_k), len(fused.rows)))
        # The weights without the cross-encoder's: they order a cascade, and rank when it cannot answer.
        cheap_weights = {**weights, "reranker": 0.0}
        ranks_without_it = any(cheap_weights.values())  # weights of the cross-encoder alone have no cheap order
        cascade = rerank and 0 < settings.cross_encoder_depth < len(head) and ranks_without_it
        scored = Scored(np.arange(len(head)))
        version = context.route.version
        scoring = (asyncio.create_task(self._score(context.query, head.texts, version))
                   if rerank and not cascade else None)
        # One turn of the loop runs the task up to its Triton call, or to its refusal when the reranker is busy;
        # an admitted query gets its match features while Triton scores the pairs.
        await asyncio.sleep(0)
        extra: dict[str, np.ndarray] | None = None
        try:
            if cascade:
                self.cross_encoder.admit()  # a busy reranker refuses before the features are computed
            if scoring is None or not scoring.done():
                extra = await self._cheap_features(context, head)
            if cascade:
                scored = self._cascade(fused, cheap_weights, extra, len(head))
                scoring = self._score(context.query, [head.texts[i] for i in scored.positions], version)
            if scoring is not None:
                scores = await scoring
                extra = {"reranker": self._reranker_scores(scores, scored, head), **extra}
        except (TritonError, RerankerBusy) as error:
            code = ("reranker_busy" if isinstance(error, RerankerBusy)
                    else "reranker_deadline" if isinstance(error, DeadlineMissed) else "reranker_failed")
            context.trace.degrade(code, error)
            if ranks_without_it:  # the same weights rank by what they have without it
                extra = extra if extra is not None else await self._cheap_features(context, head)
                context.ranking = combine(fused, cheap_weights, extra)
            return
        finally:
            if isinstance(scoring, asyncio.Task):
                # Left before the scores were awaited (the search was cancelled during the match features, or they
                # failed): the cross-encoder's call ends with the search, its error read. Awaited: nothing to do.
                await cancel_and_wait(scoring)
        context.ranking = combine(fused, weights, extra)
        if context.route.shadow and scoring is not None:
            # The shadow ranks by its own version's weights, unless the request named weights for both.
            shadow_weights = (weights if context.request.combination_weights is not None
                              else self.rollout.combination(context.route.shadow).get(_script_key(context)))
            self._shadow(context, fused, shadow_weights, head, scored, extra)

    def _route(self, context: SearchContext) -> tuple[Route, dict[str, float] | None, bool]:
        """The reranker version that answers (and its shadow), the weights to combine by: the request's, else
        that version's for the query's script (None: keep the fused order), and whether they are the shop's own."""
        request, route, combination, own = context.request, Route(""), self.combination, self.shop_weights
        if self.rollout is not None:
            route = self.rollout.route(RERANKER.name, request.user_id or request.query)
            combination, own = self.rollout.combination(route.version), self.rollout.shop_weights(route.version)
        if request.reranker_version and self.rollout is not None:  # an experiment's arm names its version
            route = Route(request.reranker_version)
            combination, own = (self.rollout.combination(route.version),
                                self.rollout.shop_weights(route.version))
        if request.combination_weights is not None:
            return route, {name: request.combination_weights.get(name, 0.0) for name in DEFAULT_WEIGHTS}, False
        weights = combination.get(_script_key(context))
        if request.skip_cross_encoder and weights is not None:
            weights = {**weights, "reranker": 0.0}
            if not any(weights.values()):  # weights of the cross-encoder alone: nothing else ranks, keep the fused order
                return route, None, own
        return route, weights, own

    def _head(self, context: SearchContext, depth: int) -> Head:
        fused = context.ranking
        rows = fused.rows[:depth]
        proxy = next((component.raw[:depth] for component in fused.components if component.name == "multilingual"),
                     None)
        products = [context.candidates.products[position] for position in rows.tolist()]
        return Head(rows, [product.search_text() for product in products], [product.category for product in products],
                    context.candidates.cjk[rows], proxy)

    async def _cheap_features(self, context: SearchContext, head: Head) -> dict[str, np.ndarray]:
        """The head's match features and intent (the query's category), off the event loop."""
        features = await asyncio.to_thread(match_features, context.query, head.texts)
        if "overlap" in features:
            features["overlap"] = impute(features["overlap"], context.same_script[head.rows], head.proxy)
        if self.catalog.intent is not None and context.multilingual_embedding is not None:
            features["intent"] = self.catalog.intent.feature(context.multilingual_embedding, head.categories)
        return features

    def _cascade(self, fused: Fused, cheap_weights: dict[str, float], extra: dict[str, np.ndarray],
                 depth: int) -> Scored:
        """The first `cross_encoder_depth` of the head's cheap order (the weights without the cross-encoder, ties
        in the fused order), and every candidate's place in it."""
        cheap = combined_scores(fused, cheap_weights, extra)
        cheap_order = np.lexsort((np.arange(depth), -cheap))
        standing = np.empty(depth)
        standing[cheap_order] = -np.arange(depth)  # higher is better
        return Scored(np.sort(cheap_order[:self.settings.cross_encoder_depth]), standing)

    def _reranker_scores(self, scores: np.ndarray, scored: Scored, head: Head) -> np.ndarray:
        """The cross-encoder's `scores` of the `scored` positions as a component of the whole head.

        Products it cannot read (CJK titles) get its score at their quantile of the multilingual cosine among
        the ones it read; in a cascade, candidates it did not score get its score at their quantile of the
        cheap order (the weights without it) among the ones it scored: neither pushed down nor lifted.
        """
        positions = scored.positions
        proxy = None if head.proxy is None else head.proxy[positions]
        readable = impute(scores.astype(np.float64), ~head.cjk[positions], proxy)
        if len(positions) == len(head):
            return readable
        values = np.zeros(len(head))
        values[positions] = readable
        was_scored = np.zeros(len(head), dtype=bool)
        was_scored[positions] = True
        return impute(values, was_scored, scored.standing)

    async def _score(self, query: str, texts: list[str], version: str) -> np.ndarray:
        """The cross-encoder's scores from that version, counted in flight on it and recorded for its guards."""
        if self.rollout is None:
            return await self.cross_encoder.score(query, texts, version)
        started = time.perf_counter()
        with self.rollout.track(RERANKER.name, version):
            try:
                scores = await self.cross_encoder.score(query, texts, version)
            except RerankerBusy:
                raise  # refused before reaching the version: not the version's failure
            except TritonError:
                self.rollout.record(RERANKER.name, version, False, (time.perf_counter() - started) * 1000.0)
                raise
        self.rollout.record(RERANKER.name, version, True, (time.perf_counter() - started) * 1000.0)
        return scores

    def _shadow(self, context: SearchContext, before: Fused, weights: dict[str, float], head: Head, scored: Scored,
                extra: dict[str, np.ndarray]) -> None:
        """Score the same candidates with the shadow version after the answer is sent, rank them from the order
        `before` this stage with `weights`, and record the RBO of its top against the served top. Skipped (and
        counted) when the reranker is at its limit: a shadow never delays or refuses a served query."""
        version, served = context.route.shadow, context.ranking.rows[:context.top_k]
        texts = [head.texts[i] for i in scored.positions]

        async def run() -> None:
            try:
                scores = await self._score(context.query, texts, version)
            except (TritonError, RerankerBusy):
                self.rollout.record_agreement(RERANKER.name, version, None)
                return
            shadow = combine(before, weights, {**extra, "reranker": self._reranker_scores(scores, scored, head)})
            agreement = rank_biased_overlap(served.tolist(), shadow.rows[:len(served)].tolist())
            self.rollout.record_agreement(RERANKER.name, version, agreement)

        task = asyncio.create_task(run())
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)


def _script_key(context: SearchContext) -> str:
    """The combination's key for the query's script."""
    return CJK if context.script == CJK else LATIN
