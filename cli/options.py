"""What several commands share: the catalog's options, the service harness run with a command's options, the
way to a running service (plaintext or TLS) and its admin API, and how its answers are printed (text or --json)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from core._proto.shoprank.v1 import admin_pb2_grpc
from core.errors import ConfigError
from orchestrator.harness import Adjust, run_on_catalog, settings_from
from orchestrator.security import load_certificates, load_pair

T = TypeVar("T")
M = TypeVar("M", bound=Message)


def on_catalog(args: argparse.Namespace, catalog: Path, work: Callable[..., Awaitable[T]],
               index_dir: Path | None = None, adjust: Adjust | None = None, shop: str | None = None) -> T:
    """`work(stub)` against a service on the catalog (orchestrator.harness.run_on_catalog), with the command's
    settings, its --skip-untitled, its --index where `index_dir` is not given, and its --shop where `shop` is not
    given ("": the catalog folder's name)."""
    given = getattr(args, "index", None)
    if index_dir is None and given:
        index_dir = Path(given)
    settings = settings_from(args) if shop is None else settings_from(args, shop=shop or None)
    return run_on_catalog(settings, catalog, work, index_dir, adjust, getattr(args, "skip_untitled", False))


def catalog_options(sub: argparse.ArgumentParser) -> None:
    """The options of every command that reads a catalog file."""
    sub.add_argument("--shop", help="the shop the catalog belongs to: its name keys what was learned for it (its "
                                    "combination weights), whatever the catalog's content (default: SHOPRANK_SHOP, "
                                    "else the catalog's folder name, e.g. demo for data/demo/catalog.csv)")
    sub.add_argument("--skip-untitled", action="store_true",
                     help="leave out products with an empty title (with a warning) instead of rejecting the catalog")


def tls_options(sub: argparse.ArgumentParser) -> None:
    """The options of every command that calls a running service: how to reach it over TLS (default: plaintext)."""
    sub.add_argument("--tls-ca", metavar="FILE",
                     help="connect over TLS and verify the service's certificate against this CA (PEM)")
    sub.add_argument("--tls-cert", dest="client_cert", metavar="FILE",
                     help="this client's certificate (PEM), for a service that requires one (mutual TLS); with "
                          "--tls-key")
    sub.add_argument("--tls-key", dest="client_key", metavar="FILE", help="the private key of --tls-cert (PEM)")


def client_options(sub: argparse.ArgumentParser) -> None:
    """The options of every command that calls a running service's public API: TLS, and its token."""
    tls_options(sub)
    sub.add_argument("--api-token", help="the public API's token, for a service that requires one (default: "
                                         "SHOPRANK_API_TOKEN)")


def open_channel(args: argparse.Namespace, address: str) -> grpc.aio.Channel:
    """A channel to the service at `address`: TLS when --tls-ca, --tls-cert or --tls-key is given (without --tls-ca,
    the system's CAs verify the service), else plaintext."""
    if not (args.tls_ca or args.client_cert or args.client_key):
        return grpc.aio.insecure_channel(address)
    if bool(args.client_cert) != bool(args.client_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    chain, key = (load_pair(Path(args.client_cert), Path(args.client_key), ("--tls-cert", "--tls-key"))
                  if args.client_cert else (None, None))
    root = load_certificates(Path(args.tls_ca), "--tls-ca") if args.tls_ca else None
    return grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(root, key, chain))


def api_metadata(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """The call metadata that carries the public API's token (--api-token, else SHOPRANK_API_TOKEN), if any."""
    token = args.api_token or settings_from(args).api_token
    return (("authorization", f"Bearer {token}"),) if token else ()


def admin_options(sub: argparse.ArgumentParser, timeout_s: float = 300.0) -> None:
    """The options of every command that calls a running service's admin API."""
    sub.add_argument("--admin", help="host:port of the service's admin API (default: host and admin_port of the "
                                     "settings, 127.0.0.1:50052)")
    sub.add_argument("--timeout", type=float, default=timeout_s,
                     help=f"seconds to wait for each answer (default {timeout_s:g})")
    tls_options(sub)


def admin_access(args: argparse.Namespace) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The admin API's address (--admin, else the settings' host and admin_port) and the call metadata that carries
    the service's token (SHOPRANK_ADMIN_TOKEN)."""
    settings = settings_from(args)
    if not settings.admin_token:
        raise ConfigError("set SHOPRANK_ADMIN_TOKEN to the service's admin token")
    address = args.admin or f"{settings.host}:{settings.admin_port}"
    return address, (("authorization", f"Bearer {settings.admin_token}"),)


def admin_call(args: argparse.Namespace, method: str, request):
    """The answer of one unary call of the admin API (shoprank.v1.Admin), within --timeout."""
    address, metadata = admin_access(args)

    async def call():
        async with open_channel(args, address) as channel:
            return await getattr(admin_pb2_grpc.AdminStub(channel), method)(request, timeout=args.timeout,
                                                                             metadata=metadata)

    return asyncio.run(call())


def admin_command(actions: argparse._SubParsersAction, name: str, help_text: str,
                  func: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
    """A subcommand that calls the admin API and prints its answer as text, or as JSON with --json."""
    sub = actions.add_parser(name, help=help_text)
    admin_options(sub)
    sub.add_argument("--json", action="store_true", help="print the status as JSON")
    sub.set_defaults(func=func)
    return sub


def print_answer(args: argparse.Namespace, answer: M, text: Callable[[M], str]) -> None:
    """Print one answer: as a JSON object with --json, else as `text` words it."""
    print(json_format.MessageToJson(answer, preserving_proto_field_name=True) if args.json else text(answer))


def print_answers(args: argparse.Namespace, answers: Sequence[M], text: Callable[[M], str], empty: str = "") -> None:
    """Print a list of answers: as a JSON array with --json, else each as `text` words it (`empty` for none)."""
    if args.json:
        print(json.dumps([json_format.MessageToDict(answer, preserving_proto_field_name=True) for answer in answers],
                         indent=2))
    else:
        print("\n".join(text(answer) for answer in answers) if answers else empty)
