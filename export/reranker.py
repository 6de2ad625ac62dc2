"""Exporting the cross-encoder reranker to ONNX in three precisions, each held to an accuracy gate.

    fp32  torch.onnx.export of the trained adapter merged into the base weights, parity-checked against PyTorch
    fp16  the fp32 graph in float16 inside, int64 inputs and the float32 `score` kept: the gpu target's file
    int8  ONNX Runtime quantization, dynamic (of the fp32 graph fused for CPU by ONNX Runtime's transformer
          optimizer) or static (QDQ of the plain fp32 graph, calibrated on train-split pairs): the cpu target's file

Quantized scores are not compared to FP32's one by one (every score moves a little); what must hold is the
ranking: each precision's mean nDCG@10 on held-out judged queries may fall at most `tolerance` below FP32's.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
import warnings
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from core.model_repository import MANIFEST, version_manifest, versions
from core.specs import RERANKER, ModelSpec

from .errors import ExportError, ParityError
from .onnx import check_io, trace_to_onnx
from .repository import (
    PYTHON_BACKEND_MODEL,
    _digest,
    export_record,
    is_current,
    log_parity,
    newest_version,
    next_version,
    refresh_configs,
    source_stamp,
    write_version,
)
from .triton_config import render
from .validate import Parity, check_parity

REPO_ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "fp16", "int8")
INT8_METHODS = ("dynamic", "static")
# Chosen by measurement with the released adapter on Home Depot's dev split (996 queries; FP32 0.9321 nDCG@10):
# dynamic 0.9297 (-0.0024, passes the 0.003 gate), static QDQ MinMax 0.9281 (-0.0040), static Percentile
# 0.9247 (-0.0074); both static variants fail the gate. With the smoke adapter every variant was within 0.0015
# and static ran ~11% slower than dynamic. Dynamic takes activation ranges from each batch, so a pair's score
# depends on its batch-mates: the cpu config therefore runs each request (one query's pairs) on its own
# (ModelSpec.merge_requests=False).
DEFAULT_INT8_METHOD = "dynamic"
PER_CHANNEL = {"dynamic": False, "static": True}
GATE_TOLERANCE = 0.003
INT8_FILE = "model.int8.onnx"

# Pairs the parity check scores, batched together so padding and truncation of either side are exercised.
PARITY_PAIRS = [
    ("cordless drill", "Kestrel 20V Cordless Drill/Driver Kit with 2 Batteries and Charger, 1/2 in. chuck | Kestrel"),
    ("2x4 lumber 8 ft", "2 in. x 4 in. x 8 ft. Premium Kiln-Dried Whitewood Stud | Lumber"),
    ("bluetooth headphnes", "Over-Ear Wireless Bluetooth Headphones with Active Noise Cancelling"),
    ("手机推荐", "智能手机 6.5 英寸 128GB 双卡双待"),
    ("behr deck over paint for old wood and concrete patio " * 3,
     "BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating " * 4),
    ("x", "x"),
]


def pair_encoder(spec: ModelSpec = RERANKER):
    """The PairEncoder the orchestrator sends the served reranker's inputs with (its default max_pair_tokens)."""
    from core.base_model import base_model_dir  # noqa: PLC0415
    from core.settings import Settings  # noqa: PLC0415
    from core.tokenization import PairEncoder  # noqa: PLC0415

    return PairEncoder(base_model_dir() / "tokenizer.json", min(Settings.max_pair_tokens, spec.sequence_lengths[2]))


def _encode(encoder, pairs: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    return encoder([query for query, _ in pairs], [text for _, text in pairs])


def ort_session(onnx_file: Path, threads: int = 0, spec: ModelSpec = RERANKER):
    """An ONNX Runtime CPU session as the cpu target runs it (all graph optimizations but the spec's
    `cpu_disabled_optimizers`; 0 threads: one per core; idle threads sleep)."""
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(spec.cpu_disabled_optimizers))


