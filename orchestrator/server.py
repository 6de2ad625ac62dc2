"""The asyncio gRPC server: shoprank.v1.Ranking, grpc.health.v1 and server reflection.

`create_server` only wires a pipeline into a server; `Service` owns a whole running orchestrator
(a local tritonserver when no URL is given, the index, the Triton client, the model versions and their rollouts,
the gRPC server, the admin server when a token is set) and `serve` runs one until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import secrets
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from threadpoolctl import threadpool_limits

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from core.errors import ConfigError, ExperimentError, ShoprankError
from core.settings import Settings
from core.specs import RERANKER
from core.spelling import SpellingCorrector
from core.tokenization import PairEncoder, SentencePieceEncoder, TextEncoder
from core.weights import has_shop_weights, read_combination

from .admin import create_admin_server
from .admission import AdmissionInterceptor, Gate
from .catalog.ingest import CatalogWriter
from .catalog.memory import MemoryCatalog
from .catalog.milvus_store import MilvusStore
from .catalog.store import CatalogStore
from .experiments.arms import Arm
from .experiments.controller import ExperimentController
from .experiments.impressions import ImpressionLog
from .index import CatalogIndex, product_encoders
from .metrics import Metrics, MetricsServer
from .personalization.blend import BlendModel
from .personalization.personalizer import Personalizer
from .personalization.store import ProfileStore, open_store
from .rollout.controller import RolloutController, starting_rollout
from .rollout.state import StateFile
from .rollout.versions import VersionLoader, combination_file, repository_versions
from .search import CrossEncoder, Pipeline, QueryEncoder
from .security import ServerSecurity, is_loopback_host, listen
from .servicer import RankingServicer
from .triton import TritonClient
from .triton_process import LocalTriton

log = logging.getLogger(__name__)

SERVICE_NAME = ranking_pb2.DESCRIPTOR.services_by_name["Ranking"].full_name
HEALTH_POLL_S = 1.0
# A local Triton that dies is restarted at once, then after 1, 2, 4 ... 30 s while restarts keep failing.
RESTART_BACKOFF_S = 1.0
MAX_RESTART_BACKOFF_S = 30.0
# A Triton that answers but lacks a served version for this many polls gets the served versions loaded again.
RELOAD_AFTER_POLLS = 3
# How often a service with a catalog in Milvus checks which encoder versions embedded the generation it reads.
ENCODER_CHECK_S = 1.0
# Sent through a newly loaded reranker version before it gets traffic (its first requests build the runtime's
# caches): one query's pairs of several lengths, as the pipeline sends them.
WARMUP_QUERY = "cordless drill with battery"
WARMUP_TEXTS = ["Kestrel 20V Cordless Drill/Driver Kit with 2 Batteries and Charger", "Garden hose 50 ft",
                "2 in. x 4 in. x 8 ft. Premium Kiln-Dried Whitewood Stud | Lumber | Building Materials"] * 8
WARMUP_ROUNDS = 3


# glibc gives each thread that allocates under contention a malloc arena of its own (up to 8 per core) and keeps what
# it freed there: the service's executor threads (catalog refreshes, spelling rebuilds, Milvus calls) grew it 5% in
# a 10-minute soak with no leak, and with two arenas it stayed flat (+0.1%; docs/faults.md, "The soak").
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h


def hold_malloc_arenas(count: int = MALLOC_ARENAS) -> bool:
    """Hold glibc's malloc to `count` arenas for the threads created from now on, unless MALLOC_ARENA_MAX chose
    already. False where that is not glibc (nothing changes then)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, count))
    except (OSError, AttributeError):
        return False


