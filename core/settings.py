"""The orchestrator's configuration: one frozen dataclass, built in one place from arguments and environment.

Every field can be set by an environment variable named SHOPRANK_<FIELD> (for example SHOPRANK_TRITON_URL);
command-line arguments override the environment. Nothing else in the code reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .catalog import SHOP_NAME
from .errors import ConfigError

FUSIONS = ("rrf", "weighted")
# Fusion methods by their former names, still accepted: "blend" is now the preference blend alone.
FUSION_ALIASES = {"blend": "weighted"}


@dataclass(frozen=True)
class Settings:
    """Everything the orchestrator needs to start and to answer."""

    # The shop served: its name keys everything learned for it (combination weights); empty: the index's shop,
    # or for a new index the catalog's folder name (core/catalog.shop_of).
    shop: str = ""
    index_dir: Path = Path(".shoprank/index")
    # Where the catalog is searched: empty, the index at `index_dir` loaded into this process; "milvus://HOST:PORT",
    # the shop's catalog in a Milvus that every replica shares and that catalog changes reach at once.
    catalog_store: str = ""
    # What is built from the whole catalog in Milvus (the spelling vocabulary, the intent prototypes) is read again
    # this often, and rebuilt when the catalog's text changed; searches themselves see every change at once. 0: never.
    catalog_refresh_s: float = 60.0
    # A search's calls to Milvus give up after this long (whole seconds; pymilvus retries within it), and the call
    # answers UNAVAILABLE: a search never waits long on a catalog that is down.
    catalog_timeout_s: float = 2.0
    model_repository: Path = Path("model_repository/cpu")
    # Empty: start the tritonserver shipped in the nvidia-pytriton wheel on `model_repository`.
    triton_url: str = ""
    host: str = "127.0.0.1"
    port: int = 50051
    # Prometheus metrics (orchestrator/metrics.py) on this port of `host`; 0: not served.
    metrics_port: int = 0
    encoder_model: str = "bi_encoder"
    # The tokenizer that matches the encoder; by default the copy `shoprank export` puts beside the model.
    tokenizer_path: Path | None = None
    # The multilingual sentence encoder; its sentencepiece model is the copy `shoprank export` puts beside it.
    multilingual_model: str = "multilingual_encoder"
    max_query_tokens: int = 64
    max_product_tokens: int = 128
    triton_timeout_s: float = 2.0
    triton_start_timeout_s: float = 120.0
    # "weighted" measured better than "rrf" on Home Depot's judged queries (benchmarks/retrieval_quality.py):
    # search nDCG@10 0.406 vs 0.380 at recall@100 0.780 vs 0.784; rerank nDCG@10 0.937 vs 0.937.
    fusion: str = "weighted"
    rrf_k: int = 60
    # Weight of the normalized BM25 score in the "weighted" fusion; the cosine gets 1 - fusion_lexical_weight.
    fusion_lexical_weight: float = 0.3
    retrieve_depth: int = 200
    # The top `rerank_depth` fused candidates (at least top_k) are reranked: combined with BM25, cosines, match
    # features, intent and the cross-encoder's scores from one Triton request (combination.json); past
    # `rerank_timeout_s` they are ranked by the same weights without the cross-encoder, marked degraded. 0 turns
    # reranking off.
    rerank_depth: int = 100
    # A cascade: the cross-encoder scores only the first `cross_encoder_depth` of those candidates in the order of
    # the same weights without it (cheap: BM25, cosines, match features, intent); the others get its score at
    # their place in that order among the ones it scored. 0 (or weights of the cross-encoder alone): it scores all.
    # 30 tied scoring all 100 on Home Depot dev (-0.0007 [-0.0044, +0.0030]) and test (-0.0011 [-0.0045, +0.0025])
    # at 58% of the p50 (benchmarks/rerank_depth.py; docs/reranker.md, "A cascade").
    cross_encoder_depth: int = 30
    reranker_model: str = "reranker"
    rerank_timeout_s: float = 1.0
    # Reranking requests waiting on Triton at once; more queries are answered at once without the cross-encoder,
    # marked degraded.
    # On this 2-core CPU a query's 100 pairs take ~100 ms (INT8, 3 layers), so a third would wait ~200 ms first.
    max_concurrent_reranks: int = 2
    max_pair_tokens: int = 48
    # Threads of the orchestrator's own numeric libraries (NumPy's OpenBLAS, faiss's OpenBLAS and OpenMP) while it
    # serves; 0 leaves their defaults. A query's arithmetic is small, and their idle threads spin: on a host shared
    # with Triton one thread each took ~45 ms off a reranked search's p50 (docs/reranker.md, "Orchestrator threads").
    numeric_threads: int = 1
    # Model versions (orchestrator/rollout): the state file records the stable reranker version and any rollout
    # in progress, and survives restarts. `reranker_version` pins one version instead (evaluation): rollouts off.
    rollout_state: Path = Path(".shoprank/rollout.json")
    reranker_version: str = ""
    # The admin gRPC service (rollouts) listens on `admin_port` of `host` when `admin_token` is set (callers send
    # "authorization: Bearer TOKEN"); without a token it is off. Set it through SHOPRANK_ADMIN_TOKEN.
    admin_token: str = ""
    admin_port: int = 50052
    # Guards: a canary is rolled back when, over the last `rollout_window_s` and at least `rollout_min_requests`
    # of its requests, its reranker error rate or p99 passes these; a shadow when its mean agreement (RBO of its
    # top 10 against the stable version's) falls below `rollout_min_agreement`.
    rollout_window_s: float = 60.0
    rollout_min_requests: int = 20
    rollout_max_error_rate: float = 0.05
    rollout_max_p99_ms: float = 1000.0
    rollout_min_agreement: float = 0.5
    # Online experiments (orchestrator/experiments): their arms and figures survive restarts in `experiment_state`;
    # feedback naming an answer joins it when it arrives within `experiment_join_window_s` at the replica that
    # answered.
    experiment_state: Path = Path(".shoprank/experiments.json")
    experiment_join_window_s: float = 3600.0
    # Every answer (request id, shop, hashed user, query, products shown and their arms, model versions) and the
    # feedback that names one are appended to rotated JSON Lines files in `impression_log` (empty: off), off the
    # search's path through a queue of `impression_queue` records; past it, or on a write error, records are
    # dropped and counted (shoprank_impression_log_records). Files older than `impression_retention_days`, and the
    # oldest past `impression_max_mb` in all, are deleted.
    impression_log: Path | None = Path(".shoprank/impressions")
    impression_queue: int = 10000
    impression_retention_days: float = 7.0
    impression_max_mb: int = 2048
    # Admission control (orchestrator/admission.py): past this many calls of a kind in flight, a call is refused at
    # once with RESOURCE_EXHAUSTED and `retry-after-ms` (0: no bound). Each kind has its own bound, so a flood of
    # searches cannot starve feedback, catalog changes or admin calls, nor they it. The search bound is what `make
    # overload-check` measured on the 2-core reference machine (the p99 of the searches a call found in flight at
    # capacity, 30/s on the demo catalog): 3. At 3x capacity, 8 let accepted calls wait to a p99 of 248 ms, 3 held
    # 144 ms and 2 held 101 ms but refused 6% at capacity (docs/overload.md). Other hardware: run the check.
    max_inflight_searches: int = 3
    max_inflight_feedback: int = 16
    max_inflight_catalog: int = 4
    max_inflight_admin: int = 8
    retry_after_ms: int = 100
    # TLS (orchestrator/security.py): with a certificate and its key (PEM files) both ports speak TLS only; with
    # `tls_client_ca` too, clients must present a certificate that CA signed (mutual TLS). Without them the ports are
    # plaintext, and the admin API then takes its token only from loopback peers.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # The public API's own optional token ("authorization: Bearer TOKEN"; set it through SHOPRANK_API_TOKEN).
    api_token: str = ""
    # Per-client rate limit on the public API (calls per second and burst, by client identity: the mTLS subject, else
    # the token, else the peer address); 0: none.
    rate_limit_rps: float = 0.0
    rate_limit_burst: int = 20
    # Query words no product has are corrected into catalog terms up to this many edits away
    # (core/spelling.py); 0 turns correction off.
    max_spelling_edits: int = 2
    # Personalization: users' events live in the profile store (sqlite:///FILE, or redis://HOST:PORT/DB shared by
    # several replicas); the learned blend (models/blend, `shoprank train blend`) re-orders the reranked head and
    # the user's own products among the candidates (the first blend_depth of the fused order when not reranked).
    profile_store: str = "sqlite:///.shoprank/profiles.db"
    blend_model: Path | None = Path("models/blend")
    blend_depth: int = 100
    # Besides the head and the user's own products, the most bought of the first popularity_scan candidates join
    # the blend (a filtered search's candidates are every product that passes the filter).
    popular_depth: int = 50
    popularity_scan: int = 2000
    popularity_refresh_s: float = 5.0
    max_profile_events: int = 2000
    max_event_future_s: float = 300.0
    max_user_id_bytes: int = 256
    # Key of the hash that logs carry instead of user ids; empty: a random key per process.
    log_key: str = ""
    default_top_k: int = 10
    max_top_k: int = 1000
    max_query_chars: int = 1000
    max_candidates: int = 1000
    grace_s: float = 5.0

    def __post_init__(self) -> None:
        if self.fusion in FUSION_ALIASES:
            object.__setattr__(self, "fusion", FUSION_ALIASES[self.fusion])
        if self.fusion not in FUSIONS:
            raise ConfigError(f"fusion must be one of {', '.join(FUSIONS)}, not {self.fusion!r}")
        if not 0.0 <= self.fusion_lexical_weight <= 1.0:
            raise ConfigError("fusion_lexical_weight must lie in [0, 1]")
        for name in ("rrf_k", "retrieve_depth", "default_top_k", "max_top_k", "max_query_chars", "max_candidates",
                     "max_pair_tokens", "max_concurrent_reranks", "blend_depth", "max_profile_events", "popularity_scan",
                     "max_user_id_bytes", "impression_queue", "impression_max_mb"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.max_spelling_edits not in (0, 1, 2):
            raise ConfigError("max_spelling_edits must be 0 (off), 1 or 2")
        if self.popular_depth < 0:
            raise ConfigError("popular_depth must be 0 (off) or more")
        if self.rerank_depth < 0:
            raise ConfigError("rerank_depth must be 0 (off) or more")
        if self.cross_encoder_depth < 0:
            raise ConfigError("cross_encoder_depth must be 0 (all of rerank_depth) or more")
        if self.numeric_threads < 0:
            raise ConfigError("numeric_threads must be 0 (the libraries' defaults) or more")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError("metrics_port must be 0 (off) or a TCP port")
        if not 0 <= self.admin_port <= 65535:
            raise ConfigError("admin_port must be a TCP port (0: any free one)")
        if self.shop and not SHOP_NAME.fullmatch(self.shop):
            raise ConfigError(f"shop must be lowercase letters, digits, '.', '_' or '-', not {self.shop!r}")
        if self.reranker_version and not self.reranker_version.isdigit():
            raise ConfigError(f"reranker_version must be a version number, not {self.reranker_version!r}")
        if self.rollout_window_s <= 0 or self.rollout_min_requests < 1:
            raise ConfigError("rollout_window_s must be positive and rollout_min_requests at least 1")
        for name in ("max_inflight_searches", "max_inflight_feedback", "max_inflight_catalog", "max_inflight_admin",
                     "retry_after_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 (no bound) or more")
        if self.rate_limit_rps < 0 or self.rate_limit_burst < 1:
            raise ConfigError("rate_limit_rps must be 0 (off) or more, and rate_limit_burst at least 1")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("TLS needs both tls_cert and tls_key (PEM files)")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError("mutual TLS (tls_client_ca) needs the server's own tls_cert and tls_key")
        if self.experiment_join_window_s <= 0 or self.impression_retention_days <= 0:
            raise ConfigError("experiment_join_window_s and impression_retention_days must be positive")
        if not 0.0 <= self.rollout_max_error_rate <= 1.0 or not 0.0 <= self.rollout_min_agreement <= 1.0:
            raise ConfigError("rollout_max_error_rate and rollout_min_agreement must lie in [0, 1]")

    @property
    def tokenizer_file(self) -> Path:
        """Where the query tokenizer is read from."""
        if self.tokenizer_path is not None:
            return self.tokenizer_path
        return self.model_repository / self.encoder_model / "tokenizer.json"

    @property
    def multilingual_tokenizer_file(self) -> Path:
        """Where the multilingual encoder's sentencepiece model is read from."""
        return self.model_repository / self.multilingual_model / "sp.model"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Settings from SHOPRANK_* variables, then `overrides` (None values are ignored)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            raw = environ.get(f"SHOPRANK_{item.name.upper()}")
            if raw is not None:
                values[item.name] = _parse(item.name, raw, item.type)
        values.update({key: value for key, value in overrides.items() if value is not None})
        for key in ("index_dir", "model_repository", "tokenizer_path", "blend_model", "rollout_state",
                    "experiment_state", "impression_log", "tls_cert", "tls_key", "tls_client_ca"):
            if isinstance(values.get(key), str):
                values[key] = Path(values[key])
        return cls(**values)


def _parse(name: str, raw: str, kind: Any) -> Any:
    kind = str(kind)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"SHOPRANK_{name.upper()}={raw!r} is not a {kind}") from None
    if "Path" in kind:
        return Path(raw) if raw else None
    return raw
