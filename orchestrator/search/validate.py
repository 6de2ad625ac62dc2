"""What a search request must be before any stage runs: InvalidRequest names what is wrong."""

from __future__ import annotations

import math

from core.errors import InvalidRequest
from core.settings import Settings
from core.weights import DEFAULT_WEIGHTS

from ..filters import validate_filters
from ..personalization.blend import check_weights
from .context import SearchQuery

MODES = ("hybrid", "lexical", "dense")


def validate(request: SearchQuery, settings: Settings) -> int:
    """Raise InvalidRequest for anything malformed; return the effective top_k. (Candidate ids the catalog does not
    hold are named when Retrieve fetches them.)"""
    if not request.query.strip():
        raise InvalidRequest("query is empty")
    if len(request.query) > settings.max_query_chars:
        raise InvalidRequest(f"query has {len(request.query)} characters; the limit is {settings.max_query_chars}")
    top_k = settings.default_top_k if request.top_k is None else request.top_k
    if not 1 <= top_k <= settings.max_top_k:
        raise InvalidRequest(f"top_k must be between 1 and {settings.max_top_k}, not {top_k}")
    if request.mode not in MODES:
        raise InvalidRequest(f"unknown retrieval mode {request.mode!r}; known: {', '.join(MODES)}")
    validate_filters(request.filters)
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
    return top_k
