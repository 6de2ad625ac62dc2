"""The admin gRPC service (shoprank.v1.Admin) over the rollout controller, on its own port.

It exists only when an admin token is configured, and every call must carry "authorization: Bearer TOKEN":
a missing or wrong token is UNAUTHENTICATED before any handler runs. This module is the admin's one boundary
between domain errors and status codes, as orchestrator/servicer.py is the public API's.
"""

from __future__ import annotations

import hmac
import logging

import grpc

from core._proto.shoprank.v1 import admin_pb2, admin_pb2_grpc
from core.errors import RolloutError, ShoprankError

from .controller import RolloutController

log = logging.getLogger(__name__)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call whose "authorization" metadata is not "Bearer <token>"."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode("utf-8")

        async def refuse(request, context: grpc.aio.ServicerContext):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "admin calls need the metadata 'authorization: Bearer TOKEN' (SHOPRANK_ADMIN_TOKEN)")

        self._refusal = grpc.unary_unary_rpc_method_handler(refuse)

    async def intercept_service(self, continuation, handler_call_details):
        sent = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        if not hmac.compare_digest(str(sent).encode("utf-8"), self._expected):
            return self._refusal
        return await continuation(handler_call_details)


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
    )


class AdminServicer(admin_pb2_grpc.AdminServicer):
    """shoprank.v1.Admin over a RolloutController."""

    def __init__(self, controller: RolloutController) -> None:
        self.controller = controller

    async def _answer(self, context: grpc.aio.ServicerContext, model: str, action) -> admin_pb2.RolloutStatus:
        try:
            await action
            [status] = self.controller.status(model)
        except RolloutError as error:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except ShoprankError as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        except Exception:
            log.exception("admin call failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; the server log has the details")
        return to_status(status)

    async def StartRollout(self, request, context):  # noqa: N802
        mode = "shadow" if request.shadow else "canary"
        log.warning("admin: start %s version %s, %s %d%%", request.model, request.version, mode, request.percent)
        return await self._answer(context, request.model,
                                  self.controller.start(request.model, request.version, request.percent, mode))

    async def ShiftRollout(self, request, context):  # noqa: N802
        log.warning("admin: shift %s to %d%%", request.model, request.percent)
        return await self._answer(context, request.model, self.controller.shift(request.model, request.percent))

    async def PromoteRollout(self, request, context):  # noqa: N802
        log.warning("admin: promote %s", request.model)
        return await self._answer(context, request.model, self.controller.promote(request.model))

    async def RollbackRollout(self, request, context):  # noqa: N802
        log.warning("admin: roll back %s (%s)", request.model, request.reason or "no reason given")
        return await self._answer(context, request.model,
                                  self.controller.rollback(request.model, request.reason or "by request"))

    async def GetRolloutStatus(self, request, context):  # noqa: N802
        try:
            statuses = self.controller.status(request.model)
        except RolloutError as error:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        return admin_pb2.RolloutStatusList(models=[to_status(status) for status in statuses])


def create_admin_server(controller: RolloutController, host: str, port: int, token: str) -> tuple[grpc.aio.Server, int]:
    """The admin gRPC server, bound but not started; returns (server, bound port)."""
    if not token:
        raise ValueError("the admin service needs a token")
    server = grpc.aio.server(interceptors=[TokenInterceptor(token)])
    admin_pb2_grpc.add_AdminServicer_to_server(AdminServicer(controller), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port} for the admin service")
    return server, bound
