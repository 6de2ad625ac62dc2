"""The layout of a Triton model repository as shoprank writes it: <model>/config.pbtxt and one folder per integer
version, each with its manifest.json (written by export/, read by the orchestrator's rollout bookkeeping)."""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "manifest.json"
# The reranker's combination weights beside its files (core/weights.py reads them).
COMBINATION = "combination.json"
# Written by exports before versions had their own manifests: read as version 1's.
LEGACY_STAMP = "export.json"


def versions(folder: Path) -> list[int]:
    """The version numbers of one model folder (its numeric subfolders), ascending."""
    if not Path(folder).is_dir():
        return []
    return sorted(int(item.name) for item in Path(folder).iterdir() if item.is_dir() and item.name.isdigit())


def version_manifest(folder: Path, version: int) -> dict | None:
    """The manifest of one version of a model folder; None when it has none."""
    path = Path(folder) / str(version) / MANIFEST
    if not path.is_file() and version == 1 and (Path(folder) / LEGACY_STAMP).is_file():
        path = Path(folder) / LEGACY_STAMP
    return json.loads(path.read_text()) if path.is_file() else None
