"""export.reranker and export.tensorrt: the cross-encoder's ONNX precisions, their accuracy gate, the repository.

The adapter is an untrained one made here (seeded), never a trained folder: these tests prove the export's
mechanics (tensor names, parity, the gate's verdicts, the repository's layout), not the model's quality.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from core.specs import RERANKER  # noqa: E402
from export.errors import ExportError  # noqa: E402
from export.onnx import check_io  # noqa: E402
from export.reranker.fp16 import to_fp16  # noqa: E402
from export.reranker.fp32 import export_reranker_fp32  # noqa: E402
from export.reranker.fusion import fuse_for_cpu  # noqa: E402
from export.reranker.gate import GateData, accuracy_gate, default_gate_data, gate_lists  # noqa: E402
from export.reranker.int8 import calibration_lists, to_int8  # noqa: E402
from export.reranker.pairs import pair_encoder  # noqa: E402
from export.reranker.repository import INT8_FILE, export_reranker_repository  # noqa: E402
from export.reranker.session import ort_session  # noqa: E402
from export.targets import PRECISIONS, TARGETS  # noqa: E402
from export.tensorrt import build_engine, optimization_profile  # noqa: E402
from export.triton_config import render  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
# The committed config.pbtxt files (golden): models/reranker is released, so `shoprank export` fills their
# version folders (a config without weights in model_repository/cpu would stop tritonserver from starting).
GOLDEN = REPO / "model_repository"
DEMO = GateData(REPO / "data" / "demo" / "judgments.csv", REPO / "data" / "demo" / "catalog.csv", None)


@pytest.fixture(scope="session")
def adapter(tmp_path_factory) -> Path:
    """An untrained adapter (fresh LoRA, seeded random head) saved as training saves one."""
    import torch

    from core.cross_encoder import CrossEncoder

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("adapter")
    CrossEncoder.from_base().save_adapter(directory)
    return directory


@pytest.fixture(scope="session")
def exported(adapter, tmp_path_factory) -> dict:
    """fp32 (with its parity results), fp16, int8 dynamic and int8 static files of the adapter."""
    folder = tmp_path_factory.mktemp("onnx")
    files = {name: folder / f"{name}.onnx" for name in ("fp32", "fused", "fp16", "int8", "int8_static")}
    parity = export_reranker_fp32(adapter, files["fp32"])
    to_fp16(files["fp32"], files["fp16"])
    fused = fuse_for_cpu(files["fp32"], files["fused"])
    to_int8(files["fused"], files["int8"], "dynamic")  # as export_reranker_repository makes the cpu target's file
    to_int8(files["fp32"], files["int8_static"], "static", calibration_lists(DEMO, max_queries=8))
    return {"files": files, "parity": parity, "fused": fused}


@pytest.fixture(scope="session")
def demo_lists() -> list:
    return gate_lists(DEMO.judgments, DEMO.catalog, DEMO.split)


def test_cpu_graph_fuses_every_layer_and_quantizes_the_fused_attention(exported):
    import onnx

    assert exported["fused"]["Attention"] == 6  # MiniLM-L6: one per layer
    assert exported["fused"]["LayerNormalization"] == 12  # residual + LayerNorm left unfused (the faster kernels)
    ops = {node.op_type for node in onnx.load(str(exported["files"]["int8"])).graph.node}
    assert "QAttention" in ops and "Attention" not in ops and "SkipLayerNormalization" not in ops
    check_io(exported["files"]["fused"], RERANKER)


def test_the_cpu_session_leaves_residual_and_layernorm_unfused_as_the_spec_says(exported, tmp_path):
    import onnx
    import onnxruntime as ort

    def optimized_ops(disabled: list[str]) -> set[str]:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        ort.InferenceSession(str(exported["files"]["int8"]), options, providers=["CPUExecutionProvider"],
                             disabled_optimizers=disabled)
        return {node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node}

    assert "SkipLayerNormalization" in optimized_ops([])  # what ONNX Runtime would do by itself
    assert "SkipLayerNormalization" not in optimized_ops(list(RERANKER.cpu_disabled_optimizers))


def test_fp32_export_matches_pytorch_on_a_padded_batch_and_a_single_pair(exported):
    parity = exported["parity"]
    assert [item.output for item in parity] == ["score", "score"]
    assert all(item.max_abs_diff <= item.atol == RERANKER.atol["fp32"] for item in parity)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "int8_static"])
def test_every_precision_keeps_the_spec_tensors(exported, precision):
    path = exported["files"][precision]
    check_io(path, RERANKER)
    session = ort_session(path, threads=1)
    assert [(i.name, i.type) for i in session.get_inputs()] == [(name, "tensor(int64)") for name in RERANKER.input_names]
    assert [(o.name, o.type) for o in session.get_outputs()] == [("score", "tensor(float)")]
    feeds = pair_encoder()(["cordless drill"] * 3, ["drill", "Kestrel 20V Cordless Drill/Driver Kit", "paint"])
    (scores,) = session.run(None, feeds)
    assert scores.shape == (3, 1) and scores.dtype == np.float32 and np.isfinite(scores).all()


def test_check_io_rejects_other_names(exported, tmp_path):
    import onnx

    model = onnx.load(str(exported["files"]["int8"]))
    model.graph.output[0].name = "logits"
    onnx.save(model, str(tmp_path / "renamed.onnx"))
    with pytest.raises(ExportError, match="differ from the spec"):
        check_io(tmp_path / "renamed.onnx", RERANKER)


def test_gate_passes_within_tolerance_on_the_demo_judgments(exported, demo_lists):
    files = {precision: exported["files"][precision] for precision in PRECISIONS}
    lines = []
    # The untrained adapter scores nearly at random: int8 noise moves its nDCG on 33 queries by ~0.005-0.02.
    results = accuracy_gate(files, demo_lists, tolerance=0.05, threads=1, log=lines.append)
    assert list(results) == list(PRECISIONS)
    assert all(result.passed and result.ndcg is not None for result in results.values())
    assert results["fp32"].ndcg == results["fp32"].reference == results["int8"].reference
    assert len(lines) == 3 and "fp16: nDCG@10" in lines[1]


def test_gate_fails_a_precision_beyond_tolerance_naming_it_and_both_scores(exported, demo_lists):
    files = {"fp32": exported["files"]["fp32"], "int8": exported["files"]["int8"]}
    with pytest.raises(ExportError, match=r"int8: nDCG@10 0\.\d{4} vs FP32's 0\.\d{4} .*FAILS") as error:
        accuracy_gate(files, demo_lists, tolerance=-1, threads=1, log=lambda line: None)
    assert "fp32: nDCG" not in str(error.value)  # only the failing precision is named


def test_gate_that_is_not_binding_reports_a_shortfall_and_does_not_stop_the_export(exported, demo_lists):
    files = {"fp32": exported["files"]["fp32"], "int8": exported["files"]["int8"]}
    lines = []
    results = accuracy_gate(files, demo_lists, tolerance=-1, threads=1, log=lines.append, binding=False)
    assert not results["int8"].passed
    assert "FAILS" in lines[1] and "NOT BINDING" in lines[-1]


def _unrunnable_model(path: Path) -> Path:
    """A valid ONNX file with the spec's tensors whose one op no ONNX Runtime provider implements."""
    import onnx
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"]) for name in RERANKER.input_names]
    output = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])
    node = helper.make_node("Score", RERANKER.input_names, ["score"], domain="shoprank.test")
    graph = helper.make_graph([node], "unrunnable", inputs, [output])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("shoprank.test", 1)]), str(path))
    return path


