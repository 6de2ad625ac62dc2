"""`shoprank workbench`: the relevance workbench, a web page over a running service's gRPC API (docs/workbench.md).

    shoprank workbench --server 127.0.0.1:50051 --port 8080
    SHOPRANK_ADMIN_TOKEN=secret shoprank workbench --server 127.0.0.1:50051 --admin 127.0.0.1:50052 \
        --catalog data/demo/catalog.csv --judgments-out judgments.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.harness import settings_from

from .options import client_options


def cmd_workbench(args: argparse.Namespace) -> None:
    from workbench.config import DEFAULT_JUDGMENTS, DEMO_CATALOG, WorkbenchConfig, catalog_entry  # noqa: PLC0415
    from workbench.server import serve  # noqa: PLC0415

    catalogs = args.catalog or ([str(DEMO_CATALOG)] if DEMO_CATALOG.is_file() else [])
    config = WorkbenchConfig(servers=tuple(args.server or ["127.0.0.1:50051"]), admins=tuple(args.admin or ()),
                             admin_token=settings_from(args).admin_token if args.admin else "",
                             catalogs=tuple(catalog_entry(text) for text in catalogs),
                             judgments_out=args.judgments_out or DEFAULT_JUDGMENTS, host=args.host, port=args.port,
                             top_k=args.top_k, api_token=args.api_token or settings_from(args).api_token,
                             tls_ca=_path(args.tls_ca), tls_cert=_path(args.client_cert), tls_key=_path(args.client_key))
    serve(config)


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's commands."""
    sub = commands.add_parser("workbench", help="serve the relevance workbench: search as a shopper, see why each "
                                                "product ranks where it does, compare rankings, judge, send feedback")
    sub.add_argument("--server", action="append",
                     help="host:port of a running `shoprank serve` (default 127.0.0.1:50051); repeat it for the shop "
                          "picker, one service a shop")
    sub.add_argument("--admin", action="append",
                     help="host:port of the admin API of the --server at the same position, to list its experiments' "
                          "arms (token: SHOPRANK_ADMIN_TOKEN)")
    sub.add_argument("--catalog", action="append",
                     help="[SHOP=]FILE: the shop's catalog, for images, prices and stock (default "
                          "data/demo/catalog.csv; the shop is the file's folder name unless given)")
    sub.add_argument("--judgments-out",
                     help="the CSV file ratings are saved in, merged with its rows; {shop} in it is the shop's name "
                          "(default .shoprank/workbench/{shop}-judgments.csv)")
    sub.add_argument("--host", default="127.0.0.1", help="address to serve the page on (default 127.0.0.1)")
    sub.add_argument("--port", type=int, default=8080, help="port to serve the page on (default 8080)")
    sub.add_argument("--top-k", type=int, default=10, help="results a search shows unless the page asks for more")
    client_options(sub)  # TLS and the public API's token, for services that require them
    sub.set_defaults(func=cmd_workbench)
