"""What personalization adds to a search: profile building, the feature matrix, and the learned blend.

Usage:
    .venv/bin/python benchmarks/blend_cost.py [--runs 2000] [--model models/blend]

Prints p50/p99 in milliseconds, one thread of this process, of: building a profile from 300 and 1,000 events
(5,000-product catalog, 384-dimensional embeddings), the feature matrix of 100 candidates, and BlendModel on 100
candidates: score() (final scores and contributions), predict() (the model's score alone), and, for a LightGBM
model, LightGBM's own pred_contrib for reference. The model is the one in --model when it holds a manifest,
else one fit here on synthetic searches in a temporary directory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.catalog import Product  # noqa: E402
from core.personal_blend import BLEND_FEATURES  # noqa: E402
from orchestrator.personalization.blend import BlendModel  # noqa: E402
from orchestrator.personalization.events import Event  # noqa: E402
from orchestrator.personalization.profile import UserProfile, features  # noqa: E402
from orchestrator.personalization.store_interface import ProductFigures  # noqa: E402
from training.blend_fit import QueryGroup, fit  # noqa: E402

DAY = 86400.0
NOW = 1_700_000_000.0


def timed(function: Callable[[], object], runs: int) -> tuple[float, float]:
    """p50 and p99 of function() in milliseconds, after a short warm-up."""
    for _ in range(min(50, runs)):
        function()
    times = np.empty(runs)
    for run in range(runs):
        start = time.perf_counter()
        function()
        times[run] = time.perf_counter() - start
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def synthetic_model(directory: Path) -> BlendModel:
    """A blend fit on synthetic searches whose relevant products are bought ones, relevant ones and due ones."""
    rng = np.random.default_rng(0)
    column = {name: index for index, name in enumerate(BLEND_FEATURES)}
    groups = []
    for user in range(300):
        for search in range(3):
            X = rng.random((50, len(BLEND_FEATURES))).astype(np.float32)
            X[:, column["user_purchases"]] = rng.poisson(0.5, 50)
            X[:, column["due_ratio"]] = rng.random(50) * 3
            logit = (2 * X[:, column["user_purchases"]] + 2 * X[:, column["relevance"]]
                     - 3 * np.abs(X[:, column["due_ratio"]] - 1) - 2)
            labels = (rng.random(50) < 1 / (1 + np.exp(-logit))).astype(np.float32)
            groups.append(QueryGroup(f"u{user}:{search}", f"u{user}", X, labels))
    fit(groups, directory, log=lambda message: None, threads=1)
    return BlendModel.load(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "blend")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    catalog = {f"p{i}": Product(f"p{i}", f"product {i}", category=f"c{i % 120}", department=f"d{i % 20}",
                                brand=f"b{i % 300}" if i % 3 else "")
               for i in range(5000)}
    ids = list(catalog)
    embeddings = rng.standard_normal((len(ids), 384)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    row = {product_id: index for index, product_id in enumerate(ids)}

    def embedding_of(product_id: str) -> np.ndarray | None:
        return embeddings[row[product_id]] if product_id in row else None

    def history(count: int) -> list[Event]:
        days = np.sort(rng.integers(0, 365, count))[::-1]
        kinds = rng.choice(["view", "click", "cart", "purchase"], count, p=[0.4, 0.3, 0.1, 0.2])
        favourites = rng.choice(ids, 60)
        return [Event(str(i), "u", str(rng.choice(favourites)), str(kind), NOW - day * DAY)
                for i, (day, kind) in enumerate(zip(days, kinds))]

    results = {}
    for count in (300, 1000):
        events = history(count)
        results[f"profile from {count} events"] = timed(
            lambda events=events: UserProfile.from_events(events, NOW, embedding_of, catalog.get), args.runs)

    profile = UserProfile.from_events(history(1000), NOW, embedding_of, catalog.get)
    candidates = [catalog[product_id] for product_id in rng.choice(ids[:2000], 100, replace=False)]
    candidate_rows = embeddings[[row[product.product_id] for product in candidates]]
    stats = {product_id: ProductFigures(purchases=float(rng.integers(0, 500)), reorders=int(rng.integers(0, 100)))
             for product_id in ids}
    category_purchases = {f"c{i}": 5000.0 for i in range(120)}
    relevance = np.sort(rng.random(100).astype(np.float32))[::-1]
    ranks = np.arange(1, 101, dtype=np.float64)

    def matrix() -> np.ndarray:
        return features(profile, NOW, candidates, candidate_rows, stats, category_purchases, relevance, ranks)

    results["features, 100 candidates"] = timed(matrix, args.runs)

    with tempfile.TemporaryDirectory() as scratch:
        if (args.model / "manifest.json").is_file():
            model, source = BlendModel.load(args.model), str(args.model)
        else:
            model, source = synthetic_model(Path(scratch)), "fit here on synthetic searches"
    X = matrix()
    results["blend score(), 100 candidates"] = timed(lambda: model.score(X, {"preference": 0.5}), args.runs)
    results["blend predict(), 100 candidates"] = timed(lambda: model.predict(X), args.runs)
    if model.kind == "lightgbm":
        results["LightGBM pred_contrib (reference)"] = timed(
            lambda: model._booster.predict(X, pred_contrib=True, num_threads=1), max(20, args.runs // 20))

    print(f"blend model: {model.kind} v{model.version} ({source})")
    print(f"{'':<36} {'p50 ms':>8} {'p99 ms':>8}")
    for name, (p50, p99) in results.items():
        print(f"{name:<36} {p50:>8.3f} {p99:>8.3f}")


if __name__ == "__main__":
    main()
