"""The service in process, for the commands, load tests and benchmarks that run one: Triton started (or reached at
the settings' `triton_url`), the catalog's index built when it is missing or stale, a Service on a free port.

The harness takes `Settings`. `triton_options` and `settings_from` are its command-line face, shared by the
`shoprank` commands (cli/) and `python -m loadtest.run`, which may not import the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc

from core._proto.shoprank.v1 import ranking_pb2_grpc
from core.settings import Settings

# Where an index is cached when none is named: under this folder, by the catalog's digest.
INDEX_CACHE = Path(".shoprank/indexes")

T = TypeVar("T")
Adjust = Callable[[Settings], Settings]


def triton_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that starts (or reaches) Triton."""
    parser.add_argument("--triton-url", help="host:port of a running Triton's gRPC endpoint (default: start one)")
    parser.add_argument("--rerank-depth", type=int,
                        help="rerank the top N fused candidates: match features, intent and the cross-encoder "
                             "(default 100; 0: off)")
    parser.add_argument("--cross-encoder-depth", type=int,
                        help="the cross-encoder scores only the first N of those in the order of the weights without "
                             "it, the rest get its score at their place in that order (default 30; 0: all of them)")
    parser.add_argument("--catalog-store", help="milvus://HOST:PORT: the shop's catalog in that Milvus, shared by every "
                                                "replica (default: SHOPRANK_CATALOG_STORE, else an index in this "
                                                "process)")
    parser.add_argument("--model-repository",
                        help="model repository for a local Triton (default: model_repository/cpu)")
    parser.add_argument("--reranker-version",
                        help="serve this reranker version instead of the rollout state's stable one, for instance to "
                             "evaluate a new export (rollouts are off)")


# The settings a command's options may set, under the same names (and --index, which sets index_dir).
OPTION_SETTINGS = ("model_repository", "triton_url", "host", "port", "metrics_port", "fusion", "shop", "rerank_depth",
                   "cross_encoder_depth", "profile_store", "admin_port", "rollout_state", "reranker_version",
                   "catalog_store", "tls_cert", "tls_key", "tls_client_ca")


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    """Settings from the environment, overridden by the options `args` has and were given (and by `extra`)."""
    given = {name: getattr(args, name, None) for name in OPTION_SETTINGS}
    return Settings.from_env(**{**given, "index_dir": getattr(args, "index", None), **extra})


async def build_and_save(settings: Settings, catalog: Path, out: Path, url: str, skip_untitled: bool = False) -> None:
    """Embed the catalog through the Triton at `url` and index it for its shop (the settings' or the catalog folder's
    name): into the shop's next generation in Milvus when the settings name a catalog store, else into an index
    saved in `out`."""
    from core.catalog import load_catalog, shop_of  # noqa: PLC0415
    from core.specs import BI_ENCODER, MULTILINGUAL_ENCODER  # noqa: PLC0415
    from orchestrator.catalog.milvus_store import rebuild  # noqa: PLC0415
    from orchestrator.index import build_index, product_encoders  # noqa: PLC0415
    from orchestrator.triton import TritonClient  # noqa: PLC0415

    products = load_catalog(catalog, skip_untitled=skip_untitled)
    encoders = product_encoders(settings)
    shop = shop_of(catalog, settings.shop)
    client = TritonClient(url, timeout_s=60.0)
    try:
        await client.wait_until_ready([BI_ENCODER, MULTILINGUAL_ENCODER], settings.triton_start_timeout_s)
        if settings.catalog_store:
            started = time.perf_counter()
            generation = await rebuild(settings.catalog_store, shop, catalog, products, client, encoders)
            print(f"indexed {len(products)} products of shop {shop!r} into generation {generation} in Milvus at "
                  f"{settings.catalog_store} in {time.perf_counter() - started:.1f}s", flush=True)
            return
        index = await build_index(catalog, products, client, *encoders, shop=shop)
    finally:
        await client.close()
    index.save(out)
    manifest = index.manifest
    print(
        f"indexed {manifest['products']} products of shop {manifest['shop']!r} into {out} in {manifest['build_seconds']:.1f}s "
        f"(embedding {manifest['products'] / manifest['embed_seconds']:.0f} products/s through Triton)",
        flush=True,
    )


def cached_index(catalog: Path, shop: str) -> Path:
    """Where the shop's index of this catalog content is cached when none is named (relative to the project)."""
    from core.catalog import catalog_digest  # noqa: PLC0415

    return INDEX_CACHE / f"{shop}-{catalog_digest(catalog)[:16]}"


def index_is_current(directory: Path, catalog: Path, shop: str) -> bool:
    """Whether `directory` holds an index of this catalog's content for this shop in today's format."""
    from core.catalog import catalog_digest  # noqa: PLC0415
    from orchestrator.index import FORMAT_VERSION  # noqa: PLC0415

    manifest = directory / "manifest.json"
    if not manifest.is_file():
        return False
    data = json.loads(manifest.read_text())
    return (data.get("format_version") == FORMAT_VERSION and data.get("shop") == shop
            and data.get("catalog_sha256") == catalog_digest(catalog))