def export_reranker_fp32(adapter_dir: Path, out_file: Path, spec: ModelSpec = RERANKER) -> list[Parity]:
    """Export the merged reranker to `out_file` and check it against PyTorch; on mismatch delete it and raise."""
    import torch  # noqa: PLC0415

    from core.cross_encoder import CrossEncoder  # noqa: PLC0415

    model = CrossEncoder.from_adapter(Path(adapter_dir), attention="eager")  # fusable by fuse_for_cpu
    encoder = pair_encoder(spec)
    trace_to_onnx(model, _encode(encoder, PARITY_PAIRS[:2]), spec, out_file)
    try:
        session = ort_session(out_file)
        results = []
        # A padded batch of six (other shapes than the traced sample), and a single pair.
        for pairs in (PARITY_PAIRS, PARITY_PAIRS[2:3]):
            feeds = _encode(encoder, pairs)
            with torch.inference_mode():
                reference = model(*(torch.from_numpy(feeds[name]) for name in spec.input_names)).numpy()
            exported = dict(zip(spec.output_names, session.run(spec.output_names, feeds)))
            results += check_parity({spec.output_names[0]: reference}, exported, spec.atol["fp32"])
    except (ExportError, ParityError):
        out_file.unlink()
        raise
    return results


def fuse_for_cpu(fp32_file: Path, out_file: Path, spec: ModelSpec = RERANKER) -> dict[str, int]:
    """ONNX Runtime's transformer optimizer: embeddings + LayerNorm, each layer's attention and bias + GELU
    become single fused CPU kernels (and QAttention once quantized), each LayerNorm one node. Residual +
    LayerNorm stays two nodes where the spec disables SkipLayerNormFusion (its CPU kernel is the slower).
    Checked against the unfused file on the parity pairs; returns how many nodes of each fused kind it made."""
    import onnx  # noqa: PLC0415
    from onnxruntime.transformers.fusion_options import FusionOptions  # noqa: PLC0415
    from onnxruntime.transformers.optimizer import optimize_model  # noqa: PLC0415
    from transformers import AutoConfig  # noqa: PLC0415

    from core.base_model import base_model_dir  # noqa: PLC0415

    config = AutoConfig.from_pretrained(str(base_model_dir()), local_files_only=True)
    fusions = FusionOptions("bert")
    fusions.enable_skip_layer_norm = "SkipLayerNormFusion" not in spec.cpu_disabled_optimizers
    optimized = optimize_model(str(fp32_file), model_type="bert", num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size, opt_level=1, use_gpu=False,
                               optimization_options=fusions)
    fused = {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}
    norms = fused.get("SkipLayerNormalization", 0) + fused.get("LayerNormalization", 0)
    layers = norms // 2  # two residual LayerNorms a layer
    if not layers or fused.get("Attention", 0) != layers:
        raise ExportError(f"{spec.name}: the optimizer fused {fused.get('Attention', 0)} of {layers} attention layers; "
                          "was the model exported with eager attention?")
    optimized.save_model_to_file(str(out_file))
    onnx.checker.check_model(str(out_file))
    check_io(out_file, spec)
    feeds = _encode(pair_encoder(spec), PARITY_PAIRS)
    reference = ort_session(fp32_file).run(spec.output_names, feeds)
    exported = ort_session(out_file).run(spec.output_names, feeds)
    check_parity(dict(zip(spec.output_names, reference)), dict(zip(spec.output_names, exported)), spec.atol["fp32"])
    return fused


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
        encoded = _encode(encoder, pairs[start : start + batch])
        feeds.append({name: np.pad(array, ((0, 0), (0, longest - array.shape[1]))) for name, array in encoded.items()})
    return feeds


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


# ---------------------------------------------------------------------------------------------------- gate data


@dataclass(frozen=True)
class GateData:
    """The judged queries a gate ranks: a judgments file, its catalog, and which split of its queries."""

    judgments: Path
    catalog: Path
    split: str | None  # None: every query
    # False for the demo fallback: 33 queries cannot resolve a 0.003 tolerance (one swapped pair moves a
    # query's nDCG by more), so a shortfall there is reported and the export goes on.
    binding: bool = True

    def describe(self) -> str:
        which = f"{self.split} split" if self.split else "all queries"
        return f"{self.judgments} ({which}) with {self.catalog}" + ("" if self.binding else ", not binding")


