"""The rollout state of each model, persisted as one JSON file so that it survives an orchestrator restart.

    {"models": {"reranker": {"stable": "1", "candidate": "2", "mode": "canary", "percent": 10,
                             "history": [{"time": ..., "action": "start", "version": "2", "detail": "..."}]}}}

The file is replaced atomically (written beside it, fsynced, renamed over it): a crash leaves the old state or
the new one, never half of either.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import ConfigError

MODES = ("canary", "shadow", "interleave")
MAX_HISTORY = 50


@dataclass
class ModelRollout:
    """One model's versions: the stable one serves every request not routed to the candidate."""

    stable: str
    candidate: str = ""
    mode: str = ""  # "canary": a sticky share of requests is served by the candidate; "shadow": none is;
    # "interleave": a share of requests is served the interleaving of both versions' rankings (a quality guard)
    percent: int = 0  # the canary's share of requests, 0..100
    experiment: str = ""  # "interleave": the experiment (orchestrator/experiments) that judges the candidate
    history: list[dict] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return bool(self.candidate)

    def versions(self) -> list[str]:
        """The versions that must be loaded."""
        return [self.stable] + ([self.candidate] if self.candidate else [])

    def record(self, action: str, version: str, detail: str = "") -> None:
        self.history.append({"time": time.time(), "action": action, "version": version, "detail": detail})
        del self.history[:-MAX_HISTORY]


class StateFile:
    """Reads and writes the rollout state at one path."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, ModelRollout]:
        """Model -> rollout; {} when the file does not exist yet. ConfigError when it cannot be read."""
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
            models = {name: ModelRollout(**entry) for name, entry in data["models"].items()}
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"rollout state {self.path} cannot be read ({error}); fix or remove it") from None
        for name, rollout in models.items():
            if rollout.candidate and rollout.mode not in MODES or not 0 <= rollout.percent <= 100:
                raise ConfigError(f"rollout state {self.path}: {name} has mode {rollout.mode!r} and share "
                                  f"{rollout.percent}; fix or remove it")
        return models

    def save(self, models: dict[str, ModelRollout]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_name(self.path.name + ".partial")
        with open(staging, "w", encoding="utf-8") as handle:
            json.dump({"models": {name: asdict(rollout) for name, rollout in models.items()}}, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, self.path)
