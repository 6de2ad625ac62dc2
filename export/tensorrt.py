"""Building a TensorRT engine (Triton's `tensorrt_plan`) from an exported ONNX file, on the GPU host that serves it.

An engine is tied to the GPU model and the TensorRT version that built it, so it is built where it is served
and never committed. Where the `tensorrt` package or a GPU is missing, build_engine raises
ExportError("TensorRT build skipped: <reason>"), which callers print and go on.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from core.specs import ModelSpec

from .errors import ExportError
from .targets import PRECISIONS

WORKSPACE_BYTES = 1 << 30

Shape = tuple[int, ...]


def optimization_profile(spec: ModelSpec) -> dict[str, tuple[Shape, Shape, Shape]]:
    """(min, opt, max) shape of every input: batch 1 / the first preferred batch / max_batch_size, and the
    spec's (min, opt, max) sequence lengths."""
    ranges = {
        "batch": (1, (spec.preferred_batch_sizes or (spec.max_batch_size,))[0], spec.max_batch_size),
        "sequence": spec.sequence_lengths,
    }
    profile = {}
    for tensor in spec.inputs:
        axes = [ranges[axis] if isinstance(axis, str) else (axis, axis, axis) for axis in tensor.axes]
        profile[tensor.name] = tuple(tuple(axis[i] for axis in axes) for i in range(3))
    return profile


def _missing_gpu() -> str | None:
    """Why no GPU can be used, or None."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver (libcuda.so.1 not found)"
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return "no GPU visible to the CUDA driver"
    return None


def build_engine(onnx_file: Path, spec: ModelSpec, precision: str, out_file: Path) -> Path:
    """Build and serialize an engine for the spec's tensors; returns `out_file`.

    fp16 lets TensorRT pick float16 kernels for an fp32 ONNX file; int8 needs an explicitly quantized (QDQ)
    ONNX file, as `export.reranker.int8.to_int8(method="static")` writes. TensorRT 10 or later is required for the
    spec's int64 inputs.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    try:
        import tensorrt as trt  # noqa: PLC0415
    except ImportError as error:
        raise ExportError(f"TensorRT build skipped: the tensorrt package is not installed ({error})") from None
    missing = _missing_gpu()
    if missing:
        raise ExportError(f"TensorRT build skipped: {missing}")
    if int(trt.__version__.split(".")[0]) < 10:
        raise ExportError(f"TensorRT build skipped: TensorRT {trt.__version__} cannot take int64 inputs; 10 or later can")

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch, the only mode of TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_file}: {errors}")
    names = ([network.get_input(i).name for i in range(network.num_inputs)],
             [network.get_output(i).name for i in range(network.num_outputs)])
    if names != (spec.input_names, spec.output_names):
        raise ExportError(f"{onnx_file}: tensors {names} differ from the spec's {spec.input_names, spec.output_names}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    for name, (smallest, optimal, largest) in optimization_profile(spec).items():
        profile.set_shape(name, smallest, optimal, largest)
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_file} (its log above says why)")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with open(out_file, "wb") as handle:
        handle.write(engine)
    return out_file
