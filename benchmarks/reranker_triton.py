"""Reranker throughput through a real Triton: requests of 100 (query, title) pairs, FP32 against INT8.

Usage:
    .venv/bin/python benchmarks/reranker_triton.py [--requests 60] [--pairs 100] \
        [--judgments ../shared/data/home-depot-product-search-relevance/judgments.csv \
         --catalog ../shared/data/home-depot-product-search-relevance/catalog.csv]

For each precision it lays out a one-model repository (the cpu target's config with `onnx_file` pointing at
that precision and `length_group_rows` set to each value compared), starts tritonserver, and sends the
requests one at a time (latency p50/p99, pairs/s) and then two at a time (pairs/s with dynamic batching). Pairs are real queries with real titles, padded to the
longest pair of each request, as the orchestrator sends them.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tritonclient.grpc as triton_grpc  # noqa: E402

from core.metrics import percentile  # noqa: E402
from core.model_repository import versions  # noqa: E402
from core.specs import RERANKER  # noqa: E402
from core.tokenization import PairEncoder  # noqa: E402
from orchestrator.triton_process import LocalTriton  # noqa: E402

HD = ROOT.parent / "shared" / "data" / "home-depot-product-search-relevance"


def requests_from(catalog: Path, judgments: Path, count: int, pairs: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    with open(catalog, newline="", encoding="utf-8") as handle:
        titles = [row["title"] for row in csv.DictReader(handle)]
    with open(judgments, newline="", encoding="utf-8") as handle:
        queries = list(dict.fromkeys(row["query"] for row in csv.DictReader(handle)))
    rng = random.Random(seed)
    return [(rng.choice(queries), rng.sample(titles, pairs)) for _ in range(count)]


def run(url: str, feeds_list: list[dict[str, np.ndarray]], concurrency: int) -> tuple[list[float], float]:
    client = triton_grpc.InferenceServerClient(url)

    def one(feeds: dict[str, np.ndarray]) -> float:
        inputs = []
        for tensor in RERANKER.inputs:
            item = triton_grpc.InferInput(tensor.name, list(feeds[tensor.name].shape), "INT64")
            item.set_data_from_numpy(feeds[tensor.name])
            inputs.append(item)
        started = time.perf_counter()
        client.infer(RERANKER.name, inputs)
        return (time.perf_counter() - started) * 1000

    one(feeds_list[0])  # warm-up
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = list(pool.map(one, feeds_list))
    return latencies, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository" / "cpu")
    parser.add_argument("--catalog", type=Path, default=HD / "catalog.csv")
    parser.add_argument("--judgments", type=Path, default=HD / "judgments.csv")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--length-group-rows", default="10,32,0",
                        help="comma-separated values of the cpu config's length_group_rows to compare (0: off)")
    parser.add_argument("--precisions", default="fp32,int8")
    args = parser.parse_args()

    source = args.model_repository / RERANKER.name
    encoder = PairEncoder(source / "tokenizer.json", args.max_tokens)
    feeds_list = [encoder(query, titles) for query, titles in requests_from(args.catalog, args.judgments, args.requests, args.pairs)]
    lengths = [feeds["input_ids"].shape[1] for feeds in feeds_list]
    print(f"{args.requests} requests of {args.pairs} pairs, padded to {np.mean(lengths):.1f} tokens on average (max {max(lengths)})")
    print(f"{'precision':<10} {'groups':>6} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'pairs/s':>9}")
    variants = [(precision, int(rows)) for precision in args.precisions.split(",")
                for rows in args.length_group_rows.split(",")]
    newest = source / str(versions(source)[-1])  # the repository's newest version
    for precision, group_rows in variants:
        onnx_file = newest / f"model.{precision}.onnx"
        if not onnx_file.is_file():
            print(f"{precision:<10} missing {onnx_file}; run `shoprank export`")
            continue
        with tempfile.TemporaryDirectory() as scratch:
            model = Path(scratch) / RERANKER.name
            (model / "1").mkdir(parents=True)
            config = (source / "config.pbtxt").read_text()
            config = config.replace(f'string_value: "{_configured_file(config)}"', f'string_value: "{onnx_file.name}"')
            config = _with_parameter(config, "length_group_rows", str(group_rows))
            (model / "config.pbtxt").write_text(config)
            shutil.copy(onnx_file, model / "1" / onnx_file.name)
            shutil.copy(newest / "model.py", model / "1" / "model.py")
            with LocalTriton(Path(scratch)) as triton:
                for concurrency in (1, 2):
                    latencies, seconds = run(triton.url, feeds_list, concurrency)
                    print(f"{precision:<10} {group_rows:>6} {concurrency:>7} {percentile(latencies, 50):8.1f} "
                          f"{percentile(latencies, 99):8.1f} "
                          f"{args.requests * args.pairs / seconds:9.0f}", flush=True)


def _with_parameter(config: str, key: str, value: str) -> str:
    """The config text with parameter `key` set to `value` (replaced where present, appended otherwise)."""
    marker = f'key: "{key}"'
    if marker in config:
        head, tail = config.split(marker, 1)
        old_value = tail.split('string_value: "', 1)[1].split('"', 1)[0]
        return head + marker + tail.replace(f'string_value: "{old_value}"', f'string_value: "{value}"', 1)
    return config + f'\nparameters {{\n  key: "{key}"\n  value {{\n    string_value: "{value}"\n  }}\n}}\n'


def _configured_file(config: str) -> str:
    marker = 'key: "onnx_file"'
    tail = config[config.index(marker):]
    return tail.split('string_value: "', 1)[1].split('"', 1)[0]


if __name__ == "__main__":
    main()
