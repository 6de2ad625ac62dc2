"""Where and in what precision shoprank's models are served: the model repository's targets (cpu, gpu, tensorrt;
triton_config.py says how Triton serves each) and the ONNX precisions, named here once for export/, its tests
and the benchmarks."""

from __future__ import annotations

from pathlib import Path

TARGETS = ("cpu", "gpu", "tensorrt")
# The targets the sentence encoders are exported into: both serve an ONNX file (`tensorrt` is for the reranker's plan).
ONNX_TARGETS = ("cpu", "gpu")
PRECISIONS = ("fp32", "fp16", "int8")
# What the cpu target's Python backend runs, copied into each of its versions as model.py.
PYTHON_BACKEND_MODEL = Path(__file__).parent / "python_backend" / "ort_model.py"
