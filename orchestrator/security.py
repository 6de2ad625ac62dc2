"""Who may call, and how often: TLS on both ports, the admin token kept off the network in the clear, the public API's
optional token, and a rate limit per client.

What happens to a call, in order:

    TLS handshake   with tls_cert and tls_key both ports speak TLS only; with tls_client_ca too, a client without a
        |           certificate that CA signed is turned away here (the client sees UNAVAILABLE; no call exists yet)
        v
    identity        whom the call counts as: the client certificate's subject (mutual TLS), else the public token
        |           (when set: every holder is one client), else the peer's IP address without its port
        v
    token           public API: with api_token set, "authorization: Bearer TOKEN" or UNAUTHENTICATED
        |           admin API: over plaintext only from loopback (UNAUTHENTICATED, "use TLS"); then its token
        v           (UNAUTHENTICATED; admin.TokenInterceptor)
    rate limit      public API, rate_limit_rps > 0: a token bucket per identity, `rate_limit_burst` deep; past it
        |           RESOURCE_EXHAUSTED with `retry-after-ms`, the time until the bucket holds a token again
        v
    admission       orchestrator/admission.py: the bound on calls of each kind in flight
        |
        v
    handler

Health checks and reflection pass the public port's checks untouched: load balancers and tools probe them without
credentials. A refused call takes no token from its bucket. The checks run on the server's one event loop and take
no lock.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import grpc

from core.errors import ConfigError
from core.settings import Settings

from .admission import RETRY_AFTER

log = logging.getLogger(__name__)

# Rate-limit buckets kept at most, the least recently used dropped first: a flood of addresses costs bounded memory.
MAX_CLIENTS = 10_000
GUARDED = "/shoprank."  # the methods the public port's checks cover (not health, not reflection)
ENCRYPTED = [b"TSI_PRIVACY_AND_INTEGRITY"]  # a call's auth context `security_level` over TLS

Check = Callable[[grpc.aio.ServicerContext], Awaitable[None]]


# Credentials: read and checked at start, so that a bad file is a ConfigError naming it, not a failed handshake later.

def read_pem(path: Path, name: str) -> bytes:
    """The bytes of a PEM file; ConfigError naming the option and the file when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{name} {path} cannot be read: {error.strerror or error}") from None


def load_certificates(path: Path, name: str) -> bytes:
    """A PEM file of one or more certificates (a chain, or CAs); ConfigError when it holds none."""
    pem = read_pem(path, name)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as error:
        raise ConfigError(f"{name} {path} holds no PEM certificate ({error})") from None
    return pem


def load_pair(cert: Path, key: Path, names: tuple[str, str] = ("tls_cert", "tls_key")) -> tuple[bytes, bytes]:
    """(certificate chain, private key) from PEM files; ConfigError naming the file that is missing, unreadable, not
    PEM, encrypted, or a key that is not the certificate's."""
    chain = load_certificates(cert, names[0])
    private = read_pem(key, names[1])

    def no_password() -> bytes:  # OpenSSL would otherwise prompt on the terminal
        raise ConfigError(f"{names[1]} {key} is encrypted: gRPC needs the key unencrypted (make the file readable by "
                          f"the service alone instead)")

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=no_password)
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"{names[1]} {key} is not the key of {names[0]} {cert}") from None
        raise ConfigError(f"{names[1]} {key} holds no PEM private key ({error})") from None
    return chain, private


@dataclass(frozen=True)
class Tls:
    """A server's certificate chain and key (PEM), and the CA that signs its clients' certificates (mutual TLS)."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None

    @classmethod
    def load(cls, cert: Path, key: Path, client_ca: Path | None = None) -> "Tls":
        """Read and check the files (load_pair, load_certificates)."""
        chain, private = load_pair(cert, key)
        return cls(chain, private, load_certificates(client_ca, "tls_client_ca") if client_ca is not None else None)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.client_ca,
                                           require_client_auth=self.client_ca is not None)


def listen(server: grpc.aio.Server, address: str, tls: Tls | None) -> int:
    """Bind `address`, TLS only with `tls`, else plaintext; the bound port (0: it could not be bound)."""
    if tls is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, tls.credentials())


# Peers and identities.

def peer_host(peer: str) -> str:
    """The address of a gRPC peer string without its port ("ipv4:10.1.2.3:5555" -> "10.1.2.3", "ipv6:%5B::1%5D:5555"
    -> "::1"); any other peer (a unix socket) as it is."""
    scheme, _, rest = unquote(peer).partition(":")
    if scheme == "ipv4":
        return rest.rpartition(":")[0]
    if scheme == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return peer


def is_loopback(peer: str) -> bool:
    """Whether a gRPC peer string is this host: 127.0.0.0/8, ::1 (or IPv4-mapped loopback), or a unix socket."""
    scheme = peer.partition(":")[0]
    if scheme in ("unix", "unix-abstract"):
        return True
    if scheme not in ("ipv4", "ipv6"):
        return False
    try:
        address = ipaddress.ip_address(peer_host(peer))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def is_loopback_host(host: str) -> bool:
    """Whether a listening host is this machine's loopback alone ("localhost", 127.x.x.x, ::1); "0.0.0.0", "::" and
    other names are not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def sent_in_clear(auth: Mapping[str, Sequence[bytes]], peer: str) -> bool:
    """Whether a call crossed a network unencrypted: plaintext (its auth context) from a peer other than this host."""
    return auth.get("security_level") != ENCRYPTED and not is_loopback(peer)


