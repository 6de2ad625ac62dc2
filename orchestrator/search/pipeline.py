"""A search as the list of its stages, built complete at start.

    profile      FetchProfile  the user's profile starts loading from the store (awaited where it is needed)
    understand   Understand    correct the spelling, find the script, start encoding the query through Triton
    retrieve     Retrieve      BM25 and both ANN indexes (or the products the caller named), scored exactly, fused
    rerank       Rerank        match features, intent and the cross-encoder over the head, by the version's weights
    personalize  Personalize   the learned blend of relevance, the user's preferences and popularity
    order        Order         the top k, each score explained on request

Each stage reads the `SearchContext` the ones before it filled in and adds its part; the pipeline times each stage
and collects degraded reasons in the context's trace, and reports both to the metrics. Domain types only: the
servicer converts to and from protobuf.
"""

from __future__ import annotations

import time

from core.language import LATIN
from core.settings import Settings
from core.specs import RERANKER
from core.spelling import SpellingCorrector
from core.weights import DEFAULT_WEIGHTS

from ..catalog.store import CatalogStore
from ..metrics import Metrics
from ..personalization.personalizer import Personalizer
from ..rollout.controller import RolloutController
from .context import SearchContext, SearchQuery, SearchResult, Stage
from .cross_encoder import CrossEncoder
from .order import Order
from .personalize import FetchProfile, Personalize
from .rerank import Rerank
from .retrieve import Retrieve
from .understand import QueryEncoder, Understand
from .validate import validate


class Pipeline:
    """Answers SearchQuery objects against one shop's catalog."""

    def __init__(self, settings: Settings, catalog: CatalogStore, encoder: QueryEncoder, model_versions: dict[str, str],
                 *, cross_encoder: CrossEncoder | None = None, speller: SpellingCorrector | None = None,
                 personalizer: Personalizer | None = None, combination: dict[str, dict[str, float]] | None = None,
                 rollout: RolloutController | None = None, metrics: Metrics | None = None,
                 shop_weights: bool = False) -> None:
        """`combination`: query script -> weights when no rollout controller gives a version's (by default the
        cross-encoder alone orders latin queries' candidates; `shop_weights`: they are the catalog's shop's own);
        `metrics`: where each search's figures go."""
        self.settings = settings
        self.catalog = catalog
        self.personalizer = personalizer
        self.metrics = metrics
        self.model_versions = {**model_versions, **catalog.encoder_versions, "index": catalog.version}
        if personalizer is not None and personalizer.model is not None:
            self.model_versions["blend"] = str(personalizer.model.version)
        combination = combination if combination is not None else {LATIN: dict(DEFAULT_WEIGHTS)}
        self._understand = Understand(catalog, encoder, speller)
        self.stages: tuple[Stage, ...] = (
            FetchProfile(personalizer),
            self._understand,
            Retrieve(settings, catalog, personalizer),
            Rerank(settings, catalog, cross_encoder, combination, rollout, shop_weights),
            Personalize(personalizer),
            Order(),
        )

    def use_speller(self, speller: SpellingCorrector | None) -> None:
        """Correct spelling with this corrector from the next search on (the catalog's vocabulary changed)."""
        self._understand.speller = speller

    def validate(self, request: SearchQuery) -> int:
        """Raise InvalidRequest for anything malformed; return the effective top_k."""
        return validate(request, self.settings)

    async def search(self, request: SearchQuery) -> SearchResult:
        """Rank the catalog, or the given candidates, for the query."""
        context = SearchContext(request, top_k=self.validate(request))
        trace = context.trace
        for stage in self.stages:
            started = time.perf_counter()
            await stage.run(context)
            trace.record(stage.name, started)
        took_ms = trace.finish()
        if self.metrics is not None:
            self.metrics.observe(trace.timings_ms, trace.degraded_reason)
        # The catalog's, as read now: a Milvus catalog may have switched to a generation embedded by other versions.
        model_versions = {**self.model_versions, **self.catalog.encoder_versions, "index": self.catalog.version}
        if context.route.version:
            model_versions[RERANKER.name] = context.route.version
        return SearchResult(
            items=context.items,
            model_versions=model_versions,
            degraded_reason=trace.degraded_reason,
            timings_ms=trace.timings_ms,
            took_ms=took_ms,
            corrected_query=context.query if context.query != request.query else "",
            personalized=context.personalized,
            personalization=context.personalization,
            shop=self.catalog.shop,
            shop_weights=context.shop_weights,
        )
