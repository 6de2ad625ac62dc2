"""The options and loading that the benchmarks running judged queries through the service share: which catalog,
judgments, split and model repository."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.catalog import load_catalog
from core.judgments import load_judgments
from core.splits import select

ROOT = Path(__file__).resolve().parents[1]
HD = ROOT.parent / "shared" / "data" / "home-depot-product-search-relevance"


def add_options(parser: argparse.ArgumentParser) -> None:
    """--catalog, --judgments (Home Depot's by default), --split (dev), --max-queries, --model-repository."""
    parser.add_argument("--catalog", type=Path, default=HD / "catalog.csv")
    parser.add_argument("--judgments", type=Path, default=HD / "judgments.csv")
    parser.add_argument("--split", choices=("train", "dev", "test"), default="dev")
    parser.add_argument("--max-queries", type=int, help="only the first N queries of the split")
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository" / "cpu")


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with the parser's usage error when the model repository is missing."""
    if not args.model_repository.is_dir():
        parser.error(f"no model repository at {args.model_repository}")


def load(args: argparse.Namespace) -> tuple[dict[str, dict[str, float]], set[str]]:
    """(the split's judged queries, at most --max-queries of them; the catalog's product ids)."""
    judgments = select(load_judgments(args.judgments), args.split)
    if args.max_queries:
        judgments = dict(list(judgments.items())[: args.max_queries])
    return judgments, {product.product_id for product in load_catalog(args.catalog)}
