"""The workbench's calls to the ranking services: the public API (Search, Feedback) and, where given, the admin API
(GetExperimentStatus). The only module of the workbench that imports grpc; it turns gRPC errors into the workbench's
own (workbench/errors.py)."""

from __future__ import annotations

import grpc

from core._proto.shoprank.v1 import admin_pb2, admin_pb2_grpc, ranking_pb2, ranking_pb2_grpc

from .config import WorkbenchConfig
from .errors import BadInput, ServiceFailed, ServiceUnavailable, WorkbenchError

# A service that was down is tried again within a second or two of coming back (gRPC's default backoff reaches
# two minutes, during which every call would fail at once).
CHANNEL_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 250), ("grpc.min_reconnect_backoff_ms", 250),
                   ("grpc.max_reconnect_backoff_ms", 1000))
CALLER_ERRORS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.OUT_OF_RANGE)
DOWN = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class Services:
    """Channels to the configured services, opened on first use and kept; `close` ends them."""

    def __init__(self, config: WorkbenchConfig) -> None:
        self.config = config
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self, address: str) -> grpc.aio.Channel:
        if address not in self._channels:
            config = self.config
            if config.tls_ca or config.tls_cert:  # TLS (orchestrator/security.py on the service's side)
                read = lambda path: path.read_bytes() if path is not None else None  # noqa: E731
                credentials = grpc.ssl_channel_credentials(read(config.tls_ca), read(config.tls_key),
                                                           read(config.tls_cert))
                self._channels[address] = grpc.aio.secure_channel(address, credentials, options=CHANNEL_OPTIONS)
            else:
                self._channels[address] = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        return self._channels[address]

    @property
    def _public_metadata(self) -> tuple[tuple[str, str], ...]:
        token = self.config.api_token
        return (("authorization", f"Bearer {token}"),) if token else ()

    async def search(self, server: str, request: ranking_pb2.SearchRequest) -> ranking_pb2.SearchResponse:
        """The service's answer to one Search call."""
        stub = ranking_pb2_grpc.RankingStub(self._channel(server))
        return await _call(server, "Search", stub.Search(request, timeout=self.config.timeout_s,
                                                         metadata=self._public_metadata))

    async def feedback(self, server: str, event: ranking_pb2.FeedbackEvent) -> ranking_pb2.FeedbackAck:
        """Record one feedback event; answered once the service holds it."""
        stub = ranking_pb2_grpc.RankingStub(self._channel(server))
        return await _call(server, "Feedback", stub.Feedback(event, timeout=self.config.timeout_s,
                                                             metadata=self._public_metadata))

    async def experiments(self, server: str) -> list[admin_pb2.ExperimentStatus]:
        """Every experiment of the server's service (running and stopped), through its admin API."""
        admin = self.config.admin_of(server)
        if not admin:
            raise BadInput(f"no admin API is given for {server}: start the workbench with --admin HOST:PORT")
        stub = admin_pb2_grpc.AdminStub(self._channel(admin))
        metadata = (("authorization", f"Bearer {self.config.admin_token}"),)
        answer = await _call(admin, "GetExperimentStatus",
                             stub.GetExperimentStatus(admin_pb2.ExperimentRequest(), timeout=self.config.timeout_s,
                                                      metadata=metadata))
        return list(answer.experiments)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


async def _call(address: str, method: str, call):
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        raise service_error(address, method, error.code(), error.details() or "") from None


def service_error(address: str, method: str, code: grpc.StatusCode, details: str) -> WorkbenchError:
    """The workbench's error for a failed call: the caller's fault (400), a service that is down (503) or another
    failure (502), each saying what to do."""
    if code in CALLER_ERRORS:
        return BadInput(details or f"{method}: {code.name}")
    if code in DOWN:
        return ServiceUnavailable(f"the service at {address} did not answer {method} ({code.name}: {details}). "
                                  f"Is `shoprank serve` running there?")
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return ServiceFailed(f"the admin API at {address} refused the token ({code.name}): set SHOPRANK_ADMIN_TOKEN "
                             f"to the service's admin token")
    return ServiceFailed(f"the service at {address} failed {method}: {code.name}: {details}")
