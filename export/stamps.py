"""Source stamps: what an export depends on, recorded in each version's manifest as `source`.

An export is current when the newest version's stamp equals the one computed now (`repository.is_current`), so
every key here names something whose change must produce a new version: weights, the spec (less Triton's
scheduling), the exporter's code and the served model code; for the reranker also its adapter and how it was gated.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from core.digest import files_digest
from core.specs import ModelSpec

from .errors import ExportError
from .targets import PYTHON_BACKEND_MODEL

if TYPE_CHECKING:
    from .reranker.gate import GateData

HERE = Path(__file__).parent
# The reranker's exporter: every module of the package, in name order.
RERANKER_EXPORTER = HERE / "reranker"
CROSS_ENCODER_SOURCE = HERE.parent / "core" / "cross_encoder.py"
# Triton's scheduling settings reach config.pbtxt only, never the exported files: a change to them rewrites the
# configs of an export that is otherwise current (`repository.refresh_configs`) instead of exporting every model again.
SCHEDULING_FIELDS = frozenset({"preferred_batch_sizes", "max_queue_delay_us", "cpu_max_queue_delay_us"})


def spec_stamp(spec: ModelSpec) -> str:
    """The spec as the exported files depend on it: every field but Triton's scheduling settings."""
    kept = ", ".join(f"{field.name}={getattr(spec, field.name)!r}" for field in fields(spec)
                     if field.name not in SCHEDULING_FIELDS)
    return f"{type(spec).__name__}({kept})"


def source_stamp(model_dir: Path, spec: ModelSpec) -> dict[str, str]:
    """What an export depends on: the base weights, the spec, the exporter and the served model code."""
    return {
        "base_model_sha256": files_digest(model_dir / "model.safetensors"),
        "spec": spec_stamp(spec),
        "exporter_sha256": files_digest(HERE / "onnx.py"),
        "python_backend_sha256": files_digest(PYTHON_BACKEND_MODEL),
    }


def multilingual_source_stamp(resources: Path, spec: ModelSpec) -> dict[str, str]:
    """What the multilingual export depends on: the package's weights and tokenizer, the spec, the exporter
    and the served model code."""
    return {
        "weights_sha256": files_digest(resources / "weights.npz"),
        "sentencepiece_sha256": files_digest(resources / "sp.model"),
        "spec": spec_stamp(spec),
        "exporter_sha256": files_digest(HERE / "multilingual.py"),
        "python_backend_sha256": files_digest(PYTHON_BACKEND_MODEL),
    }


def adapter_digest(adapter_dir: Path) -> str:
    """One SHA-256 over the release's files (LoRA config and weights, or the fully fine-tuned transformer; the
    head); ExportError if one is missing."""
    from core.cross_encoder import release_digest  # noqa: PLC0415

    try:
        return release_digest(adapter_dir)
    except FileNotFoundError as error:
        raise ExportError(str(error)) from None


def reranker_source_stamp(adapter_dir: Path, spec: ModelSpec, int8_method: str, gate: GateData,
                          skip: Collection[str], tolerance: float) -> dict[str, str]:
    """What a reranker export depends on: the bi-encoder's stamp fields, the adapter, and how it was gated."""
    from core.base_model import base_model_dir  # noqa: PLC0415

    stamp = source_stamp(base_model_dir(), spec)
    stamp.update({
        "exporter_sha256": files_digest(*sorted(RERANKER_EXPORTER.glob("*.py"))) + files_digest(HERE / "onnx.py")[:16],
        "cross_encoder_sha256": files_digest(CROSS_ENCODER_SOURCE),
        "tensorrt_sha256": files_digest(HERE / "tensorrt.py"),
        "adapter_sha256": adapter_digest(adapter_dir),
        "int8_method": int8_method,
        "gate_data": f"{gate.describe()} sha256 {files_digest(gate.judgments)[:16]}/{files_digest(gate.catalog)[:16]}",
        "gate_tolerance": repr(tolerance),
        "skipped_precisions": ",".join(sorted(skip)),
    })
    return stamp