def client_identity(auth: Mapping[str, Sequence[bytes]], peer: str, token: bool = False) -> str:
    """Whom a call counts as: the client certificate's subject (mutual TLS), else the public API's token when it was
    checked (one identity: its holders share a bucket), else the peer's address without its port."""
    for key in ("x509_subject", "x509_common_name", "x509_subject_alternative_name"):
        names = [name.decode("utf-8", "replace") for name in auth.get(key, ()) if name]
        if names:
            return "subject " + ",".join(names)
    if token:
        return "token"
    return "address " + peer_host(peer)


def bearer_matches(metadata: Sequence[tuple[str, str]] | None, token: str) -> bool:
    """Whether the call metadata carries "authorization: Bearer <token>" (compared in constant time)."""
    sent = dict(metadata or ()).get("authorization", "")
    return hmac.compare_digest(str(sent).encode("utf-8"), f"Bearer {token}".encode("utf-8"))


# The rate limit.

@dataclass
class TokenBucket:
    """The calls one client may make: `burst` at once, refilled at `rate` per second."""

    rate: float
    burst: int
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take a token for one call: 0.0 when there was one, else the seconds until there is (none is taken)."""
        self.tokens = min(float(self.burst), self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """A token bucket per client identity; the `max_clients` most recently seen are kept, and one that was dropped
    starts again with a full bucket."""

    def __init__(self, rate: float, burst: int, max_clients: int = MAX_CLIENTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("a rate limit needs a positive rate, a burst and a bound of at least 1")
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def admit(self, identity: str) -> float:
        """0.0 when `identity` may make a call now (its bucket gives a token), else the seconds until it may."""
        now = self._clock()
        bucket = self._buckets.get(identity)
        if bucket is None:
            bucket = self._buckets[identity] = TokenBucket(self.rate, self.burst, float(self.burst), now)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(identity)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)


# Interceptors.

def guarded(handler: grpc.RpcMethodHandler, check: Check) -> grpc.RpcMethodHandler:
    """The same handler, run once `check(context)` returned; the check refuses a call by aborting it."""
    for inner, kind in ((handler.unary_unary, grpc.unary_unary_rpc_method_handler),
                        (handler.stream_unary, grpc.stream_unary_rpc_method_handler)):
        if inner is not None:
            return kind(_checked(inner, check), handler.request_deserializer, handler.response_serializer)
    # shoprank's APIs stream no answers: a method that does needs its wrapper here, and fails until then rather
    # than passing unchecked.
    raise NotImplementedError("no security checks for methods that stream their answers")


def _checked(inner: Callable[..., Awaitable], check: Check) -> Callable[..., Awaitable]:
    async def run(request_or_iterator, context):
        await check(context)
        return await inner(request_or_iterator, context)

    return run


class PlaintextLoopbackGuard(grpc.aio.ServerInterceptor):
    """Refuses (UNAUTHENTICATED) every call that came over plaintext from a peer other than this host: the admin
    token must not cross a network in the clear."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        return handler if handler is None else guarded(handler, self.check)

    @staticmethod
    async def check(context: grpc.aio.ServicerContext) -> None:
        if sent_in_clear(context.auth_context(), context.peer()):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                f"the admin API takes its token over plaintext only from this host, and this call came "
                                f"from {context.peer()}: use TLS (serve with --tls-cert and --tls-key, call with "
                                f"--tls-ca)")


class CallerGuard(grpc.aio.ServerInterceptor):
    """The public API's checks: its token when one is set, then the caller's rate limit when there is one."""

    def __init__(self, token: str = "", limiter: RateLimiter | None = None) -> None:
        self.token = token
        self.limiter = limiter

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(GUARDED):
            return handler
        return guarded(handler, self.check)

    async def check(self, context: grpc.aio.ServicerContext) -> None:
        if self.token and not bearer_matches(context.invocation_metadata(), self.token):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "this service needs the metadata 'authorization: Bearer TOKEN' (its "
                                "SHOPRANK_API_TOKEN)")
        if self.limiter is None:
            return
        identity = client_identity(context.auth_context(), context.peer(), token=bool(self.token))
        wait_s = self.limiter.admit(identity)
        if wait_s > 0.0:
            wait_ms = math.ceil(wait_s * 1000.0)
            context.set_trailing_metadata(((RETRY_AFTER, str(wait_ms)),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"rate limit: this client ({identity}) may make {self.limiter.rate:g} calls a second, "
                                f"{self.limiter.burst} at once; retry after {wait_ms} ms")


@dataclass(frozen=True)
class ServerSecurity:
    """What a service's ports take from the settings: TLS (none: plaintext) and the public API's checks (none: no
    token and no rate limit)."""

    tls: Tls | None = None
    guard: CallerGuard | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "ServerSecurity":
        """Read and check the certificate files: ConfigError naming one that is missing, unreadable or wrong."""
        tls = None
        if settings.tls_cert is not None and settings.tls_key is not None:
            tls = Tls.load(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        limiter = (RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst)
                   if settings.rate_limit_rps > 0 else None)
        guard = CallerGuard(settings.api_token, limiter) if settings.api_token or limiter is not None else None
        if tls is None and settings.api_token and not is_loopback_host(settings.host):
            log.warning("the public API's token crosses the network in the clear: %s is plaintext (set tls_cert and "
                        "tls_key)", settings.host)
        return cls(tls, guard)

    @property
    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """The public port's security interceptors, to run before admission control."""
        return [self.guard] if self.guard is not None else []
