"""The reranker's ONNX precisions: CPU latency and ranking quality, to choose what each target serves.

Usage:
    .venv/bin/python benchmarks/reranker_onnx.py --adapter models/reranker [--model-repository model_repository] \
        [--threads 1] [--requests 30] [--max-gate-queries N]

Exports the adapter to fp32, fp16 and every int8 variant (dynamic per tensor / per channel, static QDQ with
MinMax / Percentile calibration on train-split pairs) in a scratch folder, then prints for each file: its
size, ONNX Runtime CPU latency of one reranking request (a real Home Depot query with 100 product texts,
padded to the longest pair), mean nDCG@10 on the accuracy gate's queries (export/reranker/gate.py: Home Depot's
dev split when present, else the demo judgments) with its difference from fp32, and how far a request's
scores move when it shares a batch with another request (dynamic int8's activation ranges are per batch). With
--model-repository, the files that repository serves (cpu/reranker int8, gpu/reranker fp16) are measured too.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.catalog import load_catalog  # noqa: E402
from core.metrics import percentile  # noqa: E402
from core.model_repository import versions  # noqa: E402
from export.reranker.fp16 import to_fp16  # noqa: E402
from export.reranker.fp32 import export_reranker_fp32  # noqa: E402
from export.reranker.gate import default_gate_data, gate_lists, measure_ndcg  # noqa: E402
from export.reranker.int8 import calibration_lists, to_int8  # noqa: E402
from export.reranker.pairs import pair_encoder  # noqa: E402
from export.reranker.repository import INT8_FILE  # noqa: E402
from export.reranker.session import ort_session  # noqa: E402

CANDIDATES = 100


def requests(data, count: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """`count` reranking requests: a judged query and 100 product texts drawn from the catalog."""
    texts = [product.search_text() for product in load_catalog(data.catalog)]
    queries = [item.query for item in gate_lists(data.judgments, data.catalog, data.split)]
    rng = random.Random(seed)
    return [(rng.choice(queries), rng.sample(texts, CANDIDATES)) for _ in range(count)]


def latency_ms(onnx_file: Path, batches: list[dict[str, np.ndarray]], threads: int) -> tuple[float, float]:
    """(p50, p90) milliseconds of session.run over the batches, after two warm-up runs."""
    session = ort_session(onnx_file, threads)
    for feeds in batches[:2]:
        session.run(None, feeds)
    times = []
    for feeds in batches:
        started = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - started) * 1000)
    return percentile(times, 50), percentile(times, 90)


def batch_dependence(onnx_file: Path, pairs: list[tuple[str, list[str]]], threads: int) -> tuple[float, float]:
    """How much a request's scores move when Triton batches it with the next request (both padded together):
    (largest |difference|, share of requests whose top 10 changed)."""
    session, encoder = ort_session(onnx_file, threads), pair_encoder()
    largest, changed = 0.0, 0
    for (query, texts), (other, other_texts) in zip(pairs, pairs[1:] + pairs[:1]):
        alone = session.run(None, encoder(query, texts))[0].reshape(-1)
        batched = session.run(None, encoder([query] * len(texts) + [other] * len(other_texts), texts + other_texts))[0]
        batched = batched.reshape(-1)[: len(texts)]
        largest = max(largest, float(np.abs(alone - batched).max()))
        changed += list(np.argsort(-alone, kind="stable")[:10]) != list(np.argsort(-batched, kind="stable")[:10])
    return largest, changed / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", type=Path, required=True, help="folder with adapter_config.json, adapter and head")
    parser.add_argument("--model-repository", type=Path, help="also measure the files this exported repository serves")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: one per core)")
    parser.add_argument("--requests", type=int, default=30, help="latency: requests of 100 pairs each")
    parser.add_argument("--max-gate-queries", type=int, help="rank only the first N gate queries (quicker, noisier)")
    parser.add_argument("--only", help="comma-separated variants besides fp32: fp16, int8-dynamic, "
                        "int8-dynamic-per-channel, int8-static-minmax, int8-static-percentile")
    args = parser.parse_args()

    data = default_gate_data()
    lists = gate_lists(data.judgments, data.catalog, data.split)[: args.max_gate_queries]
    encoder = pair_encoder()
    pairs = requests(data, args.requests)
    batches = [encoder(query, texts) for query, texts in pairs]
    print(f"gate: {data.describe()}, {len(lists)} queries, {sum(len(item.texts) for item in lists)} pairs")
    print(f"latency: {len(batches)} requests of {CANDIDATES} pairs, padded to the longest pair "
          f"(median {int(np.median([b['input_ids'].shape[1] for b in batches]))} tokens), {args.threads or 'all'} thread(s)")

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        files = {"fp32": folder / "fp32.onnx", "fp16": folder / "fp16.onnx"}
        export_reranker_fp32(args.adapter, files["fp32"])
        to_fp16(files["fp32"], files["fp16"])
        calibration = calibration_lists(data)
        variants = {
            "int8-dynamic": dict(method="dynamic", per_channel=False),
            "int8-dynamic-per-channel": dict(method="dynamic", per_channel=True),
            "int8-static-minmax": dict(method="static", calibrate_method="minmax"),
            "int8-static-percentile": dict(method="static", calibrate_method="percentile"),
        }
        if args.only:
            wanted = set(args.only.split(","))
            files = {name: path for name, path in files.items() if name == "fp32" or name in wanted}
            variants = {name: options for name, options in variants.items() if name in wanted}
        for name, options in variants.items():
            files[name] = folder / f"{name}.onnx"
            started = time.perf_counter()
            to_int8(files["fp32"], files[name], calibration=calibration if options["method"] == "static" else None, **options)
            print(f"{name}: quantized in {time.perf_counter() - started:.1f}s", flush=True)
        if args.model_repository:
            cpu, gpu = (args.model_repository / target / "reranker" for target in ("cpu", "gpu"))
            # Each target's newest version: what a fresh service serves.
            files["served cpu/reranker int8"] = cpu / str(versions(cpu)[-1]) / INT8_FILE
            files["served gpu/reranker fp16"] = gpu / str(versions(gpu)[-1]) / "model.onnx"

        print("\n| precision | MB | p50 ms | p90 ms | nDCG@10 | vs fp32 | gate s | batched: max |Δscore| | top 10 moved |")
        print("|---|---|---|---|---|---|---|---|---|")
        reference = None
        for name, path in files.items():
            p50, p90 = latency_ms(path, batches, args.threads)
            moved, top_changed = batch_dependence(path, pairs, args.threads)
            ndcg, seconds = measure_ndcg(path, lists, threads=args.threads)
            reference = ndcg if reference is None else reference
            print(f"| {name} | {path.stat().st_size / 1e6:.0f} | {p50:.0f} | {p90:.0f} | {ndcg:.4f} | "
                  f"{ndcg - reference:+.4f} | {seconds:.0f} | {moved:.2g} | {top_changed:.0%} |", flush=True)


if __name__ == "__main__":
    main()
