"""Judged queries derived from catalogs that have categories but no queries: a way to measure a shop shoprank was
not fit on.

A category name is the query; products filed under it are relevant (gain 1), and as many products of other
categories of the same department are not (gain 0): near misses, not random ones. The category is removed from
the derived catalog's products (the department stays), or the query would match it word for word.

- instacart (catalog.csv: product_id, title, category = aisle, department): one query per aisle;
- flipkart (product.csv of the Flipkart sample: product_category_tree a list [top, second, third, ...], or
  upstream's ["top >> second >> third >> ..."]): one
  query per third-level category, its negatives from other third-level categories under the same top.

These are not shoppers' queries: they measure whether a ranking carries to other products and words, not its
absolute quality. `shoprank derive` writes catalog.csv (the judged products only: the set is for `shoprank eval
rerank`, and a search task would need every relevant product judged) and judgments.csv (FORMATS.md).
"""

from __future__ import annotations

import ast
import csv
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from core.errors import ShoprankError

SOURCES = ("instacart", "flipkart")
# Aisles that name no kind of product.
VAGUE_CATEGORIES = {"missing", "other", "more household", "bulk grains rice dried goods"}


@dataclass(frozen=True)
class Item:
    product_id: str
    title: str
    category: str  # becomes the query
    department: str  # where the near misses come from; kept as the derived product's category
    description: str = ""
    brand: str = ""


def read_instacart(source: Path) -> list[Item]:
    path = Path(source) / "catalog.csv"
    rows = _read_csv(path, ("product_id", "title", "category", "department"))
    return [Item(row["product_id"], row["title"], row["category"], row["department"]) for row in rows]


def read_flipkart(source: Path) -> list[Item]:
    path = Path(source) / "product.csv"
    items = []
    for row in _read_csv(path, ("pid", "product_name", "product_category_tree")):
        try:
            tree = [part.strip() for part in ast.literal_eval(row["product_category_tree"])]
        except (ValueError, SyntaxError):
            continue
        if len(tree) == 1:  # upstream's form: one string "top >> second >> ..."; the sample's is a list
            tree = [part.strip() for part in tree[0].split(">>")]
        if len(tree) < 4:  # no third level below the top, or the third level is the product itself
            continue
        items.append(Item(row["pid"], row["product_name"], " ".join(tree[2].split()), tree[0],
                          row.get("description", ""), row.get("brand", "")))
    return items


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise ShoprankError(f"{path} not found")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in required if column not in (reader.fieldnames or [])]
        if missing:
            raise ShoprankError(f"{path} lacks the column(s) {', '.join(missing)}")
        return list(reader)


def derive(items: list[Item], per_query: int = 5, min_products: int = 2, seed: int = 0
           ) -> dict[str, dict[str, float]]:
    """query (category name) -> {product_id: gain}: up to `per_query` products of the category at gain 1 and as
    many of other categories of its department at gain 0. Categories with fewer than `min_products` products,
    or no near misses, give no query."""
    by_category: dict[str, list[Item]] = defaultdict(list)
    by_department: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_category[item.category].append(item)
        by_department[item.department].append(item)
    judgments = {}
    for category in sorted(by_category):
        members = by_category[category]
        if category.lower() in VAGUE_CATEGORIES or len(members) < min_products:
            continue
        others = [item for item in by_department[members[0].department] if item.category != category]
        if not others:
            continue
        rng = random.Random(f"{seed}:{category}")
        relevant = rng.sample(members, min(per_query, len(members)))
        misses = rng.sample(others, min(len(relevant), len(others)))
        judgments[category] = {item.product_id: 1.0 for item in relevant} | {item.product_id: 0.0 for item in misses}
    return judgments


def write(items: list[Item], judgments: dict[str, dict[str, float]], out: Path) -> tuple[Path, Path]:
    """The derived catalog (the judged products, each category replaced by its department) and judgments."""
    judged_ids = {product_id for products in judgments.values() for product_id in products}
    out.mkdir(parents=True, exist_ok=True)
    catalog, judged = out / "catalog.csv", out / "judgments.csv"
    with catalog.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["product_id", "title", "category", "brand", "description"])
        seen = set()
        for item in items:
            if item.product_id in judged_ids and item.product_id not in seen:
                seen.add(item.product_id)
                writer.writerow([item.product_id, item.title, item.department, item.brand, item.description])
    with judged.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query", "product_id", "gain"])
        for query, products in judgments.items():
            for product_id, gain in products.items():
                writer.writerow([query, product_id, gain])
    return catalog, judged


def derive_source(name: str, source: Path, out: Path, per_query: int = 5, seed: int = 0) -> dict:
    """Read a source catalog, derive its judged queries and write both into `out`; returns a summary."""
    if name not in SOURCES:
        raise ShoprankError(f"source must be one of {', '.join(SOURCES)}, not {name!r}")
    items = read_instacart(source) if name == "instacart" else read_flipkart(source)
    if not items:
        raise ShoprankError(f"no categorised products in {source}")
    judgments = derive(items, per_query=per_query, seed=seed)
    catalog, judged = write(items, judgments, Path(out))
    return {"catalog": str(catalog), "judgments": str(judged),
            "products": len({product_id for products in judgments.values() for product_id in products}),
            "queries": len(judgments), "pairs": sum(len(v) for v in judgments.values())}
