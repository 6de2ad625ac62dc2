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

A search in an experiment (orchestrator/experiments) is ranked by its arm (A/B), or, interleaved, the first three
stages run once and the last three once per arm on the same candidates, and the answer is the team-draft
interleaving of the two rankings; when an arm ranked degraded (the cross-encoder busy for one of them), the arms
were not compared as they are, and the control's ranking answers, left out of the experiment. Every answer gets a
request id and goes to the impression log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Sequence

from core.language import LATIN
from core.settings import Settings
from core.specs import RERANKER
from core.spelling import SpellingCorrector
from core.weights import DEFAULT_WEIGHTS

from ..catalog.store import CatalogStore
from ..deadline import cancel_and_wait, reset_deadline, set_deadline
from ..experiments.arms import Arm
from ..experiments.controller import Assignment, ExperimentController
from ..experiments.impressions import Impression, ImpressionLog, Interaction
from ..experiments.interleave import CONTROL, TREATMENT, team_draft
from ..metrics import Metrics
from ..personalization.events import Event
from ..personalization.personalizer import Personalizer, user_key
from ..rollout.controller import RolloutController, Route
from .context import ScoredItem, SearchContext, SearchQuery, SearchResult, Stage
from .cross_encoder import CrossEncoder
from .order import Order
from .personalize import FetchProfile, Personalize
from .rerank import Rerank
from .retrieve import Retrieve
from .understand import QueryEncoder, Understand
from .validate import validate

log = logging.getLogger(__name__)