def test_a_precision_that_cannot_run_fails_the_gate_unless_skipped(exported, demo_lists, tmp_path):
    files = {"fp32": exported["files"]["fp32"], "fp16": _unrunnable_model(tmp_path / "fp16.onnx")}
    with pytest.raises(ExportError, match=r"fp16: FAILED, cannot run on ONNX Runtime's CPU provider .*--skip-precision fp16"):
        accuracy_gate(files, demo_lists[:4], threads=1, log=lambda line: None)
    lines = []
    results = accuracy_gate(files, demo_lists[:4], skip={"fp16"}, threads=1, log=lines.append)
    assert results["fp16"].skipped and not results["fp16"].passed and results["fp16"].ndcg is None
    assert "fp16: NOT GATED" in lines[1]


def test_gate_needs_the_fp32_reference(exported, demo_lists):
    with pytest.raises(ValueError, match="fp32"):
        accuracy_gate({"int8": exported["files"]["int8"]}, demo_lists)
    with pytest.raises(ValueError, match="fp32"):
        accuracy_gate({"fp32": exported["files"]["fp32"]}, demo_lists, skip={"fp32"})


def test_gate_data_prefers_home_depot_next_to_the_repository(tmp_path):
    repo = tmp_path / "main"
    (repo / "data" / "demo").mkdir(parents=True)
    fallback = default_gate_data(repo)
    assert fallback == GateData(repo / "data/demo/judgments.csv", repo / "data/demo/catalog.csv", None, binding=False)
    assert "not binding" in fallback.describe()
    home_depot = tmp_path / "shared" / "data" / "home-depot-product-search-relevance"
    home_depot.mkdir(parents=True)
    (home_depot / "judgments.csv").write_text("query,product_id,gain\n")
    (home_depot / "catalog.csv").write_text("product_id,title\n")
    assert default_gate_data(repo) == GateData(home_depot / "judgments.csv", home_depot / "catalog.csv", "dev")
    assert default_gate_data(repo).binding


def test_gate_lists_take_one_split_with_queries_corrected_as_served(demo_lists):
    from core.catalog import load_catalog
    from core.query_lists import build_lists
    from core.judgments import load_judgments
    from core.splits import select

    assert len(demo_lists) == 33
    dev = gate_lists(DEMO.judgments, DEMO.catalog, "dev")
    typed = build_lists(load_catalog(DEMO.catalog), select(load_judgments(DEMO.judgments), "dev"), seed=0)
    assert dev and len(dev) < len(demo_lists)
    assert [item.product_ids for item in dev] == [item.product_ids for item in typed]  # the split of the typed queries
    words = {word for item in demo_lists for word in item.query.split()}
    assert "headphnes" not in words and "cordles" not in words  # the demo queries' typos (data/demo) come corrected