def create_server(pipeline: Pipeline, host: str, port: int, log_key: bytes = b"", gate: Gate | None = None,
                  security: ServerSecurity | None = None) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """A gRPC server for the pipeline, bound but not started; returns (server, bound port, health servicer).
    `log_key`: the key of the hashes logs carry instead of user ids (empty: a random one); `gate`: the admission
    bounds of its calls (none: every call is admitted); `security`: TLS, and the token and rate limit checked before
    admission (none: plaintext, open)."""
    security = security or ServerSecurity()
    interceptors = security.interceptors + ([AdmissionInterceptor(gate)] if gate is not None else [])
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)],
                             interceptors=interceptors)
    ranking_pb2_grpc.add_RankingServicer_to_server(RankingServicer(pipeline, log_key or secrets.token_bytes(32)),
                                                   server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = listen(server, f"{host}:{port}", security.tls)
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    return server, bound, health_servicer


class Service:
    """One running orchestrator and everything it owns."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = 0
        self.triton_url = settings.triton_url
        self._local_triton: LocalTriton | None = None
        self._client: TritonClient | None = None
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._store: ProfileStore | None = None
        self._metrics: MetricsServer | None = None
        self._admin: grpc.aio.Server | None = None
        self.admin_port = 0
        self.loader: VersionLoader | None = None
        self.cross_encoder: CrossEncoder | None = None  # set when the cross-encoder reranks (`_reranking`)
        self.rollout: RolloutController | None = None  # with it: each request's reranker version
        self.pipeline: Pipeline | None = None
        self._catalog: MilvusStore | None = None  # a connection to close at stop
        self._refresher: asyncio.Task[None] | None = None  # follows the catalog's vocabulary and intent
        self.experiments: ExperimentController | None = None
        self.impressions: ImpressionLog | None = None
        self.gate: Gate | None = None  # admission bounds, shared by the public and the admin server
        self._thread_limits: threadpool_limits | None = None

    async def start(self) -> "Service":
        """Open the catalog, start or reach Triton, and serve. Health says NOT_SERVING until the models are ready."""
        settings = self.settings
        hold_malloc_arenas()  # before the executor's threads exist
        security = ServerSecurity.from_settings(settings)  # a bad certificate file stops it before anything starts
        catalog = await self._open_catalog()
        tokenizer = TextEncoder(settings.tokenizer_file, settings.max_query_tokens)
        multilingual_tokenizer = SentencePieceEncoder(settings.multilingual_tokenizer_file, settings.max_query_tokens)
        speller = None
        if settings.max_spelling_edits:
            speller = await asyncio.to_thread(SpellingCorrector.for_catalog, catalog.all_products(), tokenizer.words(),
                                              settings.max_spelling_edits)
        if not self.triton_url:
            # Started empty: the service loads the versions it serves (explicit model control).
            self._local_triton = LocalTriton(settings.model_repository, start_timeout_s=settings.triton_start_timeout_s,
                                             load_all=False)
            self.triton_url = self._local_triton.url
            log.info("starting tritonserver on %s with %s", self.triton_url, settings.model_repository)
        # A store that is down at start is a clear error now, not a silent loss of every later event.
        self._store = open_store(settings.profile_store)
        await self._store.start()
        blend = None
        if settings.blend_model is not None and (settings.blend_model / "manifest.json").is_file():
            blend = await asyncio.to_thread(BlendModel.load, settings.blend_model)
        elif settings.blend_model is not None:
            log.warning("no blend model in %s: searches stay non-personalized (`shoprank train blend`)", settings.blend_model)
        self._client = TritonClient(self.triton_url, settings.triton_timeout_s)
        self.loader = VersionLoader(self._client, settings.model_repository, settings.triton_start_timeout_s)
        self.experiments = ExperimentController(settings.experiment_state, settings.experiment_join_window_s).open()
        self.experiments.check_arm = self._check_arm
        combination, shop_weights = self._reranking(catalog)
        metrics = Metrics() if settings.metrics_port else None
        if settings.impression_log is not None and str(settings.impression_log):
            self.impressions = ImpressionLog(settings.impression_log, queue_size=settings.impression_queue,
                                             retention_s=settings.impression_retention_days * 86400.0,
                                             max_total_bytes=settings.impression_max_mb * 2**20,
                                             metrics=metrics).start()
        log_key = settings.log_key.encode("utf-8") if settings.log_key else secrets.token_bytes(32)
        self.pipeline = Pipeline(settings, catalog, QueryEncoder(self._client, tokenizer, multilingual_tokenizer), {},
                                 cross_encoder=self.cross_encoder, speller=speller,
                                 personalizer=Personalizer(self._store, catalog, blend, settings),
                                 combination=combination, rollout=self.rollout, metrics=metrics,
                                 shop_weights=shop_weights, experiments=self.experiments,
                                 impressions=self.impressions, log_key=log_key)
        if settings.numeric_threads:  # process-wide, once every numeric library is loaded, until the service stops
            self._thread_limits = threadpool_limits(settings.numeric_threads)
        if metrics is not None:
            metrics.rollouts = self.rollout.status if self.rollout is not None else None
            triton_metrics = self._local_triton.metrics_url if self._local_triton is not None else ""
            self._metrics = MetricsServer(metrics, settings.host, settings.metrics_port, triton_metrics).start()
            log.info("metrics on http://%s:%d/metrics", settings.host, self._metrics.port)
        self.gate = Gate({"search": settings.max_inflight_searches, "feedback": settings.max_inflight_feedback,
                          "catalog": settings.max_inflight_catalog, "admin": settings.max_inflight_admin},
                         settings.retry_after_ms, on_refusal=metrics.refuse if metrics is not None else None)
        self._server, self.port, self._health = create_server(self.pipeline, settings.host, settings.port,
                                                              log_key=log_key, gate=self.gate, security=security)
        await self._set_health(False)
        await self._server.start()
        try:
            if self._local_triton is not None:
                await asyncio.to_thread(self._local_triton.start)
            await self._load_models(catalog)
            writer = (CatalogWriter(self._catalog.catalog, self._client, product_encoders(settings))
                      if self._catalog is not None else None)
            if settings.admin_token:
                self._admin, self.admin_port = create_admin_server(settings.host, settings.admin_port,
                                                                   settings.admin_token, self.rollout, writer,
                                                                   self.experiments, gate=self.gate,
                                                                   tls=security.tls)
                await self._admin.start()
                if security.tls is None and not is_loopback_host(settings.host):
                    log.warning("the admin API on %s:%d is plaintext: it refuses every call from another host (its "
                                "token would cross the network in the clear); set tls_cert and tls_key",
                                settings.host, self.admin_port)
                served = [name for name, part in (("rollouts", self.rollout), ("catalog", writer),
                                                  ("experiments", self.experiments)) if part is not None]
                log.info("admin service (%s) on %s:%d", ", ".join(served), settings.host, self.admin_port)
        except BaseException:
            await self.stop()
            raise
        await self._set_health(True)
        self._monitor = asyncio.create_task(self._watch_triton())
        if self._catalog is not None:
            self._refresher = asyncio.create_task(self._follow_catalog(self._catalog, tokenizer))
        log.info("serving %d products of shop %r on %s:%d (Triton %s)", len(catalog.all_products()), catalog.shop,
                 settings.host, self.port, self.triton_url)
        return self

    async def _follow_catalog(self, catalog: MilvusStore, tokenizer: TextEncoder) -> None:
        """Follow the catalog in Milvus: every second, take the generation its alias names (MilvusStore.follow: a
        search reads it without a call of its own) and load its encoder versions when a switch changed them; every catalog_refresh_s, read the catalog again and, when its text changed,
        rebuild the spelling corrector from it (the intent prototypes follow inside the store)."""
        settings = self.settings
        last_refresh = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(ENCODER_CHECK_S)
            try:
                await catalog.follow()
                for model, version in catalog.encoder_versions.items():
                    if self.loader.wanted.get(model) != [version]:
                        log.warning("shop %r now reads a generation embedded by %s version %s: loading it",
                                    catalog.shop, model, version)
                        await self.loader.serve(model, [version])
                if (settings.catalog_refresh_s <= 0
                        or asyncio.get_running_loop().time() - last_refresh < settings.catalog_refresh_s):
                    continue
                last_refresh = asyncio.get_running_loop().time()
                if await catalog.refresh() and settings.max_spelling_edits:
                    speller = await asyncio.to_thread(SpellingCorrector.for_catalog, catalog.all_products(),
                                                      tokenizer.words(), settings.max_spelling_edits)
                    self.pipeline.use_speller(speller)
            except ShoprankError as error:
                log.warning("the catalog's encoder versions, vocabulary or intent were not followed: %s", error)

    async def _open_catalog(self) -> CatalogStore:
        """The shop's catalog in Milvus (settings.catalog_store), else the index at settings.index_dir."""
        settings = self.settings
        if settings.catalog_store:
            if not settings.shop:
                raise ConfigError("a catalog in Milvus is a shop's: name it (--shop, SHOPRANK_SHOP)")
            self._catalog = await MilvusStore.open(settings.catalog_store, settings.shop, settings.catalog_timeout_s)
            return self._catalog
        index = await asyncio.to_thread(CatalogIndex.load, settings.index_dir)
        if settings.shop and settings.shop != index.shop:
            raise ConfigError(f"the index at {settings.index_dir} is shop {index.shop!r}'s, not {settings.shop!r}'s: "
                              f"build the shop's own (`shoprank index --shop {settings.shop}`)")
        if not index.shop:
            log.warning("the index at %s names no shop: the default weights serve (rebuild it with --shop NAME)",
                        settings.index_dir)
        return MemoryCatalog(index)

    def _reranking(self, catalog: CatalogStore) -> tuple[dict[str, dict[str, float]], bool]:
        """Decide from the repository how candidates are reranked: with the cross-encoder (sets `cross_encoder` and
        `rollout`, which picks each request's version and its weights), or without it (returns the stable version's
        weights for the catalog's shop, which combine the cheap components, and whether they are the shop's own;
        none when the repository holds no reranker)."""
        settings = self.settings
        if not repository_versions(settings.model_repository, RERANKER.name):
            log.warning("%s holds no %s version: results stay in fused order", settings.model_repository, RERANKER.name)
            return {}, False
        if settings.rerank_depth <= 0:  # no cross-encoder: its version's weights still combine the cheap components
            version = starting_rollout(settings, StateFile(settings.rollout_state).load(), RERANKER.name).stable
            path = combination_file(settings.model_repository, RERANKER.name, version)
            return read_combination(path, shop=catalog.shop), has_shop_weights(path, catalog.shop)
        self.cross_encoder = CrossEncoder(self._client, PairEncoder(settings.tokenizer_file, settings.max_pair_tokens),
                                          settings.rerank_timeout_s, settings.max_concurrent_reranks)
        self.rollout = RolloutController(self.loader, settings, shop=catalog.shop, warm=self._warm,
                                         experiments=self.experiments)
        return {}, False

    def _check_arm(self, arm: Arm) -> None:
        """ExperimentError unless this service can rank as the experiment arm asks: a reranker version it names must
        be loaded (the stable version, or a rollout's candidate)."""
        if not arm.reranker_version:
            return
        if self.rollout is None:
            raise ExperimentError(f"arm {arm.text!r} names a reranker version, but this service serves no reranker")
        loaded = self.loader.wanted.get(RERANKER.name, [])
        if arm.reranker_version not in loaded:
            raise ExperimentError(f"arm {arm.text!r}: reranker version {arm.reranker_version} is not loaded here "
                                  f"(loaded: {', '.join(loaded) or 'none'}); to judge a new version by shoppers' "
                                  f"clicks, roll it out interleaved: `shoprank rollout start reranker "
                                  f"{arm.reranker_version} --interleave PERCENT`")

    async def _load_models(self, catalog: CatalogStore) -> None:
        """Load the encoder versions the catalog was embedded with, and the reranker versions of the rollout state,
        all at once (Triton loads them in parallel)."""
        settings = self.settings
        await self._client.wait_until_live(settings.triton_start_timeout_s)
        for model, version in catalog.encoder_versions.items():
            if version not in repository_versions(settings.model_repository, model):
                raise ConfigError(f"the catalog of shop {catalog.shop!r} was embedded with {model} version {version}, "
                                  f"which {settings.model_repository} does not hold: rebuild it (`shoprank index`)")
        await asyncio.gather(*(self.loader.serve(model, [version]) for model, version in catalog.encoder_versions.items()),
                             *([self.rollout.open()] if self.rollout is not None else []))

    async def _warm(self, model: str, version: str) -> None:
        """Send a few requests through a newly loaded reranker version; TritonError when it cannot answer."""
        feeds = self.cross_encoder.tokenizer(WARMUP_QUERY, WARMUP_TEXTS)
        for _ in range(WARMUP_ROUNDS):
            scores = (await self._client.infer(RERANKER, feeds, version))["score"]
            if scores.shape[0] != len(WARMUP_TEXTS) or not (scores == scores).all():
                raise ConfigError(f"{model} version {version} answered the warm-up with {scores.shape} scores or NaN")

    async def _set_health(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self._health.set(name, status)

    async def _watch_triton(self) -> None:
        """Keep the health status in step with the served versions' readiness, restart a local Triton that died,
        and load the versions again into a Triton that has lost them (restarted by someone else, or a reload that
        failed)."""
        serving = True
        restarts = 0
        unready = 0  # polls in a row with a version not ready
        while True:
            await asyncio.sleep(HEALTH_POLL_S)
            triton = self._local_triton
            if triton is not None and triton.exit_code is not None:  # died: reaped by exit_code
                if serving:
                    await self._set_health(False)
                    serving = False
                restarts = await self._restart_triton(triton, restarts)
                continue
            ready = await self.loader.ready()
            if ready != serving:
                log.warning("Triton's model versions %s are %s", self.loader.wanted, "ready again" if ready else "not ready")
                await self._set_health(ready)
                serving = ready
            unready = 0 if ready else unready + 1
            if ready:
                restarts = 0
            elif unready % RELOAD_AFTER_POLLS == 0:
                try:
                    await self.loader.reload()
                except ShoprankError as error:
                    log.error("loading the served versions again failed: %s", error)

    async def _restart_triton(self, triton: LocalTriton, restarts: int) -> int:
        """Start the local Triton again on its port after a backoff (none the first time, then 1, 2, 4 ... 30 s
        while restarts keep failing); returns the number of restarts since it was last ready. The client's
        channel reconnects by itself within 1 s (orchestrator/triton.py)."""
        log.error("tritonserver exited with code %s; restarting it (attempt %d):\n%s",
                  triton.exit_code, restarts + 1, triton.log_tail(10))
        if restarts:
            await asyncio.sleep(min(RESTART_BACKOFF_S * 2 ** (restarts - 1), MAX_RESTART_BACKOFF_S))
        try:
            await asyncio.to_thread(triton.start)
            await self._client.wait_until_live(self.settings.triton_start_timeout_s)  # the channel reconnects
            await self.loader.reload()  # it starts empty: the same versions as before it died
        except ShoprankError as error:
            log.error("tritonserver did not restart: %s", error)
        else:
            log.warning("tritonserver restarted on %s with %s", triton.url, self.loader.wanted)
        return restarts + 1

    async def stop(self) -> None:
        """Stop serving (in-flight calls get the grace period), then stop Triton if this service started it."""
        for task in (self._monitor, self._refresher):
            if task is not None:
                task.cancel()
        self._monitor = self._refresher = None
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._admin is not None:
            await self._admin.stop(self.settings.grace_s)
            self._admin = None
        if self._server is not None:
            await self._server.stop(self.settings.grace_s)
            self._server = None
        if self.rollout is not None:
            await self.rollout.close()
        if self.experiments is not None:
            await self.experiments.close()
            self.experiments = None
        if self.impressions is not None:
            await asyncio.to_thread(self.impressions.close)
            self.impressions = None
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._local_triton is not None:
            await asyncio.to_thread(self._local_triton.stop)
            self._local_triton = None
        if self._store is not None:
            await self._store.close()
            self._store = None
        if self._metrics is not None:
            await asyncio.to_thread(self._metrics.stop)
            self._metrics = None
        if self._thread_limits is not None:
            self._thread_limits.restore_original_limits()
            self._thread_limits = None
        if self._catalog is not None:
            await asyncio.to_thread(self._catalog.close)
            self._catalog = None


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run a Service until SIGINT or SIGTERM."""
    service = await Service(settings).start()
    print(f"shoprank serving on {settings.host}:{service.port} (Triton at {service.triton_url})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await service.stop()
