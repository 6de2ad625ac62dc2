"""`shoprank index`, `serve`, `search` and `demo`: build an index, run the service, ask it, show it."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import time
from pathlib import Path

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from core.errors import ShoprankError

from orchestrator.harness import (
    build_and_save,
    fresh_profile_store,
    settings_from,
    triton_options,
    with_service,
)

from .options import api_metadata, catalog_options, client_options, open_channel

DEMO_CATALOG = Path("data/demo/catalog.csv")
DEMO_MILVUS = Path(".shoprank/demo-milvus")  # the Milvus Lite server's data when the demo starts its own
DEMO_QUERIES = [
    ("cordless drill", []),
    ("bluetooth headphnes", []),
    ("手机推荐", []),
    ("无线耳机", []),
    ("phone for elderly parents", []),
    ("something to keep coffee hot", []),
    ("phone", [ranking_pb2.Filter(field="category", any_of=["Phones"]), ranking_pb2.Filter(field="price", max=400)]),
]
# Two shoppers with different histories, then the same query for each: the blend puts what each prefers first.
DEMO_QUERY_PERSONAL = "headphones"
DEMO_HISTORIES = {
    "demo-alice": [("D0031", "purchase", 40), ("D0032", "click", 10), ("D0032", "purchase", 9), ("D0031", "cart", 2)],
    "demo-bob": [("D0029", "purchase", 60), ("D0029", "purchase", 30), ("D0030", "click", 3), ("D0027", "click", 1)],
}


def cmd_index(args: argparse.Namespace) -> None:
    from core.catalog import load_catalog  # noqa: PLC0415
    from orchestrator.triton_process import triton_endpoint  # noqa: PLC0415

    settings = settings_from(args)
    if not args.out and not settings.catalog_store:
        raise ShoprankError("index: give --out DIR (an index for this process) or --catalog-store milvus://HOST:PORT")
    load_catalog(args.catalog, skip_untitled=args.skip_untitled)  # fail on a bad catalog before starting anything
    with triton_endpoint(settings.triton_url, settings.model_repository, settings.triton_start_timeout_s) as url:
        asyncio.run(build_and_save(settings, Path(args.catalog), Path(args.out or "."), url, args.skip_untitled))


def cmd_milvus(args: argparse.Namespace) -> None:
    """Run a Milvus Lite server (Milvus's C++ engine, one process) until interrupted."""
    from orchestrator.catalog.milvus_process import LocalMilvus  # noqa: PLC0415

    def stop(signum, frame) -> None:  # SIGTERM stops it as Ctrl-C does: the server process with it
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with LocalMilvus(Path(args.data), port=args.port) as server:
        print(f"Milvus Lite serving {server.db_file} at {server.url} (pid {server.pid}); Ctrl-C stops it", flush=True)
        try:
            while server.running:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        if server.exit_code not in (None, 0):
            raise ShoprankError(f"Milvus Lite exited with {server.exit_code}:\n{server.log_tail(10)}")


def cmd_serve(args: argparse.Namespace) -> None:
    from orchestrator.server import serve  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(settings_from(args)))


def _parse_filter(text: str) -> ranking_pb2.Filter:
    """'brand=Voltra,Kestrel' or 'price=10..500' (either bound may be empty)."""
    field, _, value = text.partition("=")
    if not field or not value:
        raise ShoprankError(f"--filter {text!r}: expected FIELD=VALUE[,VALUE...] or FIELD=MIN..MAX")
    if ".." in value:
        low, _, high = value.partition("..")
        item = ranking_pb2.Filter(field=field)
        try:
            if low:
                item.min = float(low)
            if high:
                item.max = float(high)
        except ValueError:
            raise ShoprankError(f"--filter {text!r}: bounds must be numbers") from None
        return item
    return ranking_pb2.Filter(field=field, any_of=value.split(","))


