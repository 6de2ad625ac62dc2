"""The fp32 graph in float16 inside: the gpu target's file."""

from __future__ import annotations

import warnings
from pathlib import Path

from core.specs import RERANKER, ModelSpec

from ..onnx import check_io


def to_fp16(fp32_file: Path, out_file: Path, spec: ModelSpec = RERANKER) -> None:
    """Convert to float16 inside; the int64 inputs and the float32 output stay as the spec names them."""
    import onnx  # noqa: PLC0415
    from onnxruntime.transformers.float16 import convert_float_to_float16  # noqa: PLC0415

    with warnings.catch_warnings():
        # It warns for every weight below float16's smallest normal number; those become 0 or subnormal.
        warnings.simplefilter("ignore", UserWarning)
        model = convert_float_to_float16(onnx.load(str(fp32_file)), keep_io_types=True)
    onnx.save(model, str(out_file))
    onnx.checker.check_model(str(out_file))
    check_io(out_file, spec)
