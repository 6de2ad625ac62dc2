"""The gRPC servicer: protobuf <-> domain types, and the one place where errors become status codes."""

from __future__ import annotations

import logging

import grpc

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from core.errors import InvalidRequest, ShoprankError, TritonError

from .filters import Filter
from .pipeline import Pipeline, SearchQuery, SearchResult

log = logging.getLogger(__name__)

_MODES = {
    ranking_pb2.RETRIEVAL_MODE_UNSPECIFIED: "hybrid",
    ranking_pb2.RETRIEVAL_MODE_HYBRID: "hybrid",
    ranking_pb2.RETRIEVAL_MODE_LEXICAL: "lexical",
    ranking_pb2.RETRIEVAL_MODE_DENSE: "dense",
}


def to_query(request: ranking_pb2.SearchRequest) -> SearchQuery:
    """Protobuf request -> domain query."""
    return SearchQuery(
        query=request.query,
        user_id=request.user_id,
        top_k=request.top_k if request.HasField("top_k") else None,
        filters=tuple(
            Filter(
                field=item.field,
                any_of=tuple(item.any_of),
                min=item.min if item.HasField("min") else None,
                max=item.max if item.HasField("max") else None,
            )
            for item in request.filters
        ),
        candidate_ids=tuple(request.candidate_ids),
        explain=request.explain,
        mode=_MODES.get(request.retrieval, f"unknown ({request.retrieval})"),
        skip_rerank=request.skip_rerank,
        correct_spelling=not request.skip_spelling_correction,
    )


def to_response(result: SearchResult) -> ranking_pb2.SearchResponse:
    """Domain result -> protobuf response."""
    return ranking_pb2.SearchResponse(
        items=[
            ranking_pb2.Item(
                product_id=item.product_id,
                title=item.title,
                score=item.score,
                components=[
                    ranking_pb2.ScoreComponent(name=name, raw=raw, rank=rank, contribution=contribution)
                    for name, raw, rank, contribution in item.components
                ],
            )
            for item in result.items
        ],
        model_versions=result.model_versions,
        degraded=result.degraded,
        degraded_reason=result.degraded_reason,
        took_ms=result.took_ms,
        corrected_query=result.corrected_query,
    )


class RankingServicer(ranking_pb2_grpc.RankingServicer):
    """shoprank.v1.Ranking over a Pipeline."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def Search(self, request: ranking_pb2.SearchRequest, context: grpc.aio.ServicerContext) -> ranking_pb2.SearchResponse:  # noqa: N802
        try:
            result = await self.pipeline.search(to_query(request))
        except InvalidRequest as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except TritonError as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        except ShoprankError as error:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except Exception:
            log.exception("search failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; the server log has the details")
        return to_response(result)