def format_response(query: str, response: ranking_pb2.SearchResponse, explain: bool) -> str:
    """A human-readable ranking with each item's score breakdown."""
    lines = [f"\nquery {query!r}: {len(response.items)} items in {response.took_ms:.1f} ms "
             f"(models: {', '.join(f'{k}={v}' for k, v in sorted(response.model_versions.items()))})"]
    if response.shop:
        lines.append(f"  shop {response.shop!r}: " + ("its own weights" if response.shop_weights else "the default weights"))
    if response.corrected_query:
        lines.append(f"  showing results for {response.corrected_query!r} (--exact searches for the query as typed)")
    if response.personalization:
        lines.append(f"  personalization: {response.personalization}")
    if response.degraded:
        lines.append(f"  DEGRADED: {response.degraded_reason}")
    if response.request_id:
        lines.append(f"  request {response.request_id} (feedback on it: --request-id and --position)"
                     + (f"; experiment {response.experiment!r}" if response.experiment else ""))
    for position, item in enumerate(response.items, start=1):
        arm = f" [{item.arm}]" if item.arm else ""
        lines.append(f"  {position:2d}. {item.score:8.4f}  {item.product_id:<10} {item.title}{arm}")
        if explain:
            parts = [
                f"{c.name}: raw {c.raw:.3f}, rank {c.rank or '-'}, +{c.contribution:.4f}" for c in item.components
            ]
            lines.append("                 " + " | ".join(parts))
    return "\n".join(lines)


async def _search(args: argparse.Namespace, request: ranking_pb2.SearchRequest) -> ranking_pb2.SearchResponse:
    async with open_channel(args, args.server) as channel:
        return await ranking_pb2_grpc.RankingStub(channel).Search(request, timeout=30, metadata=api_metadata(args))


def cmd_search(args: argparse.Namespace) -> None:
    request = ranking_pb2.SearchRequest(
        query=args.query,
        user_id=args.user_id or "",
        filters=[_parse_filter(text) for text in args.filter or []],
        candidate_ids=args.candidates.split(",") if args.candidates else [],
        explain=args.explain,
        skip_spelling_correction=args.exact,
        skip_personalization=args.no_personalization,
    )
    for text in args.blend or []:
        group, _, value = text.partition("=")
        try:
            setattr(request.blend_weights, group, float(value))
        except (AttributeError, ValueError):
            raise ShoprankError(f"--blend {text!r}: expected relevance|preference|popularity=NUMBER") from None
    if args.top_k is not None:
        request.top_k = args.top_k
    response = asyncio.run(_search(args, request))
    print(format_response(args.query, response, args.explain))


def cmd_demo(args: argparse.Namespace) -> None:
    from core.catalog import shop_of  # noqa: PLC0415
    from orchestrator.catalog.milvus_process import milvus_endpoint  # noqa: PLC0415
    from orchestrator.catalog.milvus_store import is_current  # noqa: PLC0415
    from orchestrator.triton_process import triton_endpoint  # noqa: PLC0415

    settings = settings_from(args)
    shop = shop_of(DEMO_CATALOG, settings.shop)
    started = time.perf_counter()
    with triton_endpoint(settings.triton_url, settings.model_repository, settings.triton_start_timeout_s) as url, \
            milvus_endpoint(settings.catalog_store, DEMO_MILVUS) as milvus:
        print(f"Triton ready at {url}, Milvus at {milvus} ({time.perf_counter() - started:.1f}s)", flush=True)
        settings = dataclasses.replace(settings, triton_url=url, catalog_store=milvus, shop=shop)
        if not is_current(milvus, shop, DEMO_CATALOG):  # the demo shop's catalog in Milvus
            asyncio.run(build_and_save(settings, DEMO_CATALOG, Path("."), url))

        async def work(stub):
            for query, filters in DEMO_QUERIES:
                request = ranking_pb2.SearchRequest(query=query, top_k=5, explain=True, filters=filters)
                response = await stub.Search(request, timeout=30)
                shown = query + "".join(f" [{f.field}: {', '.join(f.any_of) or f'max {f.max:g}'}]" for f in filters)
                print(format_response(shown, response, explain=True), flush=True)
            await _demo_personalization(stub)

        with fresh_profile_store("demo") as store:  # each demo starts with no profiles
            asyncio.run(with_service(dataclasses.replace(settings, profile_store=store), work))
    print("\ndemo finished: orchestrator, Triton and Milvus stopped cleanly")


