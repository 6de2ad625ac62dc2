"""What several commands share: the catalog's options, and the service harness run with a command's options."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from orchestrator.harness import Adjust, run_on_catalog, settings_from

T = TypeVar("T")


def on_catalog(args: argparse.Namespace, catalog: Path, work: Callable[..., Awaitable[T]],
               index_dir: Path | None = None, adjust: Adjust | None = None, shop: str | None = None) -> T:
    """`work(stub)` against a service on the catalog (orchestrator.harness.run_on_catalog), with the command's
    settings, its --skip-untitled, its --index where `index_dir` is not given, and its --shop where `shop` is not
    given ("": the catalog folder's name)."""
    given = getattr(args, "index", None)
    if index_dir is None and given:
        index_dir = Path(given)
    settings = settings_from(args) if shop is None else settings_from(args, shop=shop or None)
    return run_on_catalog(settings, catalog, work, index_dir, adjust, getattr(args, "skip_untitled", False))


def catalog_options(sub: argparse.ArgumentParser) -> None:
    """The options of every command that reads a catalog file."""
    sub.add_argument("--shop", help="the shop the catalog belongs to: its name keys what was learned for it (its "
                                    "combination weights), whatever the catalog's content (default: SHOPRANK_SHOP, "
                                    "else the catalog's folder name, e.g. demo for data/demo/catalog.csv)")
    sub.add_argument("--skip-untitled", action="store_true",
                     help="leave out products with an empty title (with a warning) instead of rejecting the catalog")