def run_on_catalog(settings: Settings, catalog: Path, work: Callable[[ranking_pb2_grpc.RankingStub], Awaitable[T]],
                   index_dir: Path | None = None, adjust: Adjust | None = None, skip_untitled: bool = False) -> T:
    """Start Triton (or use the settings' triton_url), build the catalog's index if it is missing or stale, and
    return `work(stub)` run against a Service on it. The index lives at `index_dir`, else is cached under
    .shoprank/indexes by the shop and the catalog's digest; `adjust` edits the settings.

    The service starts from a fresh rollout state: it measures the repository's newest reranker version (or the
    settings' reranker_version), not the one a serving deployment's .shoprank/rollout.json keeps stable, and
    leaves that file alone; its experiments and impression log are scratch ones too."""
    with tempfile.TemporaryDirectory(prefix="shoprank-rollout-") as scratch:
        def fresh_state(settings: Settings) -> Settings:
            state = scratch_state(Path(scratch), profile_store=settings.profile_store)  # the settings' store stays
            settings = dataclasses.replace(settings, **state)
            return adjust(settings) if adjust is not None else settings

        with catalog_stack(settings, catalog, index_dir, fresh_state, skip_untitled) as settings:
            return asyncio.run(with_service(settings, work))


@contextmanager
def catalog_stack(settings: Settings, catalog: Path, index_dir: Path | None = None, adjust: Adjust | None = None,
                  skip_untitled: bool = False) -> Iterator[Settings]:
    """The settings of a Service on the catalog, for the block: Triton started (or the settings' triton_url) and
    the index built if it is missing or stale, as `run_on_catalog` says."""
    from core.catalog import shop_of  # noqa: PLC0415
    from orchestrator.triton_process import triton_endpoint  # noqa: PLC0415

    shop = shop_of(catalog, settings.shop)
    if index_dir is None:
        index_dir = cached_index(catalog, shop)
    with triton_endpoint(settings.triton_url, settings.model_repository, settings.triton_start_timeout_s) as url:
        settings = dataclasses.replace(settings, triton_url=url, index_dir=index_dir, shop=shop)
        if adjust is not None:
            settings = adjust(settings)
        if settings.catalog_store:
            from orchestrator.catalog.milvus_store import is_current  # noqa: PLC0415

            current = is_current(settings.catalog_store, shop, catalog)
        else:
            current = index_is_current(index_dir, catalog, shop)
        if not current:
            asyncio.run(build_and_save(settings, catalog, index_dir, url, skip_untitled))
        yield settings


def scratch_state(folder: Path, name: str = "", rollout_from: Path | None = None,
                  profile_store: str | None = None) -> dict[str, Any]:
    """The files of a service that a tool starts for itself, under `folder`, as Settings fields: an empty SQLite
    profile store (or `profile_store`), a rollout state, the experiments' state and an impression log, so that it
    never reads or writes a serving deployment's. The rollout state starts as a copy of `rollout_from` when that file
    exists (the same reranker versions serve; the file itself is never written), else empty (the repository's newest
    versions). `name` keeps the files of several services in one folder apart."""
    folder = Path(folder).resolve()
    suffix = f"-{name}" if name else ""
    rollout_state = folder / f"rollout{suffix}.json"
    if rollout_from is not None and rollout_from.is_file():
        shutil.copyfile(rollout_from, rollout_state)
    if profile_store is None:
        profile_store = f"sqlite:///{folder}/profiles{suffix}.db"
    return {"profile_store": profile_store, "rollout_state": rollout_state,
            "experiment_state": folder / f"experiments{suffix}.json", "impression_log": folder / f"impressions{suffix}"}


def as_environment(fields: Mapping[str, Any]) -> dict[str, str]:
    """Settings fields as the SHOPRANK_* variables that set them, for a service started as a process of its own."""
    return {f"SHOPRANK_{name.upper()}": str(value) for name, value in fields.items()}


def local(settings: Settings) -> Settings:
    """The settings of a service that a tool starts for itself and calls over loopback in plaintext (evaluation, the
    demo, the load checks): a port of its own, and no TLS, public token or rate limit from the environment."""
    return dataclasses.replace(settings, port=0, tls_cert=None, tls_key=None, tls_client_ca=None, api_token="",
                               rate_limit_rps=0.0)


# What `local` clears, as environment variables: a tool's service started as a subprocess must not get them either.
LOCAL_UNSET = ("SHOPRANK_TLS_CERT", "SHOPRANK_TLS_KEY", "SHOPRANK_TLS_CLIENT_CA", "SHOPRANK_API_TOKEN",
               "SHOPRANK_RATE_LIMIT_RPS")


async def with_service(settings: Settings, work: Callable[[ranking_pb2_grpc.RankingStub], Awaitable[T]]) -> T:
    """Start a Service (port 0, `local`), run `work(stub)`, stop the service."""
    from orchestrator.server import Service  # noqa: PLC0415

    service = await Service(local(settings)).start()
    try:
        async with grpc.aio.insecure_channel(f"{settings.host}:{service.port}") as channel:
            return await work(ranking_pb2_grpc.RankingStub(channel))
    finally:
        await service.stop()


@contextmanager
def fresh_profile_store(purpose: str) -> Iterator[str]:
    """The URL of an empty SQLite profile store in a temporary directory, removed afterwards: never the serving
    store, for runs that must start with no users (the demo, replays for evaluation and training)."""
    with tempfile.TemporaryDirectory(prefix=f"shoprank-{purpose}-") as scratch:
        yield f"sqlite:///{Path(scratch).resolve()}/profiles.db"
