"""core.specs: the model specs every other part reads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core.specs import (
    BI_ENCODER,
    EMBEDDING_DIM,
    MODELS,
    MULTILINGUAL_DIM,
    MULTILINGUAL_ENCODER,
    RERANKER,
    TRITON_DTYPES,
    ModelSpec,
    TensorSpec,
)


def test_tensor_triton_dims_drop_batch_and_mark_dynamic():
    assert TensorSpec("x", "int64", ("batch", "sequence")).triton_dims == [-1]
    assert TensorSpec("y", "float32", ("batch", 384)).triton_dims == [384]
    assert TensorSpec("z", "float32", ("batch", "sequence", 8)).triton_dims == [-1, 8]
    assert TensorSpec("w", "float32", ("batch",)).triton_dims == []


@pytest.mark.parametrize(
    "dtype, triton, numpy_dtype",
    [
        ("int64", "TYPE_INT64", np.int64),
        ("int32", "TYPE_INT32", np.int32),
        ("float32", "TYPE_FP32", np.float32),
        ("float16", "TYPE_FP16", np.float16),
    ],
)
def test_dtypes(dtype, triton, numpy_dtype):
    tensor = TensorSpec("t", dtype, ("batch",))
    assert tensor.triton_dtype == triton
    assert tensor.numpy_dtype == np.dtype(numpy_dtype)


def test_unknown_dtype_has_no_triton_type():
    with pytest.raises(KeyError):
        TensorSpec("t", "bool", ("batch",)).triton_dtype


def test_bi_encoder_tensors():
    assert BI_ENCODER.name == "bi_encoder"
    assert BI_ENCODER.input_names == ["input_ids", "attention_mask"]
    assert BI_ENCODER.output_names == ["embedding"]
    assert [t.dtype for t in BI_ENCODER.inputs] == ["int64", "int64"]
    assert BI_ENCODER.outputs[0].dtype == "float32"
    assert BI_ENCODER.outputs[0].axes == ("batch", EMBEDDING_DIM)
    assert EMBEDDING_DIM == 384


def test_bi_encoder_batching_is_consistent():
    assert BI_ENCODER.max_batch_size >= 1
    assert list(BI_ENCODER.preferred_batch_sizes) == sorted(BI_ENCODER.preferred_batch_sizes)
    assert all(1 <= size <= BI_ENCODER.max_batch_size for size in BI_ENCODER.preferred_batch_sizes)
    assert BI_ENCODER.max_queue_delay_us > 0
    assert BI_ENCODER.cpu_max_queue_delay_us >= 0
    low, opt, high = BI_ENCODER.sequence_lengths
    assert 1 <= low <= opt <= high


def test_bi_encoder_tolerances():
    assert set(BI_ENCODER.atol) == {"fp32", "fp16"}
    assert 0 < BI_ENCODER.atol["fp32"] < BI_ENCODER.atol["fp16"]


def test_dynamic_axes_only_named_axes():
    assert BI_ENCODER.dynamic_axes() == {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        "embedding": {0: "batch"},
    }


def test_multilingual_encoder_tensors_and_batching():
    assert MULTILINGUAL_ENCODER.name == "multilingual_encoder"
    assert MULTILINGUAL_ENCODER.input_names == BI_ENCODER.input_names
    assert MULTILINGUAL_ENCODER.output_names == ["embedding"]
    assert MULTILINGUAL_ENCODER.outputs[0].axes == ("batch", MULTILINGUAL_DIM)
    assert MULTILINGUAL_DIM == 512
    assert MULTILINGUAL_ENCODER.merge_requests  # every row computed alone, in fp32
    assert set(MULTILINGUAL_ENCODER.atol) == {"fp32"}
    assert all(1 <= size <= MULTILINGUAL_ENCODER.max_batch_size for size in MULTILINGUAL_ENCODER.preferred_batch_sizes)


def test_models_registry():
    assert MODELS == {"bi_encoder": BI_ENCODER, "reranker": RERANKER, "multilingual_encoder": MULTILINGUAL_ENCODER}
    assert all(name == spec.name for name, spec in MODELS.items())


def test_every_spec_dtype_is_mapped():
    for spec in MODELS.values():
        for tensor in (*spec.inputs, *spec.outputs):
            assert tensor.dtype in TRITON_DTYPES


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        BI_ENCODER.max_batch_size = 1  # type: ignore[misc]
    assert ModelSpec.__dataclass_params__.frozen
