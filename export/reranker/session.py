"""An ONNX Runtime session of an exported reranker file, as the cpu target runs it."""

from __future__ import annotations

from pathlib import Path

from core.specs import RERANKER, ModelSpec


def ort_session(onnx_file: Path, threads: int = 0, spec: ModelSpec = RERANKER):
    """An ONNX Runtime CPU session as the cpu target runs it (all graph optimizations but the spec's
    `cpu_disabled_optimizers`; 0 threads: one per core; idle threads sleep)."""
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(spec.cpu_disabled_optimizers))