def test_repository_export_gates_then_writes_every_target_once(adapter, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on a host without TensorRT, whatever this one has
    root = tmp_path / "model_repository"
    with pytest.raises(ExportError, match="accuracy gate"):
        export_reranker_repository(root, adapter, gate_data=DEMO, tolerance=-1, int8_method="dynamic", log=lambda line: None)
    assert not root.exists()

    # An untrained adapter scores nearly at random, so int8 noise swings its nDCG on 33 queries by up to
    # ~0.02 either way: the layout is under test here, the gate's verdicts above.
    lines = []
    export_reranker_repository(root, adapter, gate_data=DEMO, tolerance=0.05, log=lines.append)
    cpu, gpu, tensorrt = (root / target / "reranker" for target in TARGETS)
    assert sorted(p.name for p in (cpu / "1").iterdir()) == ["combination.json", "manifest.json", "model.fp32.onnx",
                                                             "model.int8.onnx", "model.py"]
    assert sorted(p.name for p in (gpu / "1").iterdir()) == ["combination.json", "manifest.json", "model.onnx"]
    assert not (tensorrt / "1").exists()  # no TensorRT here; the skip is logged, not raised
    assert any("TensorRT build skipped:" in line for line in lines)
    for target in TARGETS:
        folder = root / target / "reranker"
        assert (folder / "config.pbtxt").read_text() == (GOLDEN / target / "reranker" / "config.pbtxt").read_text()
        assert (folder / "tokenizer.json").is_file()
    check_io(gpu / "1" / "model.onnx", RERANKER)
    record = json.loads((cpu / "1" / "manifest.json").read_text())
    assert record["version"] == "1" and record["target"] == "cpu"
    assert [result["precision"] for result in record["gate"]["results"]] == list(PRECISIONS)
    assert all(result["passed"] for result in record["gate"]["results"])
    assert len(record["source"]["adapter_sha256"]) == 64

    lines.clear()
    export_reranker_repository(root, adapter, gate_data=DEMO, tolerance=0.05, log=lines.append)
    assert lines == [f"reranker: up to date in {root}"]

    # New combination weights alone make a new version with the same model files; version 1 is left as it was.
    before = {path: path.read_bytes() for path in (cpu / "1").iterdir()}
    (adapter / "manifest.json").write_text(json.dumps({"combination": {"weights": {"reranker": 1.0, "bm25": 0.5}}}))
    try:
        export_reranker_repository(root, adapter, gate_data=DEMO, tolerance=0.05, log=lines.append)
    finally:
        (adapter / "manifest.json").unlink()
    assert lines[-1] == "reranker: new combination weights: wrote version 2 with the model files of version 1"
    assert {path: path.read_bytes() for path in (cpu / "1").iterdir()} == before
    assert (cpu / "2" / INT8_FILE).read_bytes() == (cpu / "1" / INT8_FILE).read_bytes()
    assert json.loads((cpu / "2" / "combination.json").read_text())["latin"]["bm25"] == 0.5
    assert json.loads((cpu / "2" / "manifest.json").read_text())["model_files_from"] == "1"


def test_repository_export_refuses_a_folder_without_an_adapter(tmp_path):
    with pytest.raises(ExportError, match="head.safetensors"):
        export_reranker_repository(tmp_path / "repo", tmp_path, gate_data=DEMO)


@pytest.mark.parametrize("target", TARGETS)
def test_reranker_configs_match_committed(target):
    """Golden files: the committed config.pbtxt of each target is what the export writes."""
    committed = (GOLDEN / target / "reranker" / "config.pbtxt").read_text(encoding="utf-8")
    assert render(RERANKER, target, onnx_file=INT8_FILE) == committed


def test_cpu_config_runs_the_int8_file_in_the_python_backend():
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    config = text_format.Parse(render(RERANKER, "cpu", onnx_file=INT8_FILE), mc.ModelConfig())
    assert config.backend == "python" and config.parameters["onnx_file"].string_value == "model.int8.onnx"
    assert [t.name for t in config.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [(t.name, list(t.dims)) for t in config.output] == [("score", [1])]
    assert config.max_batch_size == 256


def test_tensorrt_profile_spans_one_pair_to_the_largest_batch():
    assert optimization_profile(RERANKER) == {name: ((1, 1), (100, 32), (256, 64)) for name in RERANKER.input_names}


def test_tensorrt_build_is_skipped_with_a_reason_without_tensorrt(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt raises ImportError
    with pytest.raises(ExportError, match=r"^TensorRT build skipped: the tensorrt package is not installed"):
        build_engine(tmp_path / "model.onnx", RERANKER, "fp16", tmp_path / "model.plan")
    with pytest.raises(ValueError, match="precision"):
        build_engine(tmp_path / "model.onnx", RERANKER, "bf16", tmp_path / "model.plan")
