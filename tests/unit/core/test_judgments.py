"""core.judgments.load_judgments: graded judgments in CSV or JSON Lines."""

from __future__ import annotations

import json

import pytest

from core.errors import DataError
from core.judgments import load_judgments


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_csv_judgments_grouped_by_query_in_file_order(tmp_path):
    path = write(
        tmp_path,
        "j.csv",
        "query,product_id,gain\ncordless drill,p1,3\nhammer,p9,1\ncordless drill,p2,0\n",
    )
    judgments = load_judgments(path)
    assert judgments == {"cordless drill": {"p1": 3.0, "p2": 0.0}, "hammer": {"p9": 1.0}}
    assert list(judgments) == ["cordless drill", "hammer"]
    assert isinstance(judgments["hammer"]["p9"], float)


def test_values_stripped_and_extra_columns_ignored(tmp_path):
    path = write(tmp_path, "j.csv", "query,product_id,gain,annotator\n  drill , p1 , 2.5 ,bob\n")
    assert load_judgments(path) == {"drill": {"p1": 2.5}}


def test_jsonl_judgments_with_numeric_ids(tmp_path):
    rows = [
        {"query": "drill", "product_id": 101, "gain": 2},
        {"query": "drill", "product_id": "p2", "gain": 0.5},
        {"query": "手机", "product_id": "p3", "gain": 1},
    ]
    path = write(tmp_path, "j.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    assert load_judgments(path) == {"drill": {"101": 2.0, "p2": 0.5}, "手机": {"p3": 1.0}}


def test_jsonl_float_product_id_matches_catalog_id(tmp_path):
    # The catalog reads product_id 104.0 as "104"; judgments must name the same product the same way.
    path = write(tmp_path, "j.jsonl", json.dumps({"query": "q", "product_id": 104.0, "gain": 1}) + "\n")
    assert load_judgments(path) == {"q": {"104": 1.0}}


def test_jsonl_null_query_is_empty(tmp_path):
    path = write(tmp_path, "j.jsonl", json.dumps({"query": None, "product_id": "p1", "gain": 1}) + "\n")
    with pytest.raises(DataError, match=r"line 1: empty query or product_id"):
        load_judgments(path)


def test_bom_csv(tmp_path):
    path = tmp_path / "j.csv"
    path.write_bytes(b"\xef\xbb\xbfquery,product_id,gain\nq,p1,1\n")
    assert load_judgments(path) == {"q": {"p1": 1.0}}


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="judgments .* no such file"):
        load_judgments(tmp_path / "missing.csv")


def test_missing_gain_column(tmp_path):
    with pytest.raises(DataError) as error:
        load_judgments(write(tmp_path, "j.csv", "query,product_id\nq,p1\n"))
    assert "missing required column(s) gain" in str(error.value)


def test_empty_query_names_line(tmp_path):
    with pytest.raises(DataError, match=r"line 3: empty query or product_id"):
        load_judgments(write(tmp_path, "j.csv", "query,product_id,gain\nq,p1,1\n  ,p2,1\n"))


def test_empty_product_id_names_line(tmp_path):
    with pytest.raises(DataError, match=r"line 2: empty query or product_id"):
        load_judgments(write(tmp_path, "j.csv", "query,product_id,gain\nq,,1\n"))


@pytest.mark.parametrize("gain", ["high", ""])
def test_non_numeric_gain_names_line(tmp_path, gain):
    with pytest.raises(DataError, match=rf"line 2: gain '{gain}' is not a number"):
        load_judgments(write(tmp_path, "j.csv", f"query,product_id,gain\nq,p1,{gain}\n"))


def test_null_gain_in_jsonl(tmp_path):
    path = write(tmp_path, "j.jsonl", json.dumps({"query": "q", "product_id": "p1", "gain": None}) + "\n")
    with pytest.raises(DataError, match="line 1: gain None is not a number"):
        load_judgments(path)


@pytest.mark.parametrize("gain", ["-1", "nan", "inf"])
def test_negative_or_non_finite_gain(tmp_path, gain):
    with pytest.raises(DataError, match=r"line 2: gain .* must be a number >= 0"):
        load_judgments(write(tmp_path, "j.csv", f"query,product_id,gain\nq,p1,{gain}\n"))


def test_no_rows(tmp_path):
    with pytest.raises(DataError, match="no rows"):
        load_judgments(write(tmp_path, "j.csv", "query,product_id,gain\n"))


def test_broken_utf8_names_line(tmp_path):
    path = tmp_path / "j.csv"
    path.write_bytes(b"query,product_id,gain\nq,p1,1\n\xff,p2,1\n")
    with pytest.raises(DataError, match="judgments .* line 3"):
        load_judgments(path)
