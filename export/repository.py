"""Writing Triton model repositories: model_repository/<target>/<model>/{config.pbtxt, <version>/...}.

Every export writes a new integer version folder beside the existing ones, never over them; each version folder
holds its `manifest.json` (sources, precision, parity and gate results). Which version serves is the rollout's
decision (orchestrator/rollout), not the export's. Exports are idempotent: when the newest version's manifest
records the same sources (stamps.py), nothing is exported again. `write_model_version` is the one writer of a
version, for the sentence encoders (encoders.py) and the reranker (reranker/repository.py) alike.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from core.model_repository import MANIFEST, version_manifest, versions
from core.specs import ModelSpec

from .targets import ONNX_TARGETS


def next_version(root: Path, spec: ModelSpec, targets: tuple[str, ...]) -> int:
    """The version number a new export of the model takes: one past the newest in any target."""
    return max([0] + [number for target in targets for number in versions(root / target / spec.name)]) + 1


def newest_version(root: Path, spec: ModelSpec, targets: tuple[str, ...]) -> int | None:
    """The newest version present in every target; None when the targets hold none in common."""
    common = set.intersection(*(set(versions(root / target / spec.name)) for target in targets))
    return max(common) if common else None


def is_current(root: Path, spec: ModelSpec, stamp: dict[str, str], weights: dict[str, str] | None = None) -> bool:
    """True when the newest version of every target is an export made from the same sources.

    `weights` maps each target to the file its version folder must hold (default: model.onnx in ONNX_TARGETS).
    """
    weights = weights or {target: "model.onnx" for target in ONNX_TARGETS}
    version = newest_version(root, spec, tuple(weights))
    if version is None:
        return False
    for target, weights_file in weights.items():
        folder = root / target / spec.name
        manifest = version_manifest(folder, version)
        if manifest is None or not (folder / str(version) / weights_file).is_file():
            return False
        if manifest.get("source") != stamp:
            return False
    return True


def refresh_configs(root: Path, spec: ModelSpec, configs: dict[str, str], log: Callable[[str], None]) -> None:
    """Rewrite each target's config.pbtxt (`configs`: target -> text) where it says something else."""
    for target, text in configs.items():
        path = root / target / spec.name / "config.pbtxt"
        if path.is_file() and path.read_text() != text:
            path.write_text(text)
            log(f"{spec.name}: rewrote {path} from core/specs.py (the export itself is current)")


def export_record(spec: ModelSpec, stamp: dict[str, str], parity: list, **details) -> dict:
    """The manifest of one exported version: model, sources, parity with PyTorch, then `details` (the version
    number is added when it is written)."""
    return {
        "model": spec.name,
        "source": stamp,
        "parity": [asdict(item) for item in parity],
        **details,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_version(folder: Path, version: int, files: Mapping[str, Path], record: dict) -> Path:
    """Write one new version folder: `files` (name -> source) and its manifest, into a staging folder renamed
    into place at the end, so Triton never sees half a version. Refuses to write over an existing version."""
    version_dir = Path(folder) / str(version)
    if version_dir.exists():
        raise FileExistsError(f"{version_dir} exists: a version is never written over")
    staging = Path(folder) / f".{version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, source in files.items():
        shutil.copyfile(source, staging / name)
    (staging / MANIFEST).write_text(json.dumps({**record, "version": str(version)}, indent=2) + "\n")
    staging.rename(version_dir)
    return version_dir


def write_model_version(root: Path, target: str, spec: ModelSpec, version: int, files: Mapping[str, Path],
                        record: dict, config: str, tokenizer: Path, tokenizer_name: str = "tokenizer.json") -> Path:
    """Write version `version` of one model into one target: its files (name -> source) and manifest `record`,
    the model's config.pbtxt, and its tokenizer copied in as `tokenizer_name`; returns the model folder.
    Without files, no version is written: the target gets its config and tokenizer only."""
    folder = root / target / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    if files:
        write_version(folder, version, files, record)
    (folder / "config.pbtxt").write_text(config)
    if Path(tokenizer).resolve() != (folder / tokenizer_name).resolve():
        shutil.copyfile(tokenizer, folder / tokenizer_name)
    return folder
