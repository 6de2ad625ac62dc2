"""orchestrator.retrieval: BM25 over analyzed text, the dense index (exact and HNSW), and top_rows."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.retrieval import DenseIndex, LexicalIndex, top_rows

TEXTS = [
    "Cordless Drill 20V",  # 0
    "Hammer | Stanley",  # 1
    "Drill bits set for concrete",  # 2
    "",  # 3: empty document keeps its row
    "手机 支架",  # 4
    "LED light bulbs",  # 5
]


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# --- LexicalIndex -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lexical() -> LexicalIndex:
    return LexicalIndex.build(TEXTS)


def test_scores_one_per_product_in_catalog_order(lexical):
    scores = lexical.scores("drill")
    assert scores.shape == (len(TEXTS),)
    assert set(np.flatnonzero(scores > 0).tolist()) == {0, 2}
    assert scores.dtype.kind == "f"
    assert (scores >= 0).all()


def test_shorter_document_scores_higher_for_same_term():
    lexical = LexicalIndex.build(["drill", "drill saw hammer level"])
    scores = lexical.scores("drill")
    assert scores[0] > scores[1] > 0


def test_plural_query_matches_singular_title(lexical):
    assert np.array_equal(np.flatnonzero(lexical.scores("drills") > 0), np.flatnonzero(lexical.scores("drill") > 0))


def test_unknown_terms_give_all_zeros(lexical):
    scores = lexical.scores("zzzz qqqq")
    assert scores.shape == (len(TEXTS),)
    assert not scores.any()


def test_stopword_only_query_gives_zeros(lexical):
    assert not lexical.scores("the for").any()


def test_known_and_unknown_terms_mixed(lexical):
    assert np.allclose(lexical.scores("hammer zzzz"), lexical.scores("hammer"))
    assert np.flatnonzero(lexical.scores("hammer") > 0).tolist() == [1]


def test_rows_after_empty_document_are_not_shifted(lexical):
    assert np.flatnonzero(lexical.scores("bulbs") > 0).tolist() == [5]
    assert np.flatnonzero(lexical.scores("手机") > 0).tolist() == [4]


def test_two_matching_terms_score_higher(lexical):
    scores = lexical.scores("drill concrete")
    assert np.argmax(scores) == 2
    assert scores[2] > lexical.scores("drill")[2]


def test_mixed_token_query_matches_split_piece(lexical):
    # "20v" in the title also indexed as "20" and "v"
    assert np.flatnonzero(lexical.scores("20") > 0).tolist() == [0]


def test_lexical_save_load_round_trip(lexical, tmp_path):
    lexical.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path)
    for query in ("drill", "hammer", "bulbs", "zzzz"):
        assert np.allclose(loaded.scores(query), lexical.scores(query))


# --- DenseIndex -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dense_data():
    rng = np.random.default_rng(1234)
    embeddings = unit_vectors(rng, 200, 32)
    return embeddings, DenseIndex.build(embeddings), unit_vectors(rng, 25, 32)


def test_build_keeps_float32_embeddings(dense_data):
    embeddings, index, _ = dense_data
    assert index.embeddings.dtype == np.float32
    assert index.embeddings.shape == (200, 32)
    assert np.allclose(index.embeddings, embeddings)


def test_exact_scores_are_cosines(dense_data):
    embeddings, index, queries = dense_data
    rows = np.array([5, 0, 199, 5])
    scores = index.scores(queries[0], rows)
    assert scores.shape == (4,)
    assert np.allclose(scores, embeddings[rows] @ queries[0], atol=1e-6)
    assert scores[0] == pytest.approx(scores[3])


def test_hnsw_top1_matches_exact(dense_data):
    embeddings, index, queries = dense_data
    for query in queries:
        exact = int(np.argmax(embeddings @ query))
        rows, cosines = index.search(query, 1)
        assert rows.tolist() == [exact]
        assert cosines[0] == pytest.approx(float(embeddings[exact] @ query), abs=1e-5)


def test_search_returns_best_first_and_stored_vector_finds_itself(dense_data):
    embeddings, index, _ = dense_data
    rows, cosines = index.search(embeddings[17], 10)
    assert rows.dtype == np.int64
    assert len(rows) == 10
    assert rows[0] == 17
    assert cosines[0] == pytest.approx(1.0, abs=1e-5)
    assert np.all(np.diff(cosines) <= 1e-6)
    assert np.allclose(cosines, index.scores(embeddings[17], rows), atol=1e-5)


def test_search_k_larger_than_catalog():
    rng = np.random.default_rng(7)
    embeddings = unit_vectors(rng, 5, 8)
    index = DenseIndex.build(embeddings)
    rows, cosines = index.search(embeddings[2], 50)
    assert sorted(rows.tolist()) == [0, 1, 2, 3, 4]
    assert len(cosines) == 5
    assert rows[0] == 2


def test_dense_save_load_round_trip(dense_data, tmp_path):
    embeddings, index, queries = dense_data
    index.save(tmp_path)
    loaded = DenseIndex.load(tmp_path)
    assert np.array_equal(loaded.embeddings, index.embeddings)
    assert loaded.search(queries[0], 5)[0].tolist() == index.search(queries[0], 5)[0].tolist()


# --- top_rows ---------------------------------------------------------------------------------------------------------


def test_top_rows_best_first():
    rows = np.array([10, 20, 30, 40, 50])
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    top, top_scores = top_rows(rows, scores, 3)
    assert top.tolist() == [20, 40, 30]
    assert top_scores.tolist() == [0.9, 0.7, 0.5]


def test_top_rows_k_at_least_len_sorts_everything():
    rows = np.array([3, 1, 2])
    scores = np.array([0.5, 0.5, 0.9])
    for k in (3, 10):
        top, top_scores = top_rows(rows, scores, k)
        assert top.tolist() == [2, 1, 3]
        assert top_scores.tolist() == [0.9, 0.5, 0.5]


def test_top_rows_ties_keep_catalog_order_within_result():
    rows = np.array([7, 3, 5, 1])
    scores = np.array([1.0, 1.0, 2.0, 1.0])
    top, _ = top_rows(rows, scores, 4)
    assert top.tolist() == [5, 1, 3, 7]


def test_top_rows_empty():
    top, top_scores = top_rows(np.zeros(0, dtype=np.int64), np.zeros(0), 5)
    assert top.shape == (0,) and top_scores.shape == (0,)


def test_top_rows_ties_at_the_cut_keep_catalog_order():
    # Documented: "ties keep catalog order". With ties straddling the k-th place, the lower rows must win.
    scores = np.array([2.0, 2.0, 2.0, 1.0, 2.0, 2.0, 1.0, 2.0, 2.0, 2.0, 1.0, 2.0, 0.0, 1.0, 2.0, 2.0, 1.0, 1.0, 0.0, 1.0])
    rows = np.arange(len(scores))
    top, _ = top_rows(rows, scores, 10)
    assert top.tolist() == np.lexsort((rows, -scores))[:10].tolist()  # [0, 1, 2, 4, 5, 7, 8, 9, 11, 14]
