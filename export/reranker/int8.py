"""The cpu target's int8 file: ONNX Runtime's quantization, dynamic or static (calibrated on train-split pairs)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from core.specs import RERANKER, ModelSpec

from ..onnx import check_io
from .gate import GateData, gate_lists
from .pairs import encode_pairs, pair_encoder

INT8_METHODS = ("dynamic", "static")
# Chosen by measurement with the released adapter on Home Depot's dev split (996 queries; FP32 0.9321 nDCG@10):
# dynamic 0.9297 (-0.0024, passes the 0.003 gate), static QDQ MinMax 0.9281 (-0.0040), static Percentile
# 0.9247 (-0.0074); both static variants fail the gate. With the smoke adapter every variant was within 0.0015
# and static ran ~11% slower than dynamic. Dynamic takes activation ranges from each batch, so a pair's score
# depends on its batch-mates: the cpu config therefore runs each request (one query's pairs) on its own
# (ModelSpec.merge_requests=False).
DEFAULT_INT8_METHOD = "dynamic"
PER_CHANNEL = {"dynamic": False, "static": True}


def to_int8(fp32_file: Path, out_file: Path, method: str = DEFAULT_INT8_METHOD, calibration: list | None = None,
            spec: ModelSpec = RERANKER, *, per_channel: bool | None = None, calibrate_method: str = "percentile") -> None:
    """Quantize to int8 with ONNX Runtime.

    dynamic: int8 weights, activations quantized with ranges taken from each batch; needs no data, but a
        pair's score then depends on the other pairs (and the padding) of its batch.
    static: QDQ, int8 weights and uint8 activations of every MatMul (and int8 embedding tables), with
        activation ranges calibrated (`calibrate_method` minmax or percentile) on `calibration`, QueryLists
        kept apart from the gate's. Scores do not depend on what else is in the batch.
    `per_channel` (weights' scales per output channel) defaults to PER_CHANNEL[method].
    """
    import onnx  # noqa: PLC0415
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static  # noqa: PLC0415

    if method not in INT8_METHODS:
        raise ValueError(f"int8 method must be one of {', '.join(INT8_METHODS)}, not {method!r}")
    per_channel = PER_CHANNEL[method] if per_channel is None else per_channel
    if method == "dynamic":
        # DefaultTensorType: shape inference cannot type the outputs of fused (com.microsoft) nodes.
        # Only the matrix products (and fused attention) are quantized: the embedding tables stay float32.
        quantize_dynamic(str(fp32_file), str(out_file), weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=["MatMul", "Attention"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    else:
        if not calibration:
            raise ValueError("static int8 quantization needs calibration QueryLists")
        methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
        if calibrate_method not in methods:
            raise ValueError(f"calibrate_method must be one of {', '.join(methods)}")
        feeds = _calibration_feeds(calibration, spec)
        quantize_static(
            str(fp32_file),
            str(out_file),
            _calibration_reader(feeds),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul", "Gather"],  # Gather: the embedding tables, 47 of the 90 MB
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,  # U8S8: S8S8 QDQ ran twice as slow on this CPU
            weight_type=QuantType.QInt8,
            calibrate_method=methods[calibrate_method],
            extra_options={"CalibPercentile": 99.99} if calibrate_method == "percentile" else None,
        )
    check_io(out_file, spec)



def calibration_lists(data: GateData, max_queries: int = 64, seed: int = 0) -> list:
    """A seeded sample of train-split QueryLists for static quantization, never the gate's queries.

    Without splits (the demo data) the sample comes from all queries, so it overlaps the gate's.
    """
    lists = gate_lists(data.judgments, data.catalog, "train" if data.split else None, seed)
    return random.Random(seed).sample(lists, min(max_queries, len(lists)))



def _calibration_reader(feeds: list[dict[str, np.ndarray]]):
    from onnxruntime.quantization import CalibrationDataReader  # noqa: PLC0415

    class PairCalibrationReader(CalibrationDataReader):
        """Batches of real (query, product text) pairs, as _calibration_feeds made them."""

        def __init__(self) -> None:
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

        def rewind(self) -> None:
            self._batches = iter(feeds)

    return PairCalibrationReader()


def _calibration_feeds(calibration: list, spec: ModelSpec, batch: int = 32) -> list[dict[str, np.ndarray]]:
    """Equal-shaped batches of the calibration pairs, padded to the longest sequence: the Percentile
    calibrator stacks every batch's activations, so their shapes must agree."""
    pairs = [(item.query, text) for item in calibration for text in item.texts]
    encoder, longest, batch = pair_encoder(spec), spec.sequence_lengths[2], min(batch, len(pairs))
    feeds = []
    for start in range(0, len(pairs) - batch + 1, batch):
        encoded = encode_pairs(encoder, pairs[start : start + batch])
        feeds.append({name: np.pad(array, ((0, 0), (0, longest - array.shape[1]))) for name, array in encoded.items()})
    return feeds

