"""The gRPC servicer: protobuf <-> domain types, and the one place where errors become status codes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from core.errors import (CatalogStoreError, CatalogUnavailable, DeadlineExceeded, InvalidEvent, InvalidRequest,
                         ShoprankError, StoreError, TritonError, status_detail)

from .filters import Filter
from .personalization.events import Event
from .personalization.personalizer import user_key
from .search import Pipeline, SearchQuery, SearchResult

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
        personalize=not request.skip_personalization,
        blend_weights={field.name: value for field, value in request.blend_weights.ListFields()}
        if request.HasField("blend_weights") else None,
        combination_weights=dict(request.combination_weights) if request.combination_weights else None,
        include_out_of_stock=request.include_out_of_stock,
        skip_cross_encoder=request.skip_cross_encoder,
    )


_EVENT_TYPES = {
    ranking_pb2.EVENT_TYPE_VIEW: "view",
    ranking_pb2.EVENT_TYPE_CLICK: "click",
    ranking_pb2.EVENT_TYPE_CART: "cart",
    ranking_pb2.EVENT_TYPE_PURCHASE: "purchase",
}
# Feedback streams are recorded in batches: each batch is one durable write to the store.
STREAM_BATCH = 500
MAX_LISTED_ERRORS = 1000


def to_event(message: ranking_pb2.FeedbackEvent) -> Event:
    """Protobuf event -> domain event (validated later, against the catalog)."""
    return Event(
        event_id=message.event_id,
        user_id=message.user_id,
        product_id=message.product_id,
        type=_EVENT_TYPES.get(message.type, "unspecified" if message.type == 0 else f"unknown ({message.type})"),
        time=message.time.seconds + message.time.nanos / 1e9 if message.HasField("time") else 0.0,
        query=message.query,
        quantity=message.quantity if message.HasField("quantity") else 1,
        request_id=message.request_id,
        position=message.position if message.HasField("position") else 0,
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
                arm=item.arm,
            )
            for item in result.items
        ],
        model_versions=result.model_versions,
        shop=result.shop,
        shop_weights=result.shop_weights,
        degraded=result.degraded,
        degraded_reason=result.degraded_reason,
        took_ms=result.took_ms,
        corrected_query=result.corrected_query,
        personalized=result.personalized,
        personalization=result.personalization,
        request_id=result.request_id,
        experiment=result.experiment,
    )


class RankingServicer(ranking_pb2_grpc.RankingServicer):
    """shoprank.v1.Ranking over a Pipeline."""

    def __init__(self, pipeline: Pipeline, log_key: bytes = b"") -> None:
        self.pipeline = pipeline
        self.log_key = log_key

    async def Search(self, request: ranking_pb2.SearchRequest, context: grpc.aio.ServicerContext) -> ranking_pb2.SearchResponse:  # noqa: N802
        try:
            result = await self.pipeline.search(to_query(request), deadline_s=context.time_remaining())
        except InvalidRequest as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, status_detail(error))
        except DeadlineExceeded as error:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, status_detail(error))
        except (TritonError, CatalogUnavailable) as error:  # a server the search needs is down: ask again later
            await context.abort(grpc.StatusCode.UNAVAILABLE, status_detail(error))
        except ShoprankError as error:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, status_detail(error))
        except Exception:
            log.exception("search failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; the server log has the details")
        return to_response(result)

    def _personalizer(self):
        if self.pipeline.personalizer is None:
            raise StoreError("personalization is not configured on this server")
        return self.pipeline.personalizer

    async def Feedback(self, request: ranking_pb2.FeedbackEvent, context: grpc.aio.ServicerContext) -> ranking_pb2.FeedbackAck:  # noqa: N802
        try:
            event = to_event(request)
            [added] = await self._personalizer().record([event])
            self.pipeline.feedback([event], [added])
        except (InvalidEvent, InvalidRequest) as error:  # the event, or what the catalog it checks cannot read
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, status_detail(error))
        except (StoreError, CatalogStoreError, DeadlineExceeded) as error:  # the store, or the catalog it checks
            await context.abort(grpc.StatusCode.UNAVAILABLE, status_detail(f"event not recorded, send it again: {error}"))
        except Exception:
            log.exception("feedback failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; the event was not recorded")
        return ranking_pb2.FeedbackAck(duplicate=not added)

    async def FeedbackStream(self, request_iterator: AsyncIterator[ranking_pb2.FeedbackEvent], context: grpc.aio.ServicerContext) -> ranking_pb2.FeedbackStreamResult:  # noqa: N802
        """Events are checked and recorded batch by batch (one catalog read and one store write a batch), an invalid
        one rejected by its index; a store failure ends the call with UNAVAILABLE, saying how many events before it
        were recorded, so the sender can resume from there."""
        result = ranking_pb2.FeedbackStreamResult()
        pending: list[tuple[int, Event]] = []  # received, not yet checked: (stream index, event)
        recorded = 0  # events of the stream, counted from its start, that are decided (recorded or rejected)

        async def flush() -> None:
            nonlocal recorded
            checked = await personalizer.check_all([event for _, event in pending])
            batch = [item for item in checked if isinstance(item, Event)]
            for (index, event), item in zip(pending, checked):
                if isinstance(item, InvalidEvent):
                    result.rejected += 1
                    if len(result.errors) < MAX_LISTED_ERRORS:
                        result.errors.append(ranking_pb2.EventError(index=index, event_id=event.event_id[:256], reason=status_detail(item)))
            if batch:
                added = await personalizer.record(batch, checked=True)
                self.pipeline.feedback(batch, added)
                result.accepted += sum(added)
                result.duplicates += len(added) - sum(added)
            pending.clear()
            recorded = result.received

        try:
            personalizer = self._personalizer()
            async for message in request_iterator:
                pending.append((result.received, to_event(message)))
                result.received += 1
                if len(pending) >= STREAM_BATCH:
                    await flush()
            if pending:
                await flush()
        except InvalidRequest as error:  # what the catalog cannot read: never expected, as the catalog leaves it out
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                status_detail(f"the events before stream index {recorded} are recorded, none after: "
                                              f"{error}"))
        except (StoreError, CatalogStoreError, DeadlineExceeded) as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                status_detail(f"the events before stream index {recorded} are recorded, none after: "
                                              f"send again from there ({error})"))
        except Exception:
            log.exception("feedback stream failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; events after the last acknowledged batch were not recorded")
        log.info("feedback stream: %d received, %d accepted, %d duplicates, %d rejected",
                 result.received, result.accepted, result.duplicates, result.rejected)
        return result

    async def ForgetUser(self, request: ranking_pb2.ForgetUserRequest, context: grpc.aio.ServicerContext) -> ranking_pb2.ForgetUserResponse:  # noqa: N802
        try:
            deleted = await self._personalizer().forget(request.user_id)
        except InvalidEvent as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, status_detail(error))
        except StoreError as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, status_detail(f"user not forgotten, ask again: {error}"))
        log.info("forgot user %s: %d events deleted", user_key(request.user_id, self.log_key), deleted)
        return ranking_pb2.ForgetUserResponse(events_deleted=deleted)
