"""Which ANN library serves the dense retriever: FAISS HNSW, hnswlib or usearch, on real embeddings.

Usage:
    .venv/bin/python benchmarks/ann_libraries.py --index .shoprank/indexes/hd \
        --queries ../shared/data/home-depot-product-search-relevance/judgments.csv [--n-queries 1000]

Product embeddings come from a built index (embeddings.npy, made through Triton); query embeddings from the
exported ONNX model run in-process. For each library and search breadth it prints the build time, the
recall@100 against exact cosine search, and the single-query latency p50/p99 (one thread, as the
orchestrator calls it).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.metrics import percentile  # noqa: E402
from core.tokenization import TextEncoder  # noqa: E402

M, EF_CONSTRUCTION, K = 32, 200, 100


def embed_queries(texts: list[str], model_dir: Path, version: str) -> np.ndarray:
    """The queries' vectors from the bi-encoder `version` (the one that embedded the index)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_dir / version / "model.onnx"), providers=["CPUExecutionProvider"])
    encoder = TextEncoder(model_dir / "tokenizer.json", 64)
    out = [session.run(["embedding"], encoder(texts[i : i + 64]))[0] for i in range(0, len(texts), 64)]
    return np.concatenate(out).astype(np.float32)


def faiss_index(vectors: np.ndarray):
    import faiss

    faiss.omp_set_num_threads(2)
    index = faiss.IndexHNSWFlat(vectors.shape[1], M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    index.add(vectors)

    def search(query: np.ndarray, ef: int) -> np.ndarray:
        index.hnsw.efSearch = ef
        return index.search(query.reshape(1, -1), K)[1][0]

    faiss.omp_set_num_threads(1)
    return search


def hnswlib_index(vectors: np.ndarray):
    import hnswlib

    index = hnswlib.Index(space="ip", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), ef_construction=EF_CONSTRUCTION, M=M)
    index.add_items(vectors, num_threads=2)
    index.set_num_threads(1)

    def search(query: np.ndarray, ef: int) -> np.ndarray:
        index.set_ef(max(ef, K))
        return index.knn_query(query.reshape(1, -1), k=K)[0][0]

    return search


def usearch_index(vectors: np.ndarray):
    from usearch.index import Index

    index = Index(ndim=vectors.shape[1], metric="ip", connectivity=M, expansion_add=EF_CONSTRUCTION)
    index.add(np.arange(len(vectors)), vectors, threads=2)

    def search(query: np.ndarray, ef: int) -> np.ndarray:
        index.expansion_search = ef
        return index.search(query, K, threads=1).keys

    return search


LIBRARIES = {"faiss": faiss_index, "hnswlib": hnswlib_index, "usearch": usearch_index}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True, type=Path)
    parser.add_argument("--queries", required=True, help="judgments file; its distinct queries are searched")
    parser.add_argument("--model", type=Path, default=ROOT / "model_repository" / "cpu" / "bi_encoder")
    parser.add_argument("--n-queries", type=int, default=1000)
    args = parser.parse_args()

    vectors = np.ascontiguousarray(np.load(args.index / "embeddings.npy"), dtype=np.float32)
    with open(args.queries, newline="", encoding="utf-8") as handle:
        texts = list(dict.fromkeys(row["query"] for row in csv.DictReader(handle)))[: args.n_queries]
    version = json.loads((args.index / "manifest.json").read_text())["encoder_version"]
    queries = embed_queries(texts, args.model, version)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :K]
    print(f"{len(vectors)} vectors of {vectors.shape[1]} dims, {len(queries)} queries, k={K}, M={M}, efConstruction={EF_CONSTRUCTION}")
    print(f"{'library':<9} {'build s':>8} {'ef':>5} {'recall@100':>11} {'p50 ms':>8} {'p99 ms':>8}")
    for name, make in LIBRARIES.items():
        started = time.perf_counter()
        search = make(vectors)
        build_s = time.perf_counter() - started
        for ef in (128, 256):
            latencies, recalls = [], []
            for query, truth in zip(queries, exact):
                started = time.perf_counter()
                found = search(query, ef)
                latencies.append((time.perf_counter() - started) * 1000)
                recalls.append(len(set(found.tolist()) & set(truth.tolist())) / K)
            print(f"{name:<9} {build_s:8.1f} {ef:5d} {np.mean(recalls):11.4f} "
                  f"{percentile(latencies, 50):8.3f} {percentile(latencies, 99):8.3f}")


if __name__ == "__main__":
    main()
