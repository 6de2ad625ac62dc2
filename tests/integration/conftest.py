"""Fixtures that start real servers: a tritonserver from the nvidia-pytriton wheel and shoprank's gRPC service.

Servers bind free ports on 127.0.0.1, are polled for readiness up to a deadline, and stop in `finally`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import threading
from pathlib import Path

import grpc
import pytest

from core._proto.shoprank.v1 import ranking_pb2_grpc
from core.catalog import load_catalog
from core.settings import Settings
from orchestrator.index import build_index, product_encoders
from orchestrator.server import Service
from orchestrator.triton import TritonClient
from orchestrator.triton_process import LocalTriton

ROOT = Path(__file__).resolve().parents[2]
DEMO_CATALOG = ROOT / "data" / "demo" / "catalog.csv"
DEMO_JUDGMENTS = ROOT / "data" / "demo" / "judgments.csv"
MODEL_REPOSITORY = ROOT / "model_repository"
BLEND_MODEL = ROOT / "models" / "blend"


class ServiceThread:
    """A shoprank Service running on its own event loop in a background thread, for synchronous tests."""

    def __init__(self, settings: Settings) -> None:
        self.service = Service(settings)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine, timeout: float = 180.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> "ServiceThread":
        self.run(self.service.start())
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.service.port}"

    def stop(self) -> None:
        try:
            self.run(self.service.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory) -> Path:
    """The exported cpu target as a fresh clone has it: each model's newest version as its only version, 1
    (`make test` exports first; exporting again is a no-op when current). A working copy may hold older
    versions, and a newer encoder version would otherwise build the demo index."""
    from core.model_repository import versions
    from export.encoders import export_bi_encoder_repository, export_multilingual_repository
    from loadtest.rollout_check import linked_copy

    export_bi_encoder_repository(MODEL_REPOSITORY)
    export_multilingual_repository(MODEL_REPOSITORY)
    root = tmp_path_factory.mktemp("models") / "cpu"
    for source in sorted(path for path in (MODEL_REPOSITORY / "cpu").iterdir() if path.is_dir()):
        (root / source.name).mkdir(parents=True)
        for item in source.iterdir():
            if item.is_file():  # config.pbtxt, tokenizer files
                shutil.copy2(item, root / source.name / item.name)
        linked_copy(source / str(versions(source)[-1]), root / source.name / "1")
    return root


@pytest.fixture(scope="session")
def triton(model_repository):
    server = LocalTriton(model_repository)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def settings(model_repository, tmp_path_factory) -> Settings:
    # Reranking on, with a deadline loose enough for a loaded CI machine (the missed deadline has its own test).
    # The profile store is the session's own file; the blend is the released one.
    # The rollout state is the session's own too: never the checkout's .shoprank/rollout.json.
    # Up to 8 searches at once (the batching test sends that many together); admission's own bounds are tested
    # apart (test_overload.py), and the default bound is what `make overload-check` measured.
    state = tmp_path_factory.mktemp("profiles")
    return Settings(model_repository=model_repository, port=0, triton_start_timeout_s=60.0, rerank_depth=100,
                    max_inflight_searches=8,
                    rerank_timeout_s=15.0, profile_store=f"sqlite:///{state / 'profiles.db'}", blend_model=BLEND_MODEL,
                    rollout_state=state / "rollout.json", experiment_state=state / "experiments.json",
                    impression_log=state / "impressions")


@pytest.fixture(scope="session")
def demo_index(triton, settings, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo-index") / "index"

    async def build():
        client = TritonClient(triton.url, timeout_s=60.0)
        try:
            index = await build_index(DEMO_CATALOG, load_catalog(DEMO_CATALOG), client, *product_encoders(settings),
                                      shop="demo", show_progress=False)
        finally:
            await client.close()
        index.save(out)

    asyncio.run(build())
    return out


@pytest.fixture(scope="session")
def milvus(tmp_path_factory):
    """A Milvus Lite server (Milvus's C++ engine, one process) on a free port."""
    from orchestrator.catalog.milvus_process import LocalMilvus

    with LocalMilvus(tmp_path_factory.mktemp("milvus")) as server:
        yield server


def demo_catalog_in_milvus(url: str, shop: str, triton: LocalTriton, settings: Settings) -> str:
    """The demo catalog as `shop` in the Milvus server at `url`, embedded through the test Triton; the URL."""
    from orchestrator.catalog.milvus_store import rebuild

    async def build():
        client = TritonClient(triton.url, timeout_s=60.0)
        try:
            await rebuild(url, shop, DEMO_CATALOG, load_catalog(DEMO_CATALOG), client, product_encoders(settings),
                          show_progress=False)
        finally:
            await client.close()

    asyncio.run(build())
    return url


@pytest.fixture(scope="session")
def demo_in_milvus(triton, settings, milvus) -> str:
    """The demo catalog as the shop `demo` in the Milvus server, embedded through the test Triton; its URL."""
    return demo_catalog_in_milvus(milvus.url, "demo", triton, settings)


@pytest.fixture(scope="session")
def milvus_service(triton, settings, demo_in_milvus):
    """A service whose catalog is the shop `demo` in Milvus."""
    running = ServiceThread(dataclasses.replace(settings, catalog_store=demo_in_milvus, shop="demo",
                                                triton_url=triton.url))
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def service(triton, settings, demo_index):
    running = ServiceThread(dataclasses.replace(settings, index_dir=demo_index, triton_url=triton.url))
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def stub(service):
    with grpc.insecure_channel(service.address) as channel:
        yield ranking_pb2_grpc.RankingStub(channel)
