"""The two retrievers over a catalog: BM25 on analyzed text, and cosine similarity of bi-encoder embeddings.

Both answer the same two questions: "score every product" (lexical) or "the top k" (dense, through an
HNSW graph), and "score these rows" (for filtered searches and given candidates, where exact is cheap).
"""

from __future__ import annotations

from pathlib import Path

import bm25s
import faiss
import numpy as np

from core.analysis import analyze

# FAISS, hnswlib and usearch measured alike on the Home Depot catalog's 47,742 embeddings
# (benchmarks/ann_libraries.py: recall@100 0.989-0.990 at ef 256, p50 0.62-0.73 ms a query). FAISS is kept
# for its upkeep and its exact, IVF-PQ and GPU indexes behind the same API; efSearch 256 buys recall 0.99.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 256


class LexicalIndex:
    """Okapi BM25 (Lucene's variant, k1=1.2, b=0.75) over `core.analysis` terms."""

    def __init__(self, bm25: bm25s.BM25) -> None:
        self._bm25 = bm25

    @classmethod
    def build(cls, texts: list[str]) -> "LexicalIndex":
        bm25 = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
        # An empty document still needs one term, or bm25s drops it and the rows shift.
        bm25.index([analyze(text) or ["\u2205"] for text in texts], show_progress=False)
        return cls(bm25)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every product for the query, in catalog order (0 where no term matches)."""
        terms = [term for term in analyze(query) if term in self._bm25.vocab_dict]
        if not terms:
            return np.zeros(self._bm25.scores["num_docs"], dtype=np.float32)
        return self._bm25.get_scores(terms)

    def save(self, directory: Path) -> None:
        self._bm25.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path) -> "LexicalIndex":
        return cls(bm25s.BM25.load(str(directory), show_progress=False, verbosity=0))


class DenseIndex:
    """L2-normalized embeddings with a FAISS HNSW graph on inner product (= cosine)."""

    def __init__(self, embeddings: np.ndarray, graph: faiss.Index) -> None:
        self.embeddings = embeddings
        self._graph = graph
        self._graph.hnsw.efSearch = HNSW_EF_SEARCH

    @classmethod
    def build(cls, embeddings: np.ndarray) -> "DenseIndex":
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        graph = faiss.IndexHNSWFlat(embeddings.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        graph.add(embeddings)
        return cls(embeddings, graph)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top k: (rows, cosines), best first."""
        k = min(k, len(self.embeddings))
        cosines, rows = self._graph.search(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), k)
        keep = rows[0] >= 0
        return rows[0][keep].astype(np.int64), cosines[0][keep]

    def scores(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact cosines of the given rows."""
        return self.embeddings[rows] @ query.astype(np.float32)

    def save(self, directory: Path) -> None:
        np.save(directory / "embeddings.npy", self.embeddings)
        faiss.write_index(self._graph, str(directory / "hnsw.faiss"))

    @classmethod
    def load(cls, directory: Path) -> "DenseIndex":
        return cls(np.load(directory / "embeddings.npy"), faiss.read_index(str(directory / "hnsw.faiss")))


def top_rows(rows: np.ndarray, row_scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (rows, scores), highest score first; ties keep catalog order, also at the cut."""
    if k < len(rows):
        kth_best = -np.partition(-row_scores, k - 1)[k - 1]
        keep = row_scores >= kth_best  # everything tied with the k-th, sorted below, then cut
        rows, row_scores = rows[keep], row_scores[keep]
    order = np.lexsort((rows, -row_scores))[:k]
    return rows[order], row_scores[order]
