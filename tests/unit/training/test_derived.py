"""training.derived: judged queries from a catalog's categories, with near misses from the same department."""

import csv

import pytest

from core.errors import ShoprankError
from training.derived import Item, derive, derive_source, read_flipkart


def items() -> list[Item]:
    return ([Item(f"y{n}", f"yogurt {n}", "yogurt", "dairy") for n in range(4)]
            + [Item(f"m{n}", f"milk {n}", "milk", "dairy") for n in range(3)]
            + [Item("c0", "chips", "chips", "snacks"), Item("c1", "more chips", "chips", "snacks")]
            + [Item("o0", "thing", "other", "dairy"), Item("o1", "thing 2", "other", "dairy")])


def test_a_category_is_a_query_with_its_products_relevant_and_near_misses_from_its_department():
    judgments = derive(items(), per_query=3)
    assert "other" not in judgments  # names no kind of product
    assert "chips" not in judgments  # the only category of its department: no near miss
    yogurt = judgments["yogurt"]
    relevant = {pid for pid, gain in yogurt.items() if gain == 1.0}
    misses = {pid for pid, gain in yogurt.items() if gain == 0.0}
    assert len(relevant) == 3 and relevant <= {f"y{n}" for n in range(4)}
    assert len(misses) == 3 and misses <= {"m0", "m1", "m2", "o0", "o1"}
    assert derive(items(), per_query=3) == judgments  # seeded


def test_the_derived_catalog_holds_the_judged_products_filed_under_their_department(tmp_path):
    summary = derive_source("instacart", _instacart(tmp_path), tmp_path / "out", per_query=2)
    with open(summary["judgments"], newline="") as handle:
        judged = list(csv.DictReader(handle))
    assert {row["query"] for row in judged} == {"yogurt", "milk"} and summary["queries"] == 2
    with open(summary["catalog"], newline="") as handle:
        rows = {row["product_id"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {row["product_id"] for row in judged} and summary["products"] == len(rows)
    assert all(row["category"] == "dairy" for row in rows.values())  # never the aisle the query names


def _instacart(tmp_path):
    source = tmp_path / "instacart"
    source.mkdir()
    with (source / "catalog.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["product_id", "title", "category", "department"])
        for item in items():
            writer.writerow([item.product_id, item.title, item.category, item.department])
    return source


def test_flipkart_queries_are_third_level_categories(tmp_path):
    (tmp_path / "product.csv").write_text(
        "pid,product_name,product_category_tree,description,brand\n"
        "p1,aw bellies,\"['footwear >> womens footwear >> ballerinas >> aw bellies']\",red shoes,aw\n"
        "p2,short,\"['watches']\",,\n"
        "p3,broken,\"['unclosed\",,\n"
        "p4,mug,\"['kitchen', 'coffee mugs', 'akup mugs', 'mug 1']\",,\n")
    upstream, sample = read_flipkart(tmp_path)
    assert (upstream.product_id, upstream.category, upstream.department, upstream.brand) == (
        "p1", "ballerinas", "footwear", "aw")
    assert (sample.category, sample.department) == ("akup mugs", "kitchen")


def test_missing_source_files_and_unknown_sources_are_clear_errors(tmp_path):
    with pytest.raises(ShoprankError, match="not found"):
        derive_source("instacart", tmp_path, tmp_path / "out")
    with pytest.raises(ShoprankError, match="source must be one of"):
        derive_source("wands", tmp_path, tmp_path / "out")
    (tmp_path / "catalog.csv").write_text("product_id,title\n1,x\n")
    with pytest.raises(ShoprankError, match="lacks the column"):
        derive_source("instacart", tmp_path, tmp_path / "out")