class Pipeline:
    """Answers SearchQuery objects against one shop's catalog."""

    def __init__(self, settings: Settings, catalog: CatalogStore, encoder: QueryEncoder, model_versions: dict[str, str],
                 *, cross_encoder: CrossEncoder | None = None, speller: SpellingCorrector | None = None,
                 personalizer: Personalizer | None = None, combination: dict[str, dict[str, float]] | None = None,
                 rollout: RolloutController | None = None, metrics: Metrics | None = None,
                 shop_weights: bool = False, experiments: ExperimentController | None = None,
                 impressions: ImpressionLog | None = None, log_key: bytes = b"") -> None:
        """`combination`: query script -> weights when no rollout controller gives a version's (by default the
        cross-encoder alone orders latin queries' candidates; `shop_weights`: they are the catalog's shop's own);
        `metrics`: where each search's figures go; `experiments`: assigns searches to the running experiment;
        `impressions`: where answers and the feedback on them are logged, users as hashes keyed by `log_key`."""
        self.settings = settings
        self.experiments = experiments
        self.impressions = impressions
        self.log_key = log_key
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
        # Retrieval is shared by an interleaved search's two arms; the ranking stages run once per arm.
        self._retrieval, self._ranking = self.stages[:3], self.stages[3:]

    def use_speller(self, speller: SpellingCorrector | None) -> None:
        """Correct spelling with this corrector from the next search on (the catalog's vocabulary changed)."""
        self._understand.speller = speller

    def validate(self, request: SearchQuery) -> int:
        """Raise InvalidRequest for anything malformed; return the effective top_k."""
        return validate(request, self.settings)

    async def search(self, request: SearchQuery, deadline_s: float | None = None) -> SearchResult:
        """Rank the catalog, or the given candidates, for the query, within `deadline_s` seconds when given (every
        call made for it gets at most the time left: orchestrator/deadline.py). DeadlineExceeded when it runs out."""
        token = set_deadline(deadline_s)
        try:
            return await self._search(request)
        finally:
            reset_deadline(token)

    async def _search(self, request: SearchQuery) -> SearchResult:
        if not request.request_id:
            request = dataclasses.replace(request, request_id=uuid.uuid4().hex)
        top_k = self.validate(request)
        assignment = (self.experiments.assign(request.user_id, request.request_id)
                      if self.experiments is not None else None)
        if assignment is not None and assignment.method == "ab":
            request = assignment.arm_query(request)
        context = SearchContext(request, top_k=top_k)
        trace = context.trace
        try:
            await self._run(self._retrieval, context)
        except BaseException:  # failed, or cancelled (the caller went away): stop the work started for it
            await context.cancel_tasks()
            raise
        answered = context
        if assignment is not None and assignment.method == "interleave":
            reasons = len(trace.reasons)
            arms = [asyncio.create_task(self._rank_as(context, arm)) for arm in (assignment.control,
                                                                                 assignment.treatment)]
            try:
                control, treatment = await asyncio.gather(*arms)
            except BaseException:  # one arm failed, or the caller went away: the other arm stops too
                await cancel_and_wait(*arms)
                raise
            answered = control
            if len(trace.reasons) > reasons:
                # An arm ranked without one of its parts (the cross-encoder was busy for one of the two, the profile
                # store failed): the arms were not compared as they are. The control's ranking answers, uncounted.
                items, assignment = control.items, None
            else:
                items = _interleaved(control.items, treatment.items, top_k, request.request_id)
        else:
            await self._run(self._ranking, context)
            items = [dataclasses.replace(item, arm=assignment.arm) for item in context.items] if assignment else context.items
        took_ms = trace.finish()
        if self.metrics is not None:
            self.metrics.observe(trace.timings_ms, trace.degraded_reason)
        # The catalog's, as read now: a Milvus catalog may have switched to a generation embedded by other versions.
        model_versions = {**self.model_versions, **self.catalog.encoder_versions, "index": self.catalog.version}
        if answered.route.version:
            model_versions[RERANKER.name] = answered.route.version
        if assignment is not None and answered is not context and treatment.route.version not in ("", answered.route.version):
            model_versions[f"{RERANKER.name}.treatment"] = treatment.route.version
        result = SearchResult(
            items=items,
            model_versions=model_versions,
            degraded_reason=trace.degraded_reason,
            timings_ms=trace.timings_ms,
            took_ms=took_ms,
            corrected_query=context.query if context.query != request.query else "",
            personalized=answered.personalized,
            personalization=answered.personalization,
            shop=self.catalog.shop,
            shop_weights=answered.shop_weights,
            request_id=request.request_id,
            experiment=assignment.experiment if assignment is not None else "",
        )
        self._served(request, assignment, result)
        return result

    @staticmethod
    async def _run(stages: Sequence[Stage], context: SearchContext) -> None:
        for stage in stages:
            started = time.perf_counter()
            await stage.run(context)
            context.trace.record(stage.name, started)

    async def _rank_as(self, context: SearchContext, arm: Arm) -> SearchContext:
        """The retrieved candidates of `context` ranked as `arm` ranks them, in a context of their own."""
        request = arm.apply(context.request)
        fork = dataclasses.replace(context, request=request, items=[], route=Route(""), shop_weights=False,
                                   personalized=False)
        if context.profile is not None and not request.personalize:
            fork.profile, fork.personalization = None, "off by request"
        await self._run(self._ranking, fork)
        return fork

    def _served(self, request: SearchQuery, assignment: Assignment | None, result: SearchResult) -> None:
        """Tell the experiment what was shown, and log the answer (neither waits nor fails the search)."""
        products = [item.product_id for item in result.items]
        arms = [item.arm for item in result.items]
        if assignment is not None:
            self.experiments.served(request.request_id, assignment, products, arms)
        if self.impressions is not None:
            self.impressions.record(Impression(
                request_id=request.request_id, time=time.time(), shop=result.shop,
                user=user_key(request.user_id, self.log_key) if request.user_id else "", query=request.query,
                products=tuple(products), arms=tuple(arms), experiment=result.experiment,
                model_versions=result.model_versions, corrected_query=result.corrected_query,
                degraded=result.degraded))

    def feedback(self, events: Sequence[Event], added: Sequence[bool]) -> None:
        """Join the newly recorded events that name a request to its answer (crediting the experiment's arms) and
        log them; duplicates were counted the first time."""
        try:
            self._join(events, added)
        except Exception:  # the events are recorded already: a failed join must not fail their acknowledgement
            log.exception("feedback not joined to its answers")

    def _join(self, events: Sequence[Event], added: Sequence[bool]) -> None:
        for event, new in zip(events, added):
            if not new or not event.request_id:
                continue
            experiment, arm, position = (self.experiments.join(event.request_id, event.product_id, event.type,
                                                               event.position)
                                         if self.experiments is not None else ("", "", event.position))
            if self.impressions is not None:
                self.impressions.record(Interaction(
                    request_id=event.request_id, time=event.time, event_id=event.event_id,
                    user=user_key(event.user_id, self.log_key), product_id=event.product_id, type=event.type,
                    position=position, arm=arm, experiment=experiment, joined=bool(experiment)))


def _interleaved(control: list[ScoredItem], treatment: list[ScoredItem], length: int,
                 request_id: str) -> list[ScoredItem]:
    """The team-draft interleaving of the two arms' answers, each item marked with the arm that placed it. The
    coin flips are seeded by the request id, so an answer can be drawn again from its two rankings."""
    by_id = {CONTROL: {item.product_id: item for item in control},
             TREATMENT: {item.product_id: item for item in treatment}}
    shown = team_draft([item.product_id for item in control], [item.product_id for item in treatment], length,
                       random.Random(request_id))
    return [dataclasses.replace(by_id[team][product_id], arm=team) for product_id, team in shown]
