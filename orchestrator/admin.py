"""The admin gRPC service (shoprank.v1.Admin) on its own port: model version rollouts over the rollout controller,
the shop's live catalog over the catalog writer, and online experiments over the experiment controller.

It exists only when an admin token is configured, and every call must carry "authorization: Bearer TOKEN": a missing
or wrong token is UNAUTHENTICATED before any handler runs. Either half may be absent: rollouts when no reranker is
served, the catalog when it is an index file rather than Milvus; their calls then answer FAILED_PRECONDITION. This
module is the admin's one boundary between domain errors and status codes, as orchestrator/servicer.py is the public
API's:

    InvalidRequest, DataError          INVALID_ARGUMENT   the record or request is malformed
    RolloutError, ExperimentError      FAILED_PRECONDITION
    a product the catalog lacks        NOT_FOUND
    any other ShoprankError            UNAVAILABLE        Milvus or Triton failed (CatalogUnavailable, TritonError...)
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import NoReturn

import grpc

from core._proto.shoprank.v1 import admin_pb2, admin_pb2_grpc
from core.errors import DataError, ExperimentError, InvalidRequest, RolloutError, ShoprankError, status_detail

from .admission import AdmissionInterceptor, Gate
from .catalog.ingest import CatalogWriter, IncomingProduct, UpsertResult
from .catalog.milvus import StockedProduct
from .experiments.controller import ExperimentController
from .rollout.controller import RolloutController
from .security import PlaintextLoopbackGuard, Tls, listen

log = logging.getLogger(__name__)

NO_ROLLOUTS = "rollouts are off on this service: it serves no reranker (reranking is off, or none is exported)"
NO_CATALOG = ("this service's catalog is an index file, which cannot change while it serves: serve the shop's "
              "catalog from Milvus (--catalog-store milvus://HOST:PORT) to change it through the admin API")


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call whose "authorization" metadata is not "Bearer <token>"."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode("utf-8")

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        sent = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        if handler is None or hmac.compare_digest(str(sent).encode("utf-8"), self._expected):
            return handler
        return _refusal(handler)


async def _refuse(request, context: grpc.aio.ServicerContext) -> NoReturn:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                        "admin calls need the metadata 'authorization: Bearer TOKEN' (SHOPRANK_ADMIN_TOKEN)")


def _refusal(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same kind (unary or streaming requests) as `handler` that refuses the call."""
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_refuse, handler.request_deserializer, handler.response_serializer)
    return grpc.unary_unary_rpc_method_handler(_refuse, handler.request_deserializer, handler.response_serializer)


def status_code(error: ShoprankError) -> grpc.StatusCode:
    """The status code that answers a domain error."""
    if isinstance(error, (InvalidRequest, DataError)):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, (RolloutError, ExperimentError)):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.UNAVAILABLE


# Rollouts: domain <-> protobuf.

def to_status(status: dict) -> admin_pb2.RolloutStatus:
    """Domain status (RolloutController.status) -> protobuf."""
    return admin_pb2.RolloutStatus(
        model=status["model"],
        stable_version=status["stable"],
        candidate_version=status["candidate"],
        mode=status["mode"],
        percent=status["percent"],
        loaded_versions=status["loaded"],
        windows=[admin_pb2.VersionWindow(version=version, requests=window["requests"], errors=window["errors"],
                                         p99_ms=window["p99_ms"])
                 for version, window in status["windows"].items()],
        shadow_agreement=status["shadow_agreement"],
        shadow_compared=status["shadow_compared"],
        shadow_skipped=status["shadow_skipped"],
        history=[admin_pb2.RolloutEvent(time=event["time"], action=event["action"], version=event["version"],
                                        detail=event["detail"]) for event in status["history"]],
        pinned=status["pinned"],
        candidate_manifest={key: str(value) for key, value in status["candidate_manifest"].items()},
        quality=to_experiment(status["quality"]) if status.get("quality") else None,
    )


# Experiments: domain <-> protobuf.

