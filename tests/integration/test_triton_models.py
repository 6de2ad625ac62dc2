"""The bi-encoder as served by a real tritonserver matches PyTorch, alone and under dynamic batching."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from core.base_model import base_model_dir
from core.specs import BI_ENCODER
from export.onnx import PARITY_TEXTS, tokenize, torch_reference

pytestmark = pytest.mark.integration


def _infer(url: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    client = triton_grpc.InferenceServerClient(url)
    inputs = []
    for tensor in BI_ENCODER.inputs:
        item = triton_grpc.InferInput(tensor.name, list(feeds[tensor.name].shape), "INT64")
        item.set_data_from_numpy(feeds[tensor.name])
        inputs.append(item)
    result = client.infer(BI_ENCODER.name, inputs, outputs=[triton_grpc.InferRequestedOutput("embedding")])
    return result.as_numpy("embedding")


def test_served_config_names_the_spec_tensors(triton):
    config = triton_grpc.InferenceServerClient(triton.url).get_model_config(BI_ENCODER.name).config
    assert [t.name for t in config.input] == BI_ENCODER.input_names
    assert [t.name for t in config.output] == BI_ENCODER.output_names
    assert config.dynamic_batching.max_queue_delay_microseconds == BI_ENCODER.cpu_max_queue_delay_us


def test_triton_embeddings_match_pytorch(triton):
    model_dir = base_model_dir()
    feeds = tokenize(model_dir, PARITY_TEXTS, BI_ENCODER.sequence_lengths[2])
    expected = torch_reference(model_dir, PARITY_TEXTS)["embedding"]
    served = _infer(triton.url, feeds)
    np.testing.assert_allclose(served, expected, atol=BI_ENCODER.atol["fp32"], rtol=0)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


def test_dynamically_batched_requests_get_their_own_results(triton):
    """Requests of different lengths, sent at once, are padded together by the model and split back correctly."""
    model_dir = base_model_dir()
    expected = torch_reference(model_dir, PARITY_TEXTS)["embedding"]
    single_feeds = [tokenize(model_dir, [text], BI_ENCODER.sequence_lengths[2]) for text in PARITY_TEXTS]
    before = _inference_stats(triton.url)
    with ThreadPoolExecutor(max_workers=len(PARITY_TEXTS)) as pool:
        results = list(pool.map(lambda feeds: _infer(triton.url, feeds), single_feeds * 4))
    for position, served in enumerate(results):
        np.testing.assert_allclose(served[0], expected[position % len(PARITY_TEXTS)], atol=BI_ENCODER.atol["fp32"], rtol=0)
    after = _inference_stats(triton.url)
    assert after[0] - before[0] == len(results)  # every request was inferred
    assert after[1] - before[1] < len(results)  # and requests of different lengths shared executions (ragged inputs)


def _inference_stats(url: str) -> tuple[int, int]:
    stats = triton_grpc.InferenceServerClient(url).get_inference_statistics(BI_ENCODER.name).model_stats[0]
    return stats.inference_count, stats.execution_count
