"""The security checks' decisions (orchestrator/security.py): loopback peers, client identities, the token bucket and
its bound, and the interceptors driven with a stand-in call context.

A call from a real non-loopback peer cannot be made on this machine (every address it can reach is its own), so the
admin API's refusal of plaintext from another host is shown here, on the peer string gRPC would give; the TLS,
mutual TLS, token and rate-limit paths run end to end in tests/integration/test_tls.py.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from orchestrator.admission import RETRY_AFTER
from orchestrator.security import (
    CallerGuard,
    PlaintextLoopbackGuard,
    RateLimiter,
    TokenBucket,
    client_identity,
    is_loopback,
    is_loopback_host,
    peer_host,
)

PLAINTEXT = {"transport_security_type": [b"insecure"], "security_level": [b"TSI_SECURITY_NONE"]}
TLS = {"transport_security_type": [b"ssl"], "security_level": [b"TSI_PRIVACY_AND_INTEGRITY"]}
MUTUAL = {**TLS, "x509_subject": [b"O=shop,CN=backend-1"], "x509_common_name": [b"backend-1"]}


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code, self.details = code, details


class Context:
    """What the checks read of a grpc.aio.ServicerContext: peer, auth context, metadata; abort raises Refused."""

    def __init__(self, peer: str, auth: dict = PLAINTEXT, metadata: tuple = ()) -> None:
        self._peer, self._auth, self._metadata = peer, auth, metadata
        self.trailing: tuple = ()

    def peer(self) -> str:
        return self._peer

    def auth_context(self) -> dict:
        return self._auth

    def invocation_metadata(self) -> tuple:
        return self._metadata

    def set_trailing_metadata(self, metadata: tuple) -> None:
        self.trailing = metadata

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Refused(code, details)


class Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


async def _echo(request, context):
    return request


def call(interceptor: grpc.aio.ServerInterceptor, context: Context, method: str = "/shoprank.v1.Ranking/Search"):
    """Run one unary call through the interceptor to a handler that answers its request."""

    async def continuation(details):
        return grpc.unary_unary_rpc_method_handler(_echo)

    async def run():
        handler = await interceptor.intercept_service(continuation, Details(method))
        return await handler.unary_unary("answered", context)

    return asyncio.run(run())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_loopback_peers_are_told_apart_from_the_network():
    for peer in ("ipv4:127.0.0.1:5555", "ipv4:127.8.9.10:1", "ipv6:[::1]:5555", "ipv6:%5B::1%5D:47348",
                 "ipv6:%5B::ffff:127.0.0.1%5D:80", "unix:/run/shoprank.sock", "unix:", "unix-abstract:shoprank"):
        assert is_loopback(peer), peer
    for peer in ("ipv4:10.1.2.3:5555", "ipv4:0.0.0.0:1", "ipv6:%5B2001:db8::1%5D:5555", "ipv6:[::ffff:10.0.0.1]:80",
                 "ipv6:%5B::%5D:1", "", "garbage", "ipv4:not-an-address:1", "dns:localhost:1"):
        assert not is_loopback(peer), peer
    assert peer_host("ipv4:10.1.2.3:5555") == "10.1.2.3"
    assert peer_host("ipv6:%5B2001:db8::1%5D:5555") == "2001:db8::1"
    assert peer_host("unix:/run/shoprank.sock") == "unix:/run/shoprank.sock"


def test_listening_hosts_are_loopback_only_when_nothing_else_can_reach_them():
    assert all(map(is_loopback_host, ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2")))
    assert not any(map(is_loopback_host, ("0.0.0.0", "::", "", "10.1.2.3", "shop.example")))


def test_the_identity_is_the_certificate_subject_else_the_token_else_the_address_without_its_port():
    assert client_identity(MUTUAL, "ipv4:10.1.2.3:5555", token=True) == "subject O=shop,CN=backend-1"
    assert client_identity({**TLS, "x509_subject_alternative_name": [b"b.example"]}, "ipv4:1.2.3.4:1") == \
        "subject b.example"
    assert client_identity(TLS, "ipv4:10.1.2.3:5555", token=True) == "token"
    assert client_identity(TLS, "ipv4:10.1.2.3:5555") == client_identity(PLAINTEXT, "ipv4:10.1.2.3:6666") == \
        "address 10.1.2.3"
    assert client_identity(PLAINTEXT, "ipv6:%5B2001:db8::1%5D:5555") == "address 2001:db8::1"


def test_a_bucket_gives_its_burst_then_one_call_per_refill_and_says_when():
    bucket = TokenBucket(rate=2.0, burst=3, tokens=3.0, updated=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # a token every 0.5 s
    assert bucket.take(0.2) == pytest.approx(0.3)  # a refused call takes nothing: the wait only shrinks
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert bucket.take(100.0) == 0.0  # refilled to its burst, never past it
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]


def test_the_limiter_keeps_a_bucket_per_client_and_at_most_its_bound_of_them():
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, max_clients=3, clock=clock)
    assert [limiter.admit("a") for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]
    assert limiter.admit("b") == 0.0  # another client has its own bucket
    for index in range(10_000):  # a flood of new identities
        limiter.admit(f"address 10.0.{index // 256}.{index % 256}")
    assert len(limiter) == 3
    clock.now += 0.25
    assert limiter.admit("a") == limiter.admit("a") == 0.0  # dropped with the oldest: back with a full bucket
    limiter.admit("c")
    assert limiter.admit("a") == pytest.approx(1.0)  # used last, so kept while two new ones come
    limiter.admit("d")
    limiter.admit("e")
    assert limiter.admit("a") == pytest.approx(1.0) and len(limiter) == 3


def test_the_admin_token_is_refused_over_plaintext_from_another_host_and_taken_from_loopback_or_over_tls():
    guard = PlaintextLoopbackGuard()
    with pytest.raises(Refused) as refused:
        call(guard, Context("ipv4:10.1.2.3:5555"), "/shoprank.v1.Admin/GetRolloutStatus")
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "use TLS" in refused.value.details and "ipv4:10.1.2.3:5555" in refused.value.details
    with pytest.raises(Refused):
        call(guard, Context("ipv6:%5B2001:db8::1%5D:5555"), "/shoprank.v1.Admin/GetRolloutStatus")
    for context in (Context("ipv4:127.0.0.1:5555"), Context("ipv6:%5B::1%5D:5555"), Context("unix:/run/s"),
                    Context("ipv4:10.1.2.3:5555", TLS)):
        assert call(guard, context, "/shoprank.v1.Admin/GetRolloutStatus") == "answered"


def test_the_public_token_is_required_when_set_and_health_checks_stay_open():
    guard = CallerGuard(token="s3cret")
    assert call(guard, Context("ipv4:10.1.2.3:1", TLS, (("authorization", "Bearer s3cret"),))) == "answered"
    for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", "s3cret"),)):
        with pytest.raises(Refused) as refused:
            call(guard, Context("ipv4:10.1.2.3:1", TLS, metadata))
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert call(guard, Context("ipv4:10.1.2.3:1"), "/grpc.health.v1.Health/Check") == "answered"
    assert call(guard, Context("ipv4:10.1.2.3:1"),
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") == "answered"


def test_past_its_burst_a_client_is_refused_with_the_wait_in_retry_after_ms_and_others_are_not():
    clock = Clock()
    guard = CallerGuard(limiter=RateLimiter(rate=4.0, burst=2, clock=clock))
    assert call(guard, Context("ipv4:10.1.2.3:1")) == call(guard, Context("ipv4:10.1.2.3:2")) == "answered"
    limited = Context("ipv4:10.1.2.3:3")
    with pytest.raises(Refused) as refused:
        call(guard, limited)
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.details.startswith("rate limit: this client (address 10.1.2.3)")
    assert limited.trailing == ((RETRY_AFTER, "250"),)
    assert call(guard, Context("ipv4:10.9.9.9:1")) == "answered"  # another client
    assert call(guard, Context("ipv4:10.1.2.3:1"), "/grpc.health.v1.Health/Check") == "answered"  # never limited
    clock.now += 0.25
    assert call(guard, Context("ipv4:10.1.2.3:4")) == "answered"