def default_gate_data(repo_root: Path = REPO_ROOT) -> GateData:
    """Home Depot's judgments (dev split) beside the repository when present, else the demo data (all queries,
    not binding: the release's binding gate on Home Depot's dev split is recorded in models/reranker/manifest.json)."""
    home_depot = repo_root.parent / "shared" / "data" / "home-depot-product-search-relevance"
    if (home_depot / "judgments.csv").is_file() and (home_depot / "catalog.csv").is_file():
        return GateData(home_depot / "judgments.csv", home_depot / "catalog.csv", "dev")
    demo = repo_root / "data" / "demo"
    return GateData(demo / "judgments.csv", demo / "catalog.csv", None, binding=False)


def gate_lists(judgments: Path, catalog: Path, split: str | None = "dev", seed: int = 0) -> list:
    """The QueryLists of one split of the judgments (dev by default; None: all), as training builds them, with
    the queries spelling-corrected as the service corrects them."""
    from core.catalog import load_catalog  # noqa: PLC0415
    from core.query_lists import build_lists, correct_queries  # noqa: PLC0415
    from core.judgments import load_judgments  # noqa: PLC0415
    from core.splits import select  # noqa: PLC0415

    products = load_catalog(catalog)
    lists = build_lists(products, select(load_judgments(judgments), split), seed)
    return correct_queries({"gate": lists}, products)["gate"]


def calibration_lists(data: GateData, max_queries: int = 64, seed: int = 0) -> list:
    """A seeded sample of train-split QueryLists for static quantization, never the gate's queries.

    Without splits (the demo data) the sample comes from all queries, so it overlaps the gate's.
    """
    lists = gate_lists(data.judgments, data.catalog, "train" if data.split else None, seed)
    return random.Random(seed).sample(lists, min(max_queries, len(lists)))


# --------------------------------------------------------------------------------------------------------- gate


@dataclass(frozen=True)
class GateResult:
    """One precision's mean nDCG@10 on the gate queries, against FP32's."""

    precision: str
    ndcg: float | None  # None: not measured (skipped, or it could not run)
    reference: float  # FP32's nDCG@10
    tolerance: float
    passed: bool
    skipped: bool = False
    seconds: float | None = None  # scoring every gate query, one session
    note: str = ""

    def line(self) -> str:
        if self.precision == "fp32":
            return f"fp32 (the reference): nDCG@10 {self.ndcg:.4f}; scored in {self.seconds:.1f}s"
        if self.skipped:
            return f"{self.precision}: NOT GATED ({self.note})"
        if self.ndcg is None:
            return f"{self.precision}: FAILED, {self.note}"
        verdict = "passes" if self.passed else "FAILS"
        return (f"{self.precision}: nDCG@10 {self.ndcg:.4f} vs FP32's {self.reference:.4f} "
                f"({self.ndcg - self.reference:+.4f}, tolerance {self.tolerance}) {verdict}; scored in {self.seconds:.1f}s")


def score_onnx(session, encoder, lists: list, spec: ModelSpec = RERANKER) -> list[np.ndarray]:
    """An ONNX Runtime session's scores for every QueryList, as the cpu target computes them: one query's
    pairs a run, in the Python backend's length groups (dynamic int8's activation ranges depend on both)."""
    from .python_backend.ort_model import run_by_length  # noqa: PLC0415

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return session.run(spec.output_names, feeds)

    scores = []
    for item in lists:
        feeds = encoder([item.query] * len(item.texts), list(item.texts))
        scores.append(run_by_length(run, feeds, spec.length_group_rows)[0].reshape(-1))
    return scores