def to_experiment(status: dict) -> admin_pb2.ExperimentStatus:
    """Domain status (ExperimentController.status) -> protobuf."""
    message = admin_pb2.ExperimentStatus(
        name=status["name"], method=status["method"], control=status["control"], treatment=status["treatment"],
        share=status["share"], running=status["running"], started=status["started"], stopped=status["stopped"],
        decision=status["decision"], log_ratio=status["log_ratio"], threshold=status["threshold"],
        shown=status["shown"], feedback_joined=status["feedback_joined"],
        feedback_unjoined=status["feedback_unjoined"])
    interleaving = status["interleaving"]
    if interleaving is not None:
        message.wins, message.losses, message.ties = interleaving["wins"], interleaving["losses"], interleaving["ties"]
        message.treatment_share = interleaving["treatment_share"]
        message.treatment_share_low, message.treatment_share_high = interleaving["treatment_share_95"]
        message.delta = interleaving["delta"]
        message.delta_low, message.delta_high = interleaving["delta_95"]
    for arm, figures in (status["arms"] or {}).items():
        message.arms.append(admin_pb2.ArmFigures(
            arm=arm, spec=figures["spec"], searches=figures["searches"],
            clicks_per_search=figures["clicks_per_search"],
            clicks_per_search_low=figures["clicks_per_search_95"][0],
            clicks_per_search_high=figures["clicks_per_search_95"][1],
            purchases_per_search=figures["purchases_per_search"],
            purchases_per_search_low=figures["purchases_per_search_95"][0],
            purchases_per_search_high=figures["purchases_per_search_95"][1]))
    return message


# The catalog: domain <-> protobuf.

def incoming(record: admin_pb2.ProductRecord) -> IncomingProduct:
    """A record of UpsertProducts as the catalog writer takes it (validated there)."""
    return IncomingProduct(
        fields={"product_id": record.product_id, "title": record.title, "description": record.description,
                "brand": record.brand, "category": record.category, "department": record.department,
                "price": record.price if record.HasField("price") else None, "image_url": record.image_url},
        attributes=dict(record.attributes),
        stock=record.stock if record.HasField("stock") else None,
    )


def to_record(stocked: StockedProduct) -> admin_pb2.ProductRecord:
    """A stored product -> protobuf."""
    product = stocked.product
    record = admin_pb2.ProductRecord(product_id=product.product_id, title=product.title,
                                     description=product.description, brand=product.brand, category=product.category,
                                     department=product.department, stock=stocked.stock, image_url=product.image_url,
                                     attributes=product.attributes)
    if product.price is not None:
        record.price = product.price
    return record


def to_upsert_response(result: UpsertResult) -> admin_pb2.UpsertProductsResponse:
    """What an upsert did -> protobuf."""
    return admin_pb2.UpsertProductsResponse(
        received=result.received, stored=result.stored, created=result.created, reembedded=result.reembedded,
        fields_updated=result.fields_updated, unchanged=result.unchanged,
        errors=[admin_pb2.RecordError(index=error.index, product_id=error.product_id[:256], message=error.message)
                for error in result.errors])


