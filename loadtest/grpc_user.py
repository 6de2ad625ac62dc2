"""A Locust User that speaks gRPC, after Locust's own examples/grpc.

Every unary call made through `self.stub` goes through a client interceptor that reports it to Locust
(`environment.events.request`) with its time, response size and error, so gRPC calls show up in Locust's
statistics exactly like HTTP requests do.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User
from locust.exception import LocustError

# Locust runs users as gevent greenlets: make grpc's blocking calls cooperate with gevent instead of blocking
# the whole process. Must run before any channel is created.
grpc_gevent.init_gevent()


class GrpcCallError(Exception):
    """A failed call as Locust's error report shows it: "STATUS_CODE: details" (one row per distinct error)."""


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Fires one Locust `request` event per unary-unary call."""

    def __init__(self, user: "GrpcUser") -> None:
        self.user = user

    def intercept_unary_unary(self, continuation, client_call_details, request):
        started = time.perf_counter()
        exception: BaseException | None = None
        response_length = 0
        # The continuation returns a call object whose result() raises grpc.RpcError on failure; the stub's
        # caller sees the same error when it reads the result.
        outcome = continuation(client_call_details, request)
        try:
            response = outcome.result()
            response_length = response.ByteSize()
            exception = self.user.check_response(client_call_details.method, response)
        except grpc.RpcError as error:
            response = None
            exception = GrpcCallError(f"{error.code().name}: {error.details()}")
            exception.__cause__ = error
        self.user.environment.events.request.fire(
            request_type="grpc",
            name=client_call_details.method,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=response_length,
            response=response,
            exception=exception,
            context=self.user.context(),
        )
        return outcome


class GrpcUser(User):
    """Abstract: subclasses set `stub_class` (a generated *Stub) and use `self.stub`; host is "host:port"."""

    abstract = True
    stub_class: Any = None

    def __init__(self, environment) -> None:
        super().__init__(environment)
        for value, name in ((self.host, "host"), (self.stub_class, "stub_class")):
            if value is None:
                raise LocustError(f"You must specify the {name}.")
        self._channel = grpc.insecure_channel(self.host)
        channel = grpc.intercept_channel(self._channel, LocustInterceptor(self))
        self.stub = self.stub_class(channel)

    def check_response(self, method: str, response: Any) -> BaseException | None:
        """An exception makes a successful call count as a failure; override to validate responses."""
        return None

    def on_stop(self) -> None:
        self._channel.close()