def measure_ndcg(onnx_file: Path, lists: list, spec: ModelSpec = RERANKER, threads: int = 0) -> tuple[float, float]:
    """(mean nDCG@10, seconds) of one ONNX file on the QueryLists, run with ONNX Runtime on CPU."""
    from core.query_lists import mean_ndcg_over_queries  # noqa: PLC0415

    session = ort_session(onnx_file, threads)
    started = time.perf_counter()
    scores = score_onnx(session, pair_encoder(spec), lists, spec)
    return mean_ndcg_over_queries(lists, scores), time.perf_counter() - started


def accuracy_gate(files: dict[str, Path], lists: list, tolerance: float = GATE_TOLERANCE, skip: Collection[str] = (),
                  spec: ModelSpec = RERANKER, threads: int = 0, log: Callable[[str], None] = print,
                  binding: bool = True) -> dict[str, GateResult]:
    """Rank the QueryLists with every file (ONNX Runtime, CPU); raise ExportError if any precision falls more
    than `tolerance` below FP32's nDCG@10 or cannot run. Precisions in `skip` are not run, and say so.
    Not `binding`: a shortfall is logged as such and nothing is raised (a precision that cannot run still raises)."""
    if "fp32" not in files or "fp32" in skip:
        raise ValueError("the gate needs the fp32 file: it is the reference")
    try:
        reference, seconds = measure_ndcg(files["fp32"], lists, spec, threads)
    except Exception as error:  # noqa: BLE001 - ONNX Runtime's exceptions share no base class
        raise ExportError(f"the fp32 reranker cannot run on ONNX Runtime's CPU provider: {error}") from None
    results = {"fp32": GateResult("fp32", reference, reference, tolerance, True, seconds=seconds)}
    for precision, path in files.items():
        if precision == "fp32":
            continue
        if precision in skip:
            results[precision] = GateResult(precision, None, reference, tolerance, False, skipped=True,
                                            note="skipped on request: its ranking was not checked")
            continue
        try:
            ndcg, seconds = measure_ndcg(path, lists, spec, threads)
        except Exception as error:  # noqa: BLE001 - e.g. NOT_IMPLEMENTED: no CPU kernel for a float16 op
            results[precision] = GateResult(
                precision, None, reference, tolerance, False,
                note=f"cannot run on ONNX Runtime's CPU provider ({str(error).strip()[:300]}); "
                     f"skip it explicitly (--skip-precision {precision}) to export it ungated",
            )
            continue
        # A hair of slack so that a precision scoring exactly FP32's nDCG passes at tolerance 0.
        passed = ndcg >= reference - tolerance - 1e-12
        results[precision] = GateResult(precision, ndcg, reference, tolerance, passed, seconds=seconds)
    for result in results.values():
        log(f"{spec.name} gate, {len(lists)} queries: {result.line()}")
    failed = [result for result in results.values() if not result.passed and not result.skipped]
    if failed and not binding and all(result.ndcg is not None for result in failed):
        log(f"{spec.name} gate NOT BINDING on {len(lists)} queries (too few to resolve the tolerance): exported anyway")
        return results
    if failed:
        raise ExportError(f"{spec.name} accuracy gate: " + "; ".join(result.line() for result in failed))
    return results


# --------------------------------------------------------------------------------------------------- repository


def adapter_digest(adapter_dir: Path) -> str:
    """One SHA-256 over the release's files (LoRA config and weights, or the fully fine-tuned transformer; the
    head); ExportError if one is missing."""
    from core.cross_encoder import release_digest  # noqa: PLC0415

    try:
        return release_digest(adapter_dir)
    except FileNotFoundError as error:
        raise ExportError(str(error)) from None


def reranker_source_stamp(adapter_dir: Path, spec: ModelSpec, int8_method: str, gate: GateData,
                          skip: Collection[str], tolerance: float) -> dict[str, str]:
    """What a reranker export depends on: the bi-encoder's stamp fields, the adapter, and how it was gated."""
    from core.base_model import base_model_dir  # noqa: PLC0415

    here = Path(__file__).parent
    stamp = source_stamp(base_model_dir(), spec)
    stamp.update({
        "exporter_sha256": _digest(here / "reranker.py") + _digest(here / "onnx.py")[:16],
        "cross_encoder_sha256": _digest(REPO_ROOT / "core" / "cross_encoder.py"),
        "tensorrt_sha256": _digest(here / "tensorrt.py"),
        "adapter_sha256": adapter_digest(adapter_dir),
        "int8_method": int8_method,
        "gate_data": f"{gate.describe()} sha256 {_digest(gate.judgments)[:16]}/{_digest(gate.catalog)[:16]}",
        "gate_tolerance": repr(tolerance),
        "skipped_precisions": ",".join(sorted(skip)),
    })
    return stamp


