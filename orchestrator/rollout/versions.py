"""Model versions: what the repository holds, and which of them Triton has loaded.

Triton runs in explicit model-control mode. A model is loaded with its config.pbtxt and a version policy naming
exactly the versions wanted; Triton loads the new ones, keeps serving the loaded ones still named (they are not
reloaded), and unloads the others. Readiness is checked per model and version, never by the server-wide flag,
which says nothing about a version that is still loading.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from core.errors import ConfigError, TritonError
from core.model_repository import COMBINATION, version_manifest, versions

from ..triton import TritonClient

log = logging.getLogger(__name__)


def repository_versions(model_repository: Path, model: str) -> list[str]:
    """The versions of a model in the repository, ascending."""
    return [str(number) for number in versions(Path(model_repository) / model)]


def manifest(model_repository: Path, model: str, version: str) -> dict:
    """One version's manifest (what it was exported from, its parity and gate results); {} when it has none."""
    return version_manifest(Path(model_repository) / model, int(version)) or {}


def combination_file(model_repository: Path, model: str, version: str) -> Path:
    """The combination weights that go with a reranker version (the model folder's own for older exports)."""
    own = Path(model_repository) / model / version / COMBINATION
    return own if own.is_file() else Path(model_repository) / model / COMBINATION


def load_config(model_repository: Path, model: str, wanted: list[str]) -> str:
    """The model's config.pbtxt as Triton's JSON ModelConfig, with a version policy of exactly `wanted`."""
    path = Path(model_repository) / model / "config.pbtxt"
    if not path.is_file():
        raise ConfigError(f"no {model} in the model repository {model_repository}: run `shoprank export` first")
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    config.version_policy.specific.versions[:] = sorted(int(version) for version in wanted)
    return json_format.MessageToJson(config)


class VersionLoader:
    """Loads and unloads model versions in one Triton, and counts the requests each version has in flight."""

    def __init__(self, client: TritonClient, model_repository: Path, load_timeout_s: float) -> None:
        self.client = client
        self.model_repository = Path(model_repository)
        self.load_timeout_s = load_timeout_s
        self.in_flight: Counter[tuple[str, str]] = Counter()
        # The versions asked of Triton per model: what a restarted Triton must load again.
        self.wanted: dict[str, list[str]] = {}
        # One load of a model at a time, so a reload never undoes a rollout's load that overtook it.
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def check_exists(self, model: str, version: str) -> None:
        """ConfigError unless the repository holds that version of the model."""
        available = repository_versions(self.model_repository, model)
        if version not in available:
            raise ConfigError(f"{model} has no version {version!r} in {self.model_repository} "
                              f"(versions: {', '.join(available) or 'none'}; `shoprank export` writes new ones)")

    async def serve(self, model: str, wanted: list[str]) -> None:
        """Make exactly `wanted` versions of the model loaded, and wait until each is ready. TritonError when a
        version fails to load or is not ready in time; the versions loaded before stay as they were."""
        async with self._locks[model]:
            await self._load(model, wanted)

    async def _load(self, model: str, wanted: list[str]) -> None:
        for version in wanted:
            self.check_exists(model, version)
        wanted = sorted(set(wanted), key=int)
        await self.client.load_model(model, load_config(self.model_repository, model, wanted), self.load_timeout_s)
        deadline = asyncio.get_running_loop().time() + self.load_timeout_s
        for version in wanted:
            while not await self.client.is_model_ready(model, version):
                if asyncio.get_running_loop().time() > deadline:
                    raise TritonError(f"{model} version {version} was not ready within {self.load_timeout_s:.0f}s")
                await asyncio.sleep(0.1)
        self.wanted[model] = wanted
        log.info("%s: versions %s loaded and ready", model, ", ".join(wanted))

    async def reload(self) -> None:
        """Load again every version asked for so far (after Triton restarted, its models are gone), all models at
        once: Triton loads them in parallel."""
        await asyncio.gather(*(self._reload(model) for model in list(self.wanted)))

    async def _reload(self, model: str) -> None:
        async with self._locks[model]:
            await self._load(model, self.wanted[model])

    async def ready(self) -> bool:
        """True when every version asked for is ready."""
        for model, wanted in self.wanted.items():
            for version in wanted:
                if not await self.client.is_model_ready(model, version):
                    return False
        return True

    @contextmanager
    def track(self, model: str, version: str) -> Iterator[None]:
        """Count one request in flight on that version for the block."""
        self.in_flight[model, version] += 1
        try:
            yield
        finally:
            self.in_flight[model, version] -= 1

    async def drain(self, model: str, version: str, timeout_s: float) -> bool:
        """Wait until no request is in flight on that version; False when some still are after `timeout_s`."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.in_flight[model, version] > 0:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True