async def _demo_personalization(stub) -> None:
    from .feedback import feedback_event  # noqa: PLC0415

    now = time.time()
    for user, history in DEMO_HISTORIES.items():
        events = [feedback_event(user, product, kind, at=now - days * 86400) for product, kind, days in history]

        async def stream(events=events):
            for event in events:
                yield event

        result = await stub.FeedbackStream(stream(), timeout=30)
        print(f"\n{user}: {result.accepted} events recorded ({', '.join(f'{k} {p}' for p, k, _ in history)})")
    for user in ("", *DEMO_HISTORIES):
        request = ranking_pb2.SearchRequest(query=DEMO_QUERY_PERSONAL, user_id=user, top_k=4, explain=True)
        response = await stub.Search(request, timeout=30)
        shown = f"{DEMO_QUERY_PERSONAL} (user {user or 'anonymous'})"
        print(format_response(shown, response, explain=False), flush=True)
        for position, item in enumerate(response.items[:2], start=1):
            personal = [c for c in item.components if c.name.startswith(("preference:", "popularity:")) and abs(c.contribution) >= 0.01]
            if personal:
                print(f"      {position}. personal: " + " | ".join(f"{c.name.split(':')[1]} {c.raw:.2f} -> {c.contribution:+.3f}" for c in personal))


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's commands."""
    sub = commands.add_parser("index", help="embed a catalog through Triton and build the ANN and BM25 indexes (in "
                                            "this process's index directory, or the shop's next generation in Milvus)")
    sub.add_argument("--catalog", required=True, help="catalog file, CSV or JSON Lines")
    sub.add_argument("--out", help="index directory to write (required without --catalog-store)")
    catalog_options(sub)
    triton_options(sub)
    sub.set_defaults(func=cmd_index)

    sub = commands.add_parser("milvus", help="run a Milvus Lite server (one process) for catalogs in Milvus")
    sub.add_argument("--data", default=".shoprank/milvus", help="its data directory (default .shoprank/milvus)")
    sub.add_argument("--port", type=int, default=19530, help="its port on 127.0.0.1 (default 19530)")
    sub.set_defaults(func=cmd_milvus)

    sub = commands.add_parser("serve", help="run the gRPC ranking service")
    sub.add_argument("--index", help="index directory (default: .shoprank/index)")
    sub.add_argument("--host")
    sub.add_argument("--port", type=int)
    sub.add_argument("--metrics-port", type=int,
                     help="serve Prometheus metrics (the orchestrator's and its Triton's) on this port (default: off)")
    sub.add_argument("--fusion", choices=("rrf", "weighted"))
    sub.add_argument("--shop", help="the shop served: must be the index's (default: the index's shop)")
    sub.add_argument("--profile-store", help="sqlite:///FILE (default .shoprank/profiles.db) or redis://HOST:PORT/DB")
    sub.add_argument("--admin-port", type=int, help="port of the admin API (rollouts), served only when "
                                                    "SHOPRANK_ADMIN_TOKEN is set (default 50052)")
    sub.add_argument("--rollout-state", help="the rollout state file (default .shoprank/rollout.json)")
    sub.add_argument("--tls-cert", metavar="FILE", help="the service's certificate chain (PEM): both ports speak TLS "
                                                        "only; with --tls-key (default: plaintext)")
    sub.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM, unencrypted)")
    sub.add_argument("--tls-client-ca", metavar="FILE", help="mutual TLS: clients must present a certificate this CA "
                                                             "signed (PEM)")
    triton_options(sub)
    sub.set_defaults(func=cmd_serve)

    sub = commands.add_parser("search", help="send one Search call to a running service and print the ranking")
    sub.add_argument("query")
    sub.add_argument("--server", default="127.0.0.1:50051")
    sub.add_argument("--top-k", type=int)
    sub.add_argument("--user-id")
    sub.add_argument("--filter", action="append", help="FIELD=V1,V2 or price=MIN..MAX; repeatable")
    sub.add_argument("--candidates", help="comma-separated product ids to rank instead of the whole catalog")
    sub.add_argument("--explain", action="store_true")
    sub.add_argument("--exact", action="store_true", help="no spelling correction: search for the query as typed")
    sub.add_argument("--no-personalization", action="store_true", help="rank as for an anonymous user")
    sub.add_argument("--blend", action="append", metavar="GROUP=WEIGHT",
                     help="override a blend group's weight (relevance, preference, popularity); repeatable")
    client_options(sub)
    sub.set_defaults(func=cmd_search)

    sub = commands.add_parser("demo", help="index the demo catalog, serve it, answer a few queries, stop")
    triton_options(sub)
    sub.set_defaults(func=cmd_demo)
