"""The rollout controller: which version serves each request, and the actions that change it.

    start     load and warm the candidate (it serves nothing before it is ready), then route a sticky share of
              requests to it (canary), score that share with it beside the stable version (shadow), or answer that
              share with the interleaving of both versions' rankings (interleave: an experiment judges the candidate
              by shoppers' clicks)
    shift     change the share
    promote   the candidate becomes the stable version for every request; the old one is unloaded once drained
    rollback  the candidate serves nothing any more; it is unloaded once drained

Routing is sticky: a request goes to the candidate when the hash of its key (the user id, or the query when there
is none) falls in the first `percent` of 100 buckets, so a user stays on one version and raising the share only
adds users. Guards roll the candidate back on their own, with the reason in the history, when it fails to load or
warm up, or when over the sliding window its error rate, its p99 or its shadow agreement passes the thresholds of
the settings (rollout_*), or when its interleaving experiment decides that shoppers prefer the stable version (the
quality guard: a sequential test, orchestrator/experiments/stats.py, so a loss within the noise rolls nothing back).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Awaitable, Callable

from core.errors import ConfigError, ExperimentError, InvalidRequest, RolloutError, ShoprankError
from core.settings import Settings
from core.specs import RERANKER
from core.weights import has_shop_weights, read_combination

from ..experiments.controller import ExperimentController
from ..experiments.stats import WORSE
from .guards import AgreementWindow, SlidingWindow, WindowStats
from .state import MODES, ModelRollout, StateFile
from .versions import VersionLoader, combination_file, manifest, repository_versions

log = logging.getLogger(__name__)

# Models whose versions roll out here. The encoders' versions are the served index's (see __init__.py).
ROLLABLE = (RERANKER.name,)
GUARD_POLL_S = 1.0
DRAIN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Route:
    """The versions of one model for one request: `version` serves it; `shadow`, when set, scores it beside."""

    version: str
    shadow: str = ""


def bucket(key: str) -> int:
    """0..99, the same for the same key in every process."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 100


