"""Personalize: the user's profile, loaded in the background from the start of a search, and the learned blend of
relevance, the user's preferences and popularity over the relevance order (orchestrator/personalization/)."""

from __future__ import annotations

import asyncio

from core.errors import StoreError

from ..personalization.personalizer import Personalizer
from .context import STORE_DOWN, SearchContext


class FetchProfile:
    """Starts loading the user's profile, which Retrieve awaits (the user's own products are candidates too)."""

    name = "profile"

    def __init__(self, personalizer: Personalizer | None) -> None:
        self.personalizer = personalizer

    async def run(self, context: SearchContext) -> None:
        request = context.request
        if self.personalizer is None:
            context.personalization = "off: personalization is not configured"
        elif not request.user_id:
            context.personalization = "anonymous: no user_id, non-personalized order"
        elif not request.personalize:
            context.personalization = "off by request"
        else:
            context.profile_task = asyncio.create_task(self.personalizer.profile(request.user_id))


class Personalize:
    """The head of `context.ranking` re-ordered by the blend model, for a user with a profile."""

    name = "personalize"

    def __init__(self, personalizer: Personalizer | None) -> None:
        self.personalizer = personalizer

    async def run(self, context: SearchContext) -> None:
        if context.profile is None or not len(context.ranking.rows):
            return
        request = context.request
        # A narrowed search (filters, candidates) already says what is relevant; otherwise only products that match
        # the query's words carry the user's and the shop's signals.
        matching = None if context.narrowed else context.lexical_scores > 0
        try:
            context.ranking = await self.personalizer.blend(context.candidates, context.ranking, context.pool,
                                                            context.profile, request.blend_weights, request.explain,
                                                            depth=context.top_k, matching=matching)
        except StoreError as error:
            context.trace.degrade("store_unavailable", error)
            context.personalization = STORE_DOWN
            return
        context.personalized = self.personalizer.model is not None
        if not context.personalized:
            context.personalization = "off: no blend model loaded; features shown, relevance order kept"
