"""cli.catalog: how a catalog file becomes the API's records, what `catalog get` prints, and refusals before any
call."""

from __future__ import annotations

import json

from cli.catalog import file_records, record_json
from cli.main import main
from core._proto.shoprank.v1 import admin_pb2


def test_a_file_becomes_records_with_its_stock_column_as_the_stock_and_bad_rows_named_by_line(tmp_path):
    path = tmp_path / "changes.csv"
    path.write_text("product_id,title,price,stock,colour\n"
                    "p1,Drill,9.5,4,red\n"
                    "p2,Saw,cheap,1,\n"
                    "p3,Hammer,,,\n", encoding="utf-8")
    [(line1, drill), (line2, why), (line3, hammer)] = list(file_records(path))
    assert (line1, drill.product_id, drill.price, drill.stock) == (2, "p1", 9.5, 4)
    assert dict(drill.attributes) == {"colour": "red"}  # the stock column is the stock, not an attribute
    assert (line2, why) == (3, "price 'cheap' of product 'p2' is not a number")
    assert (line3, hammer.HasField("price"), hammer.stock) == (4, False, 1)  # no stock given: in stock


def test_json_lines_are_read_too(tmp_path):
    path = tmp_path / "changes.jsonl"
    path.write_text(json.dumps({"product_id": 7, "title": "Lamp", "price": 20, "stock": 0}) + "\n", encoding="utf-8")
    [(line, lamp)] = list(file_records(path))
    assert (line, lamp.product_id, lamp.price, lamp.stock) == (1, "7", 20.0, 0)


def test_get_prints_a_null_price_when_there_is_none():
    record = admin_pb2.ProductRecord(product_id="p1", title="Drill", stock=0, attributes={"colour": "red"})
    assert record_json(record) == {"product_id": "p1", "title": "Drill", "description": "", "brand": "",
                                   "category": "", "department": "", "price": None, "stock": 0, "image_url": "",
                                   "attributes": {"colour": "red"}}


def test_catalog_commands_need_the_admin_token(monkeypatch, capsys):
    monkeypatch.delenv("SHOPRANK_ADMIN_TOKEN", raising=False)
    assert main(["catalog", "get", "p1"]) == 2
    assert capsys.readouterr().err.strip().startswith("shoprank: error: set SHOPRANK_ADMIN_TOKEN")


def test_a_missing_file_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SHOPRANK_ADMIN_TOKEN", "t")
    assert main(["catalog", "upsert", str(tmp_path / "none.csv"), "--admin", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err