class RolloutController:
    """Owns the rollout state of the rollable models and routes requests between their versions."""

    def __init__(self, loader: VersionLoader, settings: Settings, shop: str = "",
                 warm: Callable[[str, str], Awaitable[None]] | None = None,
                 experiments: ExperimentController | None = None) -> None:
        self.loader = loader
        self.experiments = experiments  # runs an interleaved canary's experiment
        self.settings = settings
        self.shop = shop  # the served shop's name: a shop with its own combination weights gets them
        self.warm = warm  # sends a few requests through a newly loaded version before it gets traffic
        self.state = StateFile(settings.rollout_state)
        self.models: dict[str, ModelRollout] = {}
        # Set by settings (evaluation of one version): that version serves, nothing rolls out, no state is written.
        self.pinned = bool(settings.reranker_version)
        self._windows: dict[tuple[str, str], SlidingWindow] = {}
        self._agreement: dict[tuple[str, str], AgreementWindow] = {}
        self._combinations: dict[str, dict[str, dict[str, float]]] = {}
        self._shop_weights: dict[str, bool] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._guard: asyncio.Task | None = None

    # ------------------------------------------------------------------------------------------- start and stop

    async def open(self, models: tuple[str, ...] = ROLLABLE) -> None:
        """Read the state, load the versions it names and start the guards. A model without state serves its
        newest version, recorded as stable, so that later exports change nothing until a rollout does."""
        saved = {} if self.pinned else self.state.load()
        for model in models:
            rollout = starting_rollout(self.settings, saved, model)
            self.loader.check_exists(model, rollout.stable)
            self.models[model] = rollout
            loaded = False
            if rollout.candidate:
                try:
                    await self._load_candidate(model, rollout.candidate)
                    loaded = True
                except ShoprankError as error:  # it loaded before the restart, but not now
                    self._end(model, "rollback", f"failed to load after a restart: {error}")
            if not loaded:
                await self.loader.serve(model, rollout.versions())
            self.combination(rollout.stable)
        self._save()
        self._guard = asyncio.create_task(self._watch())

    async def close(self) -> None:
        for task in [self._guard, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*[task for task in [self._guard, *self._tasks] if task is not None], return_exceptions=True)
        self._guard = None
        self._tasks.clear()

    # --------------------------------------------------------------------------------------------------- routing

    def route(self, model: str, key: str) -> Route:
        """The versions of `model` for a request with this key (user id, else the query)."""
        rollout = self.models.get(model)
        if rollout is None:
            return Route("")
        chosen = rollout.candidate and bucket(key) < rollout.percent
        if chosen and rollout.mode == "canary":
            return Route(rollout.candidate)
        if chosen and rollout.mode == "shadow":
            return Route(rollout.stable, shadow=rollout.candidate)
        return Route(rollout.stable)  # "interleave": the experiment names each arm's version

    def combination(self, version: str) -> dict[str, dict[str, float]]:
        """The combination weights (script -> weights) exported with that reranker version (read once)."""
        if version not in self._combinations:
            path = combination_file(self.loader.model_repository, RERANKER.name, version)
            self._combinations[version] = read_combination(path, shop=self.shop)
        return self._combinations[version]

    def shop_weights(self, version: str) -> bool:
        """Whether that reranker version's combination has weights of the served shop's own."""
        if version not in self._shop_weights:
            path = combination_file(self.loader.model_repository, RERANKER.name, version)
            self._shop_weights[version] = has_shop_weights(path, self.shop)
        return self._shop_weights[version]

    def track(self, model: str, version: str):
        """Context manager counting a request in flight on that version (an old version drains before unloading)."""
        return self.loader.track(model, version)

    def record(self, model: str, version: str, ok: bool, latency_ms: float) -> None:
        """One request's outcome on that version: failed or late (not refused for being busy), and its latency."""
        self._window(model, version).add(ok, latency_ms)

    def record_agreement(self, model: str, version: str, value: float | None) -> None:
        """One shadow comparison's RBO; None when the shadow scoring was skipped (reranker busy or failing)."""
        window = self._agreement.setdefault((model, version), AgreementWindow(self.settings.rollout_window_s))
        if value is None:
            window.skipped += 1
        else:
            window.add(value)

    def _window(self, model: str, version: str) -> SlidingWindow:
        key = (model, version)
        if key not in self._windows:
            self._windows[key] = SlidingWindow(self.settings.rollout_window_s)
        return self._windows[key]

    # --------------------------------------------------------------------------------------------------- actions

    def _rollable(self, model: str) -> ModelRollout:
        if model not in ROLLABLE:
            if model in ("bi_encoder", "multilingual_encoder"):
                raise RolloutError(
                    f"{model} does not roll out on its own: the product vectors of the served index come from one "
                    f"version of it, and queries must be encoded by the same one. Build an index with the new "
                    f"version (`shoprank index`) and serve that index; its manifest names the encoder versions.")
            raise RolloutError(f"unknown model {model!r}; models that roll out: {', '.join(ROLLABLE)}")
        if model not in self.models:
            raise RolloutError(f"{model} is not served here (reranking is off, or no version is exported)")
        if self.pinned:
            raise RolloutError(f"{model} is pinned to version {self.settings.reranker_version} by the settings "
                               "(reranker_version): rollouts are off")
        return self.models[model]

    async def start(self, model: str, version: str, percent: int, mode: str = "canary") -> ModelRollout:
        """Load and warm `version`, then give it `percent` of the requests as a canary or a shadow. The candidate
        is rolled back (and RolloutError raised with the reason) when it fails to load or warm up."""
        async with self._lock:
            rollout = self._rollable(model)
            _check_percent(percent)
            if mode not in MODES:
                raise RolloutError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
            if rollout.candidate:
                raise RolloutError(f"{model} is already rolling out version {rollout.candidate} ({rollout.mode} "
                                   f"{rollout.percent}%): promote it or roll it back first")
            if version == rollout.stable:
                raise RolloutError(f"{model} version {version} is already the stable version")
            if mode == "interleave":
                self._check_experiments()
                if percent < 1:
                    raise RolloutError("an interleaved canary needs a share of at least 1%")
            try:
                self.loader.check_exists(model, version)
            except ConfigError as error:
                raise RolloutError(str(error)) from None
            rollout.record("start", version, f"{mode} {percent}%; loading")
            self._save()
            try:
                await self._load_candidate(model, version)
            except ShoprankError as error:
                reason = f"failed to load or warm up: {error}"
                rollout.record("rollback", version, reason)
                self._save()
                self._unload_later(model, version, record=False)  # in case part of it loaded
                raise RolloutError(f"{model} version {version} was rolled back: {reason}") from None
            self._windows.pop((model, version), None)
            self._agreement.pop((model, version), None)
            if mode == "interleave":
                try:
                    rollout.experiment = self._start_experiment(model, rollout.stable, version, percent)
                except (ExperimentError, InvalidRequest) as error:  # one started meanwhile
                    rollout.record("rollback", version, f"its experiment did not start: {error}")
                    self._save()
                    self._unload_later(model, version, record=False)
                    raise RolloutError(f"{model} version {version} was rolled back: {error}") from None
            rollout.candidate, rollout.mode, rollout.percent = version, mode, percent
            rollout.record("live", version, f"{mode} {percent}%" + (f"; experiment {rollout.experiment}"
                                                                    if rollout.experiment else ""))
            self._save()
            log.warning("rollout: %s version %s is live as a %s at %d%%", model, version, mode, percent)
            return rollout

    async def _load_candidate(self, model: str, version: str) -> None:
        rollout = self.models[model]
        await self.loader.serve(model, [rollout.stable, version])
        self._combinations.pop(version, None)
        self.combination(version)
        if self.warm is not None:
            await self.warm(model, version)

    async def shift(self, model: str, percent: int) -> ModelRollout:
        async with self._lock:
            rollout = self._active(model)
            _check_percent(percent)
            if rollout.mode == "interleave" and percent < 1:
                raise RolloutError("an interleaved canary needs a share of at least 1%: roll it back to end it")
            rollout.percent = percent
            if rollout.experiment and self.experiments is not None:
                self.experiments.set_share(rollout.experiment, percent / 100)
            rollout.record("shift", rollout.candidate, f"{rollout.mode} {percent}%")
            self._save()
            return rollout

    async def promote(self, model: str) -> ModelRollout:
        async with self._lock:
            rollout = self._active(model)
            old, new = rollout.stable, rollout.candidate
            rollout.stable = new
            self._end(model, "promote", f"replaces version {old}; it is unloaded once drained")
            self._unload_later(model, old)
            return rollout

    async def rollback(self, model: str, reason: str = "") -> ModelRollout:
        async with self._lock:
            rollout = self._active(model)
            candidate = rollout.candidate
            self._end(model, "rollback", reason or "by request")
            self._unload_later(model, candidate)
            return rollout

    def _active(self, model: str) -> ModelRollout:
        rollout = self._rollable(model)
        if not rollout.candidate:
            raise RolloutError(f"{model} has no rollout in progress (stable version {rollout.stable})")
        return rollout

    def _end(self, model: str, action: str, detail: str) -> None:
        """Stop routing to the candidate at once, and record why."""
        rollout = self.models[model]
        version = rollout.candidate
        if rollout.experiment and self.experiments is not None:
            try:
                self.experiments.stop(rollout.experiment)
            except ExperimentError:
                pass  # stopped already (by hand, or it was lost with its state file)
        rollout.candidate, rollout.mode, rollout.percent, rollout.experiment = "", "", 0, ""
        rollout.record(action, version, detail)
        self._save()
        log.warning("rollout: %s version %s: %s (%s)", model, version, action, detail)

    def _unload_later(self, model: str, version: str, record: bool = True) -> None:
        """Unload `version` once its in-flight requests are done, keeping the versions the state still names."""

        async def unload() -> None:
            drained = await self.loader.drain(model, version, DRAIN_TIMEOUT_S)
            async with self._lock:
                wanted = self.models[model].versions()
                if version in wanted:  # started again meanwhile
                    return
                if not drained:
                    log.warning("%s version %s still had requests in flight after %.0fs; unloading it anyway",
                                model, version, DRAIN_TIMEOUT_S)
                try:
                    await self.loader.serve(model, wanted)
                except ShoprankError as error:
                    log.error("%s version %s could not be unloaded: %s", model, version, error)
                else:
                    if record:
                        self.models[model].record("unload", version, "drained" if drained else "drain timed out")
                        self._save()

        task = asyncio.create_task(unload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Wait for the pending unloads (tests, tools)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ---------------------------------------------------------------------------------------------------- guards

    def tripped(self, model: str) -> str:
        """Why the model's candidate must be rolled back now; "" when no guard trips (or too few requests)."""
        settings = self.settings
        rollout = self.models[model]
        if not rollout.candidate:
            return ""
        if rollout.mode == "interleave":
            quality = self._quality(rollout)
            if quality:
                return quality
        if rollout.mode in ("canary", "interleave"):
            stats = self._window(model, rollout.candidate).stats()
            if stats.requests >= settings.rollout_min_requests:
                if stats.error_rate > settings.rollout_max_error_rate:
                    return (f"error rate {stats.error_rate:.1%} over the last {settings.rollout_window_s:.0f}s "
                            f"({stats.errors} of {stats.requests}) > {settings.rollout_max_error_rate:.1%}")
                if stats.p99_ms > settings.rollout_max_p99_ms:
                    return (f"p99 {stats.p99_ms:.0f} ms over the last {settings.rollout_window_s:.0f}s "
                            f"({stats.requests} requests) > {settings.rollout_max_p99_ms:.0f} ms")
        else:
            agreement, compared = self._agreement_of(model, rollout.candidate)
            if compared >= settings.rollout_min_requests and agreement < settings.rollout_min_agreement:
                return (f"shadow agreement (RBO) {agreement:.3f} over {compared} rankings < "
                        f"{settings.rollout_min_agreement:.3f}")
        return ""

    def _check_experiments(self) -> None:
        if self.experiments is None:
            raise RolloutError("an interleaved rollout needs the experiment controller, which this service lacks")
        running = self.experiments.running
        if running is not None:
            raise RolloutError(f"experiment {running.name!r} is running: an interleaved rollout is an experiment, and "
                               "one runs at a time; stop it first")

    def _start_experiment(self, model: str, stable: str, candidate: str, percent: int) -> str:
        """Start the experiment that judges an interleaved candidate against the stable version; its name."""
        self._check_experiments()
        name = f"rollout-{model}-{candidate}-{int(self.experiments.clock())}"
        self.experiments.start(name, f"reranker={stable}", f"reranker={candidate}", "interleave", percent / 100,
                               guard=True)
        return name

    def _quality(self, rollout) -> str:
        """The quality guard's reason to roll an interleaved candidate back, or ""."""
        if self.experiments is None or rollout.experiment not in self.experiments.experiments:
            return ""
        experiment = self.experiments.get(rollout.experiment)
        decision = experiment.decision()
        if decision.outcome != WORSE:
            return ""
        tally = experiment.interleaving
        return (f"quality: shoppers preferred the stable version in interleaving: the candidate won {tally.wins} and "
                f"lost {tally.losses} of {tally.wins + tally.losses + tally.ties} clicked queries (log likelihood "
                f"ratio {decision.log_ratio:.2f} >= {decision.threshold:.2f}, experiment {experiment.name})")

    def _agreement_of(self, model: str, version: str) -> tuple[float, int]:
        window = self._agreement.get((model, version))
        return window.mean() if window is not None else (math.nan, 0)

    async def check_guards(self) -> None:
        """Roll back every candidate whose guard trips."""
        for model in list(self.models):
            reason = self.tripped(model)
            if reason:
                try:
                    await self.rollback(model, f"guard: {reason}")
                except RolloutError:
                    pass  # promoted or rolled back meanwhile

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(GUARD_POLL_S)
            try:
                await self.check_guards()
            except Exception:  # a guard must never stop guarding
                log.exception("rollout guard check failed")

    # ---------------------------------------------------------------------------------------------------- status

    def status(self, model: str = "") -> list[dict]:
        """Each model's rollout as plain data: versions, share, window figures, loaded versions, history."""
        if model and model not in self.models:
            self._rollable(model)  # raises the clear error
        result = []
        for name, rollout in list(self.models.items()):  # also read by the metrics server's thread
            if model and name != model:
                continue
            agreement, compared = (self._agreement_of(name, rollout.candidate) if rollout.candidate else (math.nan, 0))
            skipped = self._agreement.get((name, rollout.candidate))
            result.append({
                "model": name,
                "stable": rollout.stable,
                "candidate": rollout.candidate,
                "mode": rollout.mode,
                "percent": rollout.percent,
                "pinned": self.pinned,
                "loaded": list(self.loader.wanted.get(name, [])),
                "windows": {version: _stats(self._window(name, version).stats()) for version in rollout.versions()},
                "shadow_agreement": agreement,
                "shadow_compared": compared,
                "shadow_skipped": skipped.skipped if skipped is not None else 0,
                "candidate_manifest": _summary(manifest(self.loader.model_repository, name, rollout.candidate))
                if rollout.candidate else {},
                "history": list(rollout.history),
                "quality": (self.experiments.get(rollout.experiment).status()
                            if rollout.experiment and self.experiments is not None
                            and rollout.experiment in self.experiments.experiments else None),
            })
        return result

    def _save(self) -> None:
        if not self.pinned:
            self.state.save(self.models)


def starting_rollout(settings: Settings, saved: dict[str, ModelRollout], model: str) -> ModelRollout:
    """A model's rollout when a service starts: the version pinned by the settings, else the saved state, else
    the newest version in the repository (recorded as released, so that later exports change nothing until a
    rollout does). ConfigError when the repository holds no version of it."""
    if settings.reranker_version:
        return ModelRollout(stable=settings.reranker_version)
    if model in saved:
        return saved[model]
    available = repository_versions(settings.model_repository, model)
    if not available:
        raise ConfigError(f"no version of {model} in {settings.model_repository}: run `shoprank export`")
    rollout = ModelRollout(stable=available[-1])
    rollout.record("release", rollout.stable, "newest version in the repository at first start")
    return rollout


def _check_percent(percent: int) -> None:
    if not 0 <= percent <= 100:
        raise RolloutError(f"the share must lie in 0..100 percent, not {percent}")


def _stats(stats: WindowStats) -> dict:
    return {"requests": stats.requests, "errors": stats.errors, "p99_ms": stats.p99_ms}


def _summary(record: dict) -> dict:
    """What `rollout status` shows of a version's manifest."""
    gate = record.get("gate", {})
    return {
        "exported_at": record.get("exported_at", ""),
        "adapter_sha256": record.get("source", {}).get("adapter_sha256", "")[:12],
        "model_files_from": record.get("model_files_from", ""),
        "gate": "; ".join(f"{item['precision']} {item['ndcg']:.4f}" for item in gate.get("results", [])
                          if item.get("ndcg") is not None),
    }