def combination_weights(adapter_dir: Path) -> dict:
    """The weights per query script fit by `shoprank train combination` (manifest.json), with the shops' own
    (core/weights.py), or the reranker alone."""
    from core.weights import DEFAULT_WEIGHTS, SHOPS, per_script  # noqa: PLC0415

    manifest = Path(adapter_dir) / "manifest.json"
    if manifest.is_file():
        fitted = json.loads(manifest.read_text()).get("combination", {})
        if fitted.get("weights"):
            result: dict = per_script(fitted["weights"])
            shops = {shop: {"weights": per_script(entry["weights"])} for shop, entry in fitted.get(SHOPS, {}).items()}
            if shops:
                result[SHOPS] = shops
            return result
    return per_script(dict(DEFAULT_WEIGHTS))


TARGETS = ("cpu", "gpu", "tensorrt")
# The targets every version is exported into (the tensorrt target gets a version only where TensorRT built a plan).
WEIGHTS = {"cpu": INT8_FILE, "gpu": "model.onnx"}
COMBINATION = "combination.json"


def _configs(spec: ModelSpec) -> dict[str, str]:
    """Each target's config.pbtxt text (the cpu target serves the int8 file)."""
    return {"cpu": render(spec, "cpu", onnx_file=INT8_FILE), "gpu": render(spec, "gpu"),
            "tensorrt": render(spec, "tensorrt")}


def _write_target(root: Path, target: str, spec: ModelSpec, version: int, config: str, files: dict[str, Path],
                  tokenizer: Path, record: dict) -> Path:
    """Write version `version` of the reranker into one target: its files, manifest and combination weights
    (read by the orchestrator for the requests this version serves). A target without files gets its config only."""
    folder = root / target / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    if files:
        with tempfile.TemporaryDirectory() as scratch:
            weights = Path(scratch) / COMBINATION
            weights.write_text(json.dumps(record["combination"], indent=2) + "\n")
            write_version(folder, version, {**files, COMBINATION: weights}, record)
    (folder / "config.pbtxt").write_text(config)
    if Path(tokenizer).resolve() != (folder / "tokenizer.json").resolve():
        shutil.copyfile(tokenizer, folder / "tokenizer.json")
    return folder


def _reweight(root: Path, spec: ModelSpec, combination: dict, log: Callable[[str], None]) -> bool:
    """When only the combination weights changed since the newest version, write them as a new version whose
    model files are the newest version's; returns False when nothing changed."""
    current = newest_version(root, spec, tuple(WEIGHTS))
    if version_manifest(root / "cpu" / spec.name, current).get("combination") == combination:
        return False
    version = next_version(root, spec, TARGETS)
    for target in TARGETS:
        folder = root / target / spec.name
        if current not in versions(folder):
            continue
        source = folder / str(current)
        record = {**(version_manifest(folder, current) or {}), "combination": combination, "model_files_from": str(current),
                  "exported_at": export_record(spec, {}, [])["exported_at"]}
        files = {item.name: item for item in source.iterdir()
                 if item.is_file() and item.name not in (MANIFEST, COMBINATION)}
        _write_target(root, target, spec, version, (folder / "config.pbtxt").read_text(), files,
                      folder / "tokenizer.json", record)
    log(f"{spec.name}: new combination weights: wrote version {version} with the model files of version {current}")
    return True


