"""Shared fixtures for the orchestrator's unit tests."""

from __future__ import annotations

import numpy as np
import pytest

from core.catalog import Product
from orchestrator.index import CatalogIndex
from orchestrator.retrieval import DenseIndex, LexicalIndex


@pytest.fixture(scope="session")
def make_index():
    """Builds a tiny in-memory CatalogIndex over the given products: real BM25, seeded random unit embeddings."""

    def build(products: list[Product], catalog_sha256: str = "0" * 64) -> CatalogIndex:
        rng = np.random.default_rng(0)

        def unit_vectors(dim: int) -> np.ndarray:
            embeddings = rng.standard_normal((len(products), dim)).astype(np.float32)
            return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)

        return CatalogIndex(
            products=list(products),
            lexical=LexicalIndex.build([product.search_text() for product in products]),
            dense=DenseIndex.build(unit_vectors(384)),
            multilingual=DenseIndex.build(unit_vectors(512)),
            intent=None,
            manifest={"catalog_sha256": catalog_sha256, "encoder_version": "1", "multilingual_encoder_version": "1"},
        )

    return build
