"""Query intent: which of the catalog's categories a query asks for, learned from the catalog itself.

Each category is the normalized mean of its products' multilingual embeddings (a prototype); a query's
P(category) is a softmax over its cosines to the prototypes, divided by a temperature. The catalog is the
training data (no judged queries needed), and the query's embedding lives in the same space whatever its
language. A candidate's `intent` feature is the probability the query gives to that product's category:
"手机推荐" (recommend a phone) puts most of it on Phones and little on Phone Accessories, so a phone case no
longer ties with the phones it fits.

Chosen on the train and dev queries of data/demo/multilingual.csv (their wanted category: that of most of their
gain-2 products), by log loss of the wanted category: prototypes at temperature 0.03 scored 0.96 (top-1
0.75), a softmax regression fit on the products 1.04 to 1.58 (top-1 0.77), and it takes no iterations, so a
catalog of 50,000 products and hundreds of categories is fit in a second.

Catalogs without categories, or with only one, get no model and no feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Categories with fewer products than this are not predicted (their products get intent 0).
MIN_PRODUCTS = 2
TEMPERATURE = 0.03
FILE = "intent.npz"


@dataclass(frozen=True)
class IntentModel:
    categories: tuple[str, ...]
    weights: np.ndarray  # [dim, categories]: the prototypes divided by the temperature
    bias: np.ndarray  # [categories]
    product_class: np.ndarray  # [products]: index into categories, -1 for products of no predicted category

    @classmethod
    def fit(cls, embeddings: np.ndarray, categories: list[str]) -> "IntentModel | None":
        """Prototypes of the categories with at least MIN_PRODUCTS products; None when fewer than two remain."""
        names, counts = np.unique([c for c in categories if c], return_counts=True)
        kept = tuple(str(name) for name, count in zip(names, counts) if count >= MIN_PRODUCTS)
        if len(kept) < 2:
            return None
        position = {name: i for i, name in enumerate(kept)}
        product_class = np.array([position.get(c, -1) for c in categories], dtype=np.int64)
        prototypes = np.zeros((len(kept), embeddings.shape[1]), dtype=np.float64)
        np.add.at(prototypes, product_class[product_class >= 0], embeddings[product_class >= 0])
        prototypes /= np.maximum(np.linalg.norm(prototypes, axis=1, keepdims=True), 1e-12)
        weights = (prototypes.T / TEMPERATURE).astype(np.float32)
        return cls(kept, weights, np.zeros(len(kept), dtype=np.float32), product_class)

    def probabilities(self, query_embedding: np.ndarray) -> np.ndarray:
        """P(category | query) over `categories`."""
        return _softmax((query_embedding.astype(np.float32) @ self.weights + self.bias)[None, :])[0]

    def feature(self, query_embedding: np.ndarray, categories: Sequence[str]) -> np.ndarray:
        """The probability the query gives each product's category (0 for products of no predicted category)."""
        probabilities = self.probabilities(query_embedding)
        position = {name: i for i, name in enumerate(self.categories)}
        classes = np.array([position.get(category, -1) for category in categories], dtype=np.int64)
        return np.where(classes >= 0, probabilities[np.maximum(classes, 0)], 0.0).astype(np.float64)

    def top(self, query_embedding: np.ndarray, k: int = 3) -> list[tuple[str, float]]:
        probabilities = self.probabilities(query_embedding)
        return [(self.categories[i], float(probabilities[i])) for i in np.argsort(-probabilities)[:k]]

    def save(self, directory: Path) -> None:
        np.savez(directory / FILE, categories=np.array(self.categories), weights=self.weights, bias=self.bias,
                 product_class=self.product_class)

    @classmethod
    def load(cls, directory: Path) -> "IntentModel | None":
        path = directory / FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            return cls(tuple(str(c) for c in data["categories"]), data["weights"], data["bias"], data["product_class"])


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