def export_reranker_repository(root: Path, adapter_dir: Path, force: bool = False, log: Callable[[str], None] = print,
                               skip_precisions: Collection[str] = (), int8_method: str = DEFAULT_INT8_METHOD,
                               gate_data: GateData | None = None, tolerance: float = GATE_TOLERANCE) -> None:
    """Export the reranker into cpu/ (int8, Python backend), gpu/ (fp16, onnxruntime_onnx + TensorRT) and
    tensorrt/ (an engine, where TensorRT and a GPU exist), unless current. Nothing is written if a gate fails."""
    from core.base_model import base_model_dir  # noqa: PLC0415

    from .tensorrt import build_engine  # noqa: PLC0415

    spec = RERANKER
    unknown = set(skip_precisions) - set(PRECISIONS)
    if unknown:
        raise ExportError(f"unknown precision(s) to skip: {', '.join(sorted(unknown))}; known: {', '.join(PRECISIONS)}")
    gate = gate_data or default_gate_data()
    stamp = reranker_source_stamp(adapter_dir, spec, int8_method, gate, skip_precisions, tolerance)
    if not force and is_current(root, spec, stamp, WEIGHTS):
        refresh_configs(root, spec, _configs(spec), log)
        # The combination weights can change without the model (`shoprank train combination`).
        if not _reweight(root, spec, combination_weights(adapter_dir), log):
            log(f"{spec.name}: up to date in {root}")
        return
    with tempfile.TemporaryDirectory() as scratch:
        files = {precision: Path(scratch) / f"model.{precision}.onnx" for precision in PRECISIONS}
        log(f"{spec.name}: exporting {adapter_dir} to ONNX (opset {spec.onnx_opset})")
        parity = export_reranker_fp32(Path(adapter_dir), files["fp32"], spec)
        log_parity(spec, parity, log)
        to_fp16(files["fp32"], files["fp16"], spec)
        fused_file = Path(scratch) / "model.fp32.fused.onnx"
        fused = fuse_for_cpu(files["fp32"], fused_file, spec)
        log(f"{spec.name}: fused for the cpu target: " + ", ".join(f"{count} {name}" for name, count in fused.items()))
        log(f"{spec.name}: int8 by {int8_method} quantization; gate data: {gate.describe()}")
        calibration = calibration_lists(gate) if int8_method == "static" else None
        # Static QDQ quantizes the plain graph: its calibrator does not know the fused (com.microsoft) nodes.
        to_int8(fused_file if int8_method == "dynamic" else files["fp32"], files["int8"], int8_method, calibration, spec)
        lists = gate_lists(gate.judgments, gate.catalog, gate.split)
        results = accuracy_gate(files, lists, tolerance, skip_precisions, spec, log=log, binding=gate.binding)
        plan = Path(scratch) / "model.plan"
        try:
            build_engine(files["fp32"], spec, "fp16", plan)
            tensorrt_note = "fp16 engine built from the fp32 file"
        except ExportError as error:
            plan, tensorrt_note = None, str(error)
            log(f"{spec.name}: {error}")
        record = export_record(
            spec, stamp, parity,
            gate={"queries": len(lists), "binding": gate.binding,
                  "results": [asdict(result) for result in results.values()]},
            tensorrt=tensorrt_note,
            combination=combination_weights(adapter_dir),
        )
        tokenizer = base_model_dir() / "tokenizer.json"
        configs = _configs(spec)
        served = {
            # FP32 rides along unused, so benchmarks/reranker_triton.py can serve it for comparison.
            "cpu": (configs["cpu"],
                    {INT8_FILE: files["int8"], "model.fp32.onnx": fused_file, "model.py": PYTHON_BACKEND_MODEL}),
            "gpu": (configs["gpu"], {"model.onnx": files["fp16"]}),
            "tensorrt": (configs["tensorrt"], {"model.plan": plan} if plan else {}),
        }
        version = next_version(root, spec, TARGETS)
        for target, (config, target_files) in served.items():
            folder = _write_target(root, target, spec, version, config, target_files, tokenizer,
                                   {**record, "target": target})
            log(f"{spec.name}: wrote version {version} in {folder} ({target}: {', '.join(target_files) or 'config only'})")
