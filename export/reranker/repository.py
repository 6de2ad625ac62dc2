"""The reranker in the model repository: its export's steps in order, and what each target serves.

    cpu       the int8 file in the Python backend (and the fused fp32 file beside it, unused)
    gpu       the fp16 file, onnxruntime_onnx with TensorRT
    tensorrt  an engine built from the fp32 file, where TensorRT and a GPU exist (else its config only)

Each version also carries its combination weights (combination.json), which the orchestrator reads for the
requests that version serves; new weights alone make a new version with the newest version's model files.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Collection
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from core.model_repository import COMBINATION, MANIFEST, version_manifest, versions
from core.specs import RERANKER, ModelSpec

from ..errors import ExportError
from ..repository import export_record, is_current, newest_version, next_version, refresh_configs, write_model_version
from ..stamps import reranker_source_stamp
from ..targets import PRECISIONS, PYTHON_BACKEND_MODEL, TARGETS
from ..triton_config import render
from ..validate import log_parity
from .fp16 import to_fp16
from .fp32 import export_reranker_fp32
from .fusion import fuse_for_cpu
from .gate import GATE_TOLERANCE, GateData, accuracy_gate, default_gate_data, gate_lists
from .int8 import DEFAULT_INT8_METHOD, calibration_lists, to_int8

INT8_FILE = "model.int8.onnx"
# The file each target's version must hold for the export to be current (the tensorrt target gets a version only
# where TensorRT built a plan).
WEIGHTS = {"cpu": INT8_FILE, "gpu": "model.onnx"}


def combination_weights(adapter_dir: Path) -> dict:
    """The weights per query script fit by `shoprank train combination` (manifest.json), with the shops' own
    (core/weights.py), or the reranker alone."""
    from core.weights import DEFAULT_WEIGHTS, SHOPS, per_script  # noqa: PLC0415

    manifest = Path(adapter_dir) / "manifest.json"
    if manifest.is_file():
        fitted = json.loads(manifest.read_text()).get("combination", {})
        if fitted.get("weights"):
            result: dict = per_script(fitted["weights"])
            shops = {shop: {"weights": per_script(entry["weights"])} for shop, entry in fitted.get(SHOPS, {}).items()}
            if shops:
                result[SHOPS] = shops
            return result
    return per_script(dict(DEFAULT_WEIGHTS))


def _configs(spec: ModelSpec) -> dict[str, str]:
    """Each target's config.pbtxt text (the cpu target serves the int8 file)."""
    return {"cpu": render(spec, "cpu", onnx_file=INT8_FILE), "gpu": render(spec, "gpu"),
            "tensorrt": render(spec, "tensorrt")}


def _write_target(root: Path, target: str, spec: ModelSpec, version: int, config: str, files: dict[str, Path],
                  tokenizer: Path, record: dict) -> Path:
    """Write version `version` of the reranker into one target: its files with the record's combination weights
    beside them. A target without files gets its config only."""
    with tempfile.TemporaryDirectory() as scratch:
        if files:
            weights = Path(scratch) / COMBINATION
            weights.write_text(json.dumps(record["combination"], indent=2) + "\n")
            files = {**files, COMBINATION: weights}
        return write_model_version(root, target, spec, version, files, record, config, tokenizer)


def _reweight(root: Path, spec: ModelSpec, combination: dict, log: Callable[[str], None]) -> bool:
    """When only the combination weights changed since the newest version, write them as a new version whose
    model files are the newest version's; returns False when nothing changed."""
    current = newest_version(root, spec, tuple(WEIGHTS))
    if version_manifest(root / "cpu" / spec.name, current).get("combination") == combination:
        return False
    version = next_version(root, spec, TARGETS)
    for target in TARGETS:
        folder = root / target / spec.name
        if current not in versions(folder):
            continue
        source = folder / str(current)
        record = {**(version_manifest(folder, current) or {}), "combination": combination, "model_files_from": str(current),
                  "exported_at": export_record(spec, {}, [])["exported_at"]}
        files = {item.name: item for item in source.iterdir()
                 if item.is_file() and item.name not in (MANIFEST, COMBINATION)}
        _write_target(root, target, spec, version, (folder / "config.pbtxt").read_text(), files,
                      folder / "tokenizer.json", record)
    log(f"{spec.name}: new combination weights: wrote version {version} with the model files of version {current}")
    return True