class AdminServicer(admin_pb2_grpc.AdminServicer):
    """shoprank.v1.Admin over a RolloutController, a CatalogWriter and an ExperimentController, any of which may be
    absent."""

    def __init__(self, rollout: RolloutController | None = None, catalog: CatalogWriter | None = None,
                 experiments: ExperimentController | None = None) -> None:
        self.rollout = rollout
        self.catalog = catalog
        self.experiments = experiments

    async def _run(self, context: grpc.aio.ServicerContext, what: str, action: Awaitable):
        """`action`'s result; its domain error as the call's status."""
        try:
            return await action
        except ShoprankError as error:
            await context.abort(status_code(error), status_detail(error))
        except Exception:
            log.exception("admin call failed: %s", what)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; the server log has the details")

    async def _rollout(self, context: grpc.aio.ServicerContext) -> RolloutController:
        if self.rollout is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, NO_ROLLOUTS)
        return self.rollout

    async def _catalog(self, context: grpc.aio.ServicerContext) -> CatalogWriter:
        if self.catalog is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, NO_CATALOG)
        return self.catalog

    # Rollouts.

    async def _rollout_answer(self, context: grpc.aio.ServicerContext, model: str, action) -> admin_pb2.RolloutStatus:
        controller = self.rollout

        async def act_then_status() -> dict:
            await action
            [status] = controller.status(model)
            return status

        return to_status(await self._run(context, f"rollout of {model}", act_then_status()))

    async def StartRollout(self, request, context):  # noqa: N802
        controller = await self._rollout(context)
        if request.shadow and request.interleave:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a rollout is a shadow or interleaved, not both")
        mode = "shadow" if request.shadow else "interleave" if request.interleave else "canary"
        log.warning("admin: start %s version %s, %s %d%%", request.model, request.version, mode, request.percent)
        return await self._rollout_answer(context, request.model,
                                          controller.start(request.model, request.version, request.percent, mode))

    async def ShiftRollout(self, request, context):  # noqa: N802
        controller = await self._rollout(context)
        log.warning("admin: shift %s to %d%%", request.model, request.percent)
        return await self._rollout_answer(context, request.model, controller.shift(request.model, request.percent))

    async def PromoteRollout(self, request, context):  # noqa: N802
        controller = await self._rollout(context)
        log.warning("admin: promote %s", request.model)
        return await self._rollout_answer(context, request.model, controller.promote(request.model))

    async def RollbackRollout(self, request, context):  # noqa: N802
        controller = await self._rollout(context)
        log.warning("admin: roll back %s (%s)", request.model, request.reason or "no reason given")
        return await self._rollout_answer(context, request.model,
                                          controller.rollback(request.model, request.reason or "by request"))

    async def GetRolloutStatus(self, request, context):  # noqa: N802
        controller = await self._rollout(context)
        try:
            statuses = controller.status(request.model)
        except RolloutError as error:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, status_detail(error))
        return admin_pb2.RolloutStatusList(models=[to_status(status) for status in statuses])

    # Experiments.

    async def _experiments(self, context: grpc.aio.ServicerContext) -> ExperimentController:
        if self.experiments is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "experiments are off on this service")
        return self.experiments

    async def _experiment_answer(self, context, what: str, action) -> admin_pb2.ExperimentStatus:
        async def act() -> dict:
            return action().status()

        return to_experiment(await self._run(context, what, act()))

    async def StartExperiment(self, request, context):  # noqa: N802
        controller = await self._experiments(context)
        log.warning("admin: start experiment %s (%s: %s against %s, share %.3f)", request.name, request.method,
                    request.treatment, request.control, request.share)
        return await self._experiment_answer(context, "start an experiment", lambda: controller.start(
            request.name, request.control, request.treatment, request.method, request.share))

    async def StopExperiment(self, request, context):  # noqa: N802
        controller = await self._experiments(context)
        log.warning("admin: stop experiment %s", request.name)
        running = controller.experiments.get(request.name)
        if running is not None and running.guard and running.running:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, status_detail(
                f"experiment {request.name!r} is a rollout's quality guard: promote or roll back the rollout instead"))
        return await self._experiment_answer(context, "stop an experiment", lambda: controller.stop(request.name))

    async def GetExperimentStatus(self, request, context):  # noqa: N802
        controller = await self._experiments(context)

        async def statuses() -> list[dict]:
            return controller.status(request.name)

        return admin_pb2.ExperimentStatusList(
            experiments=[to_experiment(status) for status in await self._run(context, "experiment status", statuses())])

    # The catalog.

    async def UpsertProducts(self, request_iterator, context):  # noqa: N802
        writer = await self._catalog(context)

        async def records() -> AsyncIterator[IncomingProduct]:
            async for record in request_iterator:
                yield incoming(record)

        result = await self._run(context, "upsert products", writer.upsert(records()))
        log.warning("admin: upserted %d of %d products (%d new, %d embedded again, %d fields updated, %d rejected)",
                    result.stored, result.received, result.created, result.reembedded, result.fields_updated,
                    len(result.errors))
        return to_upsert_response(result)

    async def DeleteProducts(self, request, context):  # noqa: N802
        writer = await self._catalog(context)
        deleted, not_found = await self._run(context, "delete products", writer.delete(list(request.product_ids)))
        log.warning("admin: deleted %d products (%d not found)", len(deleted), len(not_found))
        return admin_pb2.DeleteProductsResponse(deleted=len(deleted), not_found=not_found)

    async def GetProduct(self, request, context):  # noqa: N802
        writer = await self._catalog(context)
        stocked = await self._run(context, "get a product", writer.get(request.product_id))
        if stocked is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, status_detail(
                f"the catalog of shop {writer.catalog.shop!r} holds no product {request.product_id!r}"))
        return to_record(stocked)


def create_admin_server(host: str, port: int, token: str, rollout: RolloutController | None = None,
                        catalog: CatalogWriter | None = None,
                        experiments: ExperimentController | None = None,
                        gate: Gate | None = None, tls: Tls | None = None) -> tuple[grpc.aio.Server, int]:
    """The admin gRPC server over whichever of rollouts, the catalog and experiments this service has, bound but
    not started; returns (server, bound port). `gate`: the admission bounds of its calls (checked after the token);
    `tls`: its certificate (none: plaintext, which takes calls from this host alone)."""
    if not token:
        raise ValueError("the admin service needs a token")
    interceptors = ([PlaintextLoopbackGuard(), TokenInterceptor(token)]
                    + ([AdmissionInterceptor(gate)] if gate is not None else []))
    server = grpc.aio.server(interceptors=interceptors)
    admin_pb2_grpc.add_AdminServicer_to_server(AdminServicer(rollout, catalog, experiments), server)
    bound = listen(server, f"{host}:{port}", tls)
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port} for the admin service")
    return server, bound
