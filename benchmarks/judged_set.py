"""The options and loading that the benchmarks running judged queries through the service share: which catalog,
judgments, split and model repository."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.catalog import load_catalog, shop_of
from core.judgments import load_judgments
from core.splits import select

ROOT = Path(__file__).resolve().parents[1]
HD = ROOT.parent / "shared" / "data" / "home-depot-product-search-relevance"
HD_SHOP = "home-depot"


def add_options(parser: argparse.ArgumentParser) -> None:
    """--catalog, --judgments (Home Depot's by default), --shop, --split (dev), --max-queries, --model-repository."""
    parser.add_argument("--catalog", type=Path, default=HD / "catalog.csv")
    shop_option(parser)
    parser.add_argument("--judgments", type=Path, default=HD / "judgments.csv")
    parser.add_argument("--split", choices=("train", "dev", "test", "all"), default="dev")
    parser.add_argument("--max-queries", type=int, help="only the first N queries of the split")
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository" / "cpu")


def shop_option(parser: argparse.ArgumentParser) -> None:
    """--shop: the catalog's shop (default: home-depot for Home Depot's catalog, else the catalog's folder name)."""
    parser.add_argument("--shop", help=f"the catalog's shop, whose own weights serve (default: {HD_SHOP} for Home "
                                       "Depot's catalog, else the catalog's folder name)")


def shop_of_args(args: argparse.Namespace) -> str:
    """The shop --shop names, or the default for --catalog."""
    return shop_of(args.catalog, args.shop or (HD_SHOP if Path(args.catalog).resolve() == HD / "catalog.csv" else ""))


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with the parser's usage error when the model repository is missing."""
    if not args.model_repository.is_dir():
        parser.error(f"no model repository at {args.model_repository}")


def load(args: argparse.Namespace) -> tuple[dict[str, dict[str, float]], set[str]]:
    """(the split's judged queries, at most --max-queries of them; the catalog's product ids)."""
    judgments = select(load_judgments(args.judgments), None if args.split == "all" else args.split)
    if args.max_queries:
        judgments = dict(list(judgments.items())[: args.max_queries])
    return judgments, {product.product_id for product in load_catalog(args.catalog)}