def export_reranker_repository(root: Path, adapter_dir: Path, force: bool = False, log: Callable[[str], None] = print,
                               skip_precisions: Collection[str] = (), int8_method: str = DEFAULT_INT8_METHOD,
                               gate_data: GateData | None = None, tolerance: float = GATE_TOLERANCE) -> None:
    """Export the reranker into cpu/ (int8, Python backend), gpu/ (fp16, onnxruntime_onnx + TensorRT) and
    tensorrt/ (an engine, where TensorRT and a GPU exist), unless current. Nothing is written if a gate fails."""
    from core.base_model import base_model_dir  # noqa: PLC0415

    from ..tensorrt import build_engine  # noqa: PLC0415

    spec = RERANKER
    unknown = set(skip_precisions) - set(PRECISIONS)
    if unknown:
        raise ExportError(f"unknown precision(s) to skip: {', '.join(sorted(unknown))}; known: {', '.join(PRECISIONS)}")
    gate = gate_data or default_gate_data()
    stamp = reranker_source_stamp(adapter_dir, spec, int8_method, gate, skip_precisions, tolerance)
    if not force and is_current(root, spec, stamp, WEIGHTS):
        refresh_configs(root, spec, _configs(spec), log)
        # The combination weights can change without the model (`shoprank train combination`).
        if not _reweight(root, spec, combination_weights(adapter_dir), log):
            log(f"{spec.name}: up to date in {root}")
        return
    with tempfile.TemporaryDirectory() as scratch:
        files = {precision: Path(scratch) / f"model.{precision}.onnx" for precision in PRECISIONS}
        log(f"{spec.name}: exporting {adapter_dir} to ONNX (opset {spec.onnx_opset})")
        parity = export_reranker_fp32(Path(adapter_dir), files["fp32"], spec)
        log_parity(spec, parity, log)
        to_fp16(files["fp32"], files["fp16"], spec)
        fused_file = Path(scratch) / "model.fp32.fused.onnx"
        fused = fuse_for_cpu(files["fp32"], fused_file, spec)
        log(f"{spec.name}: fused for the cpu target: " + ", ".join(f"{count} {name}" for name, count in fused.items()))
        log(f"{spec.name}: int8 by {int8_method} quantization; gate data: {gate.describe()}")
        calibration = calibration_lists(gate) if int8_method == "static" else None
        # Static QDQ quantizes the plain graph: its calibrator does not know the fused (com.microsoft) nodes.
        to_int8(fused_file if int8_method == "dynamic" else files["fp32"], files["int8"], int8_method, calibration, spec)
        lists = gate_lists(gate.judgments, gate.catalog, gate.split)
        results = accuracy_gate(files, lists, tolerance, skip_precisions, spec, log=log, binding=gate.binding)
        plan = Path(scratch) / "model.plan"
        try:
            build_engine(files["fp32"], spec, "fp16", plan)
            tensorrt_note = "fp16 engine built from the fp32 file"
        except ExportError as error:
            plan, tensorrt_note = None, str(error)
            log(f"{spec.name}: {error}")
        record = export_record(
            spec, stamp, parity,
            gate={"queries": len(lists), "binding": gate.binding,
                  "results": [asdict(result) for result in results.values()]},
            tensorrt=tensorrt_note,
            combination=combination_weights(adapter_dir),
        )
        tokenizer = base_model_dir() / "tokenizer.json"
        configs = _configs(spec)
        served = {
            # FP32 rides along unused, so benchmarks/reranker_triton.py can serve it for comparison.
            "cpu": (configs["cpu"],
                    {INT8_FILE: files["int8"], "model.fp32.onnx": fused_file, "model.py": PYTHON_BACKEND_MODEL}),
            "gpu": (configs["gpu"], {"model.onnx": files["fp16"]}),
            "tensorrt": (configs["tensorrt"], {"model.plan": plan} if plan else {}),
        }
        version = next_version(root, spec, TARGETS)
        for target, (config, target_files) in served.items():
            folder = _write_target(root, target, spec, version, config, target_files, tokenizer,
                                   {**record, "target": target})
            log(f"{spec.name}: wrote version {version} in {folder} ({target}: {', '.join(target_files) or 'config only'})")
