"""Weights for shops without their own judgments, measured on a shop they were not fit on.

Usage:
    .venv/bin/python benchmarks/unseen_shop_weights.py \
        --fit ../shared/data/home-depot-product-search-relevance/catalog.csv \
              ../shared/data/home-depot-product-search-relevance/judgments.csv:dev \
        --fit data/demo/catalog.csv data/demo/judgments.csv:train \
        --shop .shoprank/derived/instacart/catalog.csv .shoprank/derived/instacart/judgments.csv \
        --shop .shoprank/derived/flipkart/catalog.csv .shoprank/derived/flipkart/judgments.csv \
        [--components FILE] [--model-repository model_repository/cpu]

A shop without its own weights gets the served default without the cross-encoder (`training/combination.py`,
UNSEEN_SHOP_RERANKER): weights fit with the cross-encoder, its weight then set to 0. This asks whether weights fit
for that path itself (`combination.fit_cheap`: around the MiniLM cosine, the cross-encoder at 0) would do better.
Each --shop is left out in turn: the weights are fit on every --fit set and every other --shop, then measured on
all of the left-out shop's queries. Every set is its judged products ranked (judged rerank, nDCG@10); the
components come from the service (`combination.collect`), and --components keeps them for the next run.

For each left-out shop, and pooled over them, it prints nDCG@10 of the served unseen-shop default, the zero-shot
MiniLM bi-encoder alone and the refit weights, with the paired bootstrap 95% interval of the refit minus each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.catalog import load_catalog  # noqa: E402
from core.judgments import load_judgments  # noqa: E402
from core.language import LATIN  # noqa: E402
from core.model_repository import versions  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.splits import select  # noqa: E402
from core.stats import paired_bootstrap  # noqa: E402
from core.weights import read_combination  # noqa: E402
from orchestrator.harness import run_on_catalog  # noqa: E402
from training import combination  # noqa: E402


def source_name(catalog: str, spec: str) -> str:
    judgments, _, split = spec.partition(":")
    return f"{judgments} ({split or 'all'}, judged products) over {catalog}"


def collect(args: argparse.Namespace, sets: list[tuple[str, str]]) -> list[combination.Components]:
    """Every set's components, from --components where it holds them, else from a service on the set's catalog."""
    cache = args.components
    data = combination.load(cache) if cache is not None and cache.is_file() else []
    for catalog, spec in sets:
        name = source_name(catalog, spec)
        if any(item.source == name for item in data):
            continue
        judgments_path, _, split = spec.partition(":")
        judgments = select(load_judgments(Path(judgments_path)), split or None)
        catalog_ids = {product.product_id for product in load_catalog(Path(catalog))}

        settings = Settings.from_env(model_repository=args.model_repository)
        data += run_on_catalog(settings, Path(catalog), lambda stub: combination.collect(
            stub, judgments, catalog_ids, source=name), adjust=combination.collect_settings)
        if cache is not None:
            combination.save(cache, data)
    # Latin queries with a relevant product: nDCG@10 is undefined without one.
    return [item for item in data if item.script == LATIN and any(gain > 0 for gain in item.gains.values())]


def per_query(data: list[combination.Components], weights: dict[str, float]) -> list[float]:
    vector = np.array([weights.get(name, 0.0) for name in combination.COMPONENTS])
    return [combination.query_ndcg(item, vector) for item in data]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit", nargs=2, action="append", default=[], metavar=("CATALOG", "JUDGMENTS[:SPLIT]"),
                        help="a set the weights are always fit on")
    parser.add_argument("--shop", nargs=2, action="append", required=True, metavar=("CATALOG", "JUDGMENTS[:SPLIT]"),
                        help="a shop left out in turn (fit on while another is left out)")
    parser.add_argument("--components", type=Path, help="collected components (JSON Lines): read, and added to")
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository" / "cpu")
    args = parser.parse_args()
    for catalog, spec in args.fit + args.shop:
        for path in (Path(catalog), Path(spec.partition(":")[0])):
            if not path.is_file():
                parser.error(f"no file {path}")
    released = versions(args.model_repository / "reranker")
    if not released:
        parser.error(f"no reranker version in {args.model_repository}")
    served = read_combination(args.model_repository / "reranker" / str(released[-1]) / "combination.json")[LATIN]
    print(f"served unseen-shop default (version {released[-1]}): {served}")

    data = collect(args, [tuple(item) for item in args.fit + args.shop])
    pooled: dict[str, list[float]] = {"default": [], "dense": [], "refit": []}
    for catalog, spec in args.shop:
        left_out = source_name(catalog, spec)
        weights = combination.fit_cheap([item for item in data if item.source != left_out])
        shop = [item for item in data if item.source == left_out]
        figures = {"default": per_query(shop, served), "dense": per_query(shop, {"dense": 1.0}),
                   "refit": per_query(shop, weights)}
        print(f"\n{left_out}: {len(shop)} queries; refit on the others: "
              f"{ {name: value for name, value in weights.items() if value} }")
        report(figures)
        for name, values in figures.items():
            pooled[name] += values
    print(f"\npooled over the left-out shops ({len(pooled['refit'])} queries)")
    report(pooled)


def report(figures: dict[str, list[float]]) -> None:
    labels = {"default": "served unseen-shop default", "dense": "zero-shot MiniLM bi-encoder alone",
              "refit": "refit without the cross-encoder"}
    for name, values in figures.items():
        line = f"  {labels[name]:36s} {np.mean(values):.4f}"
        if name != "refit":
            line += f"   refit minus it {paired_bootstrap(figures['refit'], values).text()}"
        print(line)


if __name__ == "__main__":
    main()
