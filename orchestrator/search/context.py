"""What a search is asked, what it answers, and the typed context its stages pass along.

A search is the list of its stages (orchestrator/search/pipeline.py); each reads what the stages before it left on
the `SearchContext` and adds its own part. The context also keeps the search's trace: each stage's time and the
reasons the answer is degraded, recorded in one place.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from core.language import NONE
from core.errors import StoreError

from ..catalog.store import Entries
from ..deadline import cancel_and_wait, within
from ..filters import Filter
from ..fusion import Fused
from ..personalization.profile import UserProfile
from ..rollout.controller import Route

log = logging.getLogger(__name__)

# What a degraded response tells the caller: a stable code and a sentence. The error itself (addresses, client
# messages) goes to the log, never to the caller.
DEGRADED = {
    "dense_unavailable": "dense retrieval skipped, lexical results only",
    "reranker_busy": "cross-encoder skipped, ranked without it: the reranker is at its limit of concurrent queries",
    "reranker_deadline": "cross-encoder skipped, ranked without it: the reranker missed its deadline",
    "reranker_failed": "cross-encoder skipped, ranked without it: the reranker failed",
    "store_unavailable": "personalization skipped, non-personalized order: the profile store is unavailable",
}
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
    combination_weights: dict[str, float] | None = None  # overriding the served combination's (experiments)
    include_out_of_stock: bool = False  # out-of-stock products too, ranked after those in stock
    skip_cross_encoder: bool = False  # the served weights without the cross-encoder (experiments, evaluation)
    reranker_version: str = ""  # this loaded reranker version instead of the routed one (an experiment's arm)
    request_id: str = ""  # set by the pipeline when empty


@dataclass(frozen=True)
class ScoredItem:
    product_id: str
    title: str
    score: float
    components: tuple[tuple[str, float, int, float], ...] = ()  # (name, raw, rank, contribution)
    arm: str = ""  # in an experiment's answer, the arm that placed it ("control" or "treatment")


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
    shop: str = ""  # the shop served
    shop_weights: bool = False  # true when the shop's own combination weights ranked the answer
    request_id: str = ""  # the answer's id, which feedback on it sends back
    experiment: str = ""  # the experiment the answer took part in

    @property
    def degraded(self) -> bool:
        return bool(self.degraded_reason)


class Trace:
    """A search's time per stage and the reasons its answer is degraded."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.timings_ms: dict[str, float] = {}
        self.reasons: list[str] = []

    def record(self, stage: str, started: float) -> None:
        """The time since `started` (perf_counter seconds) as `stage`'s."""
        self.timings_ms[stage] = (time.perf_counter() - started) * 1000.0

    def finish(self) -> float:
        """The whole search's time in ms, recorded as "total"."""
        self.timings_ms["total"] = (time.perf_counter() - self.started) * 1000.0
        return self.timings_ms["total"]

    def degrade(self, code: str, error: Exception) -> None:
        """One more degraded reason, as the caller sees it ("code: sentence"); the error itself is logged."""
        log.warning("degraded answer (%s): %s", code, error)
        self.reasons.append(f"{code}: {DEGRADED[code]}")

    @property
    def degraded_reason(self) -> str:
        return "; ".join(self.reasons)


@dataclass
class SearchContext:
    """One search in flight: the request, and what each stage has found out so far (in the order they run)."""

    request: SearchQuery
    top_k: int
    trace: Trace = field(default_factory=Trace)
    # FetchProfile: the user's profile, loading in the background until a stage needs it.
    profile_task: asyncio.Task[UserProfile | None] | None = None
    profile: UserProfile | None = None
    personalization: str = ""  # why the order is, or is not, personalized
    # Understand: the query every model sees, its script, and its embeddings on their way from Triton.
    query: str = ""
    script: str = NONE
    embedding_task: asyncio.Task[np.ndarray] | None = None
    multilingual_task: asyncio.Task[np.ndarray] | None = None
    # Retrieve: the candidates, fused. Every order below holds positions in `candidates`.
    narrowed: bool = False  # the caller narrowed the search (candidate ids, filters)
    candidates: Entries | None = None  # the products found, with their vectors
    lexical_scores: np.ndarray | None = None  # per candidate: its BM25 score (0: no word of the query)
    multilingual_embedding: np.ndarray | None = None
    same_script: np.ndarray | None = None  # per candidate: written in the query's script
    pool: Fused | None = None  # every candidate in fused order
    # Rerank, then Personalize: the order so far.
    ranking: Fused | None = None
    route: Route = field(default_factory=lambda: Route(""))  # the reranker version that answers
    shop_weights: bool = False  # the shop's own combination weights ranked the answer
    personalized: bool = False
    # Order: the answer.
    items: list[ScoredItem] = field(default_factory=list)

    async def cancel_tasks(self) -> None:
        """Cancel the background work started for this search (its profile read, its query's encodings) and wait
        for it to end, reading the errors of the parts that failed already."""
        await cancel_and_wait(self.profile_task, self.embedding_task, self.multilingual_task)

    async def user_profile(self) -> UserProfile | None:
        """The user's profile, once loaded (None: anonymous, cold start, off, or the store is down)."""
        task, self.profile_task = self.profile_task, None
        if task is None:
            return self.profile
        try:
            self.profile = await within(task, math.inf, "the profile store")
        except StoreError as error:
            self.trace.degrade("store_unavailable", error)
            self.personalization = STORE_DOWN
        else:
            self.personalization = (f"personalized from {self.profile.events} events" if self.profile is not None
                                    else "cold start: no events for this user yet, non-personalized order")
        return self.profile


class Stage(Protocol):
    """One step of a search: reads the context, adds its part."""

    name: str  # the stage's key in timings and metrics

    async def run(self, context: SearchContext) -> None: ...
