"""core.catalog: loading CSV / JSON Lines catalogs and the errors that name the offending line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.catalog import Product, catalog_digest, load_catalog, product_from_row
from core.errors import DataError


def write_csv(tmp_path: Path, text: str, name: str = "catalog.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def write_jsonl(tmp_path: Path, rows: list[dict], name: str = "catalog.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


# --- CSV --------------------------------------------------------------------------------------------------------------


def test_csv_loads_known_columns_in_file_order(tmp_path):
    path = write_csv(
        tmp_path,
        "product_id,title,description,brand,category,department,price,image_url\n"
        "p1,Cordless Drill,18V drill,Bosch,Drills,Tools,99.5,http://x/1.jpg\n"
        "p2,Hammer,,Stanley,Hand Tools,Tools,,\n",
    )
    products = load_catalog(path)
    assert [p.product_id for p in products] == ["p1", "p2"]
    first = products[0]
    assert first == Product(
        product_id="p1",
        title="Cordless Drill",
        description="18V drill",
        brand="Bosch",
        category="Drills",
        department="Tools",
        price=99.5,
        image_url="http://x/1.jpg",
        attributes={},
    )
    assert products[1].price is None
    assert products[1].description == ""


def test_csv_only_required_columns(tmp_path):
    products = load_catalog(write_csv(tmp_path, "product_id,title\n1,Drill\n"))
    assert products == [Product(product_id="1", title="Drill")]


def test_csv_unknown_columns_kept_in_attributes_and_empty_ones_dropped(tmp_path):
    path = write_csv(tmp_path, "product_id,title,color,voltage\np1,Drill,red,\np2,Saw,,18V\n")
    products = load_catalog(path)
    assert products[0].attributes == {"color": "red"}
    assert products[1].attributes == {"voltage": "18V"}


def test_csv_numeric_ids_are_strings(tmp_path):
    products = load_catalog(write_csv(tmp_path, "product_id,title\n00123,Drill\n456,Saw\n"))
    assert [p.product_id for p in products] == ["00123", "456"]
    assert all(isinstance(p.product_id, str) for p in products)


def test_csv_values_and_header_are_stripped(tmp_path):
    products = load_catalog(write_csv(tmp_path, " product_id , title ,price\n  p1 ,  Drill  , 12.5 \n"))
    assert products[0].product_id == "p1"
    assert products[0].title == "Drill"
    assert products[0].price == 12.5


def test_csv_quoted_field_with_comma_and_newline(tmp_path):
    path = write_csv(tmp_path, 'product_id,title,description\np1,"Drill, cordless","line one\nline two"\n')
    product = load_catalog(path)[0]
    assert product.title == "Drill, cordless"
    assert product.description == "line one\nline two"


def test_csv_with_bom(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfproduct_id,title\np1,Drill\n")
    products = load_catalog(path)
    assert products[0].product_id == "p1"
    assert products[0].title == "Drill"


def test_csv_crlf_line_endings(tmp_path):
    path = tmp_path / "crlf.csv"
    path.write_bytes(b"product_id,title,price\r\np1,Drill,5\r\np2,Saw,6\r\n")
    products = load_catalog(path)
    assert [(p.product_id, p.title, p.price) for p in products] == [("p1", "Drill", 5.0), ("p2", "Saw", 6.0)]


def test_non_jsonl_suffix_is_read_as_csv(tmp_path):
    path = write_csv(tmp_path, "product_id,title\np1,Drill\n", name="catalog.txt")
    assert load_catalog(path)[0].title == "Drill"


# --- JSON Lines -------------------------------------------------------------------------------------------------------


def test_jsonl_loads_and_keeps_unknown_fields(tmp_path):
    path = write_jsonl(
        tmp_path,
        [
            {"product_id": "p1", "title": "Drill", "brand": "Bosch", "price": 10, "color": "blue"},
            {"product_id": "p2", "title": "Saw", "price": 7.25},
        ],
    )
    products = load_catalog(path)
    assert [p.product_id for p in products] == ["p1", "p2"]
    assert products[0].brand == "Bosch"
    assert products[0].price == 10.0
    assert products[0].attributes == {"color": "blue"}
    assert products[1].price == 7.25
    assert products[1].attributes == {}


def test_jsonl_numeric_ids_are_strings(tmp_path):
    products = load_catalog(write_jsonl(tmp_path, [{"product_id": 123, "title": "A"}, {"product_id": 7.0, "title": "B"}]))
    assert [p.product_id for p in products] == ["123", "7"]


def test_jsonl_null_optional_fields_are_empty(tmp_path):
    products = load_catalog(write_jsonl(tmp_path, [{"product_id": "p1", "title": "A", "brand": None, "price": None}]))
    assert products[0].brand == ""
    assert products[0].price is None


def test_jsonl_blank_lines_skipped_and_line_numbers_count_them(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"product_id": "p1", "title": "A"}\n\n{"product_id": "p1", "title": "B"}\n', encoding="utf-8")
    with pytest.raises(DataError) as error:
        load_catalog(path)
    assert "line 3" in str(error.value)
    assert "line 1" in str(error.value)


@pytest.mark.parametrize("suffix", [".json", ".ndjson", ".JSONL"])
def test_other_json_lines_suffixes(tmp_path, suffix):
    path = write_jsonl(tmp_path, [{"product_id": "p1", "title": "A"}], name="c" + suffix)
    assert load_catalog(path)[0].title == "A"


def test_jsonl_with_bom(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"product_id": "p1", "title": "A"}\n')
    assert load_catalog(path)[0].product_id == "p1"


def test_jsonl_title_with_unicode_line_separator(tmp_path):
    # json.dumps(ensure_ascii=False) writes U+2028 raw: it is valid inside a JSON string and the line is one record.
    path = write_jsonl(tmp_path, [{"product_id": "p1", "title": "Drill\u2028Set"}, {"product_id": "p2", "title": "Saw"}])
    products = load_catalog(path)
    assert [p.title for p in products] == ["Drill\u2028Set", "Saw"]


def test_jsonl_invalid_json_names_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"product_id": "p1", "title": "A"}\n{not json\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: not valid JSON"):
        load_catalog(path)


def test_jsonl_non_object_names_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"product_id": "p1", "title": "A"}\n["p2", "B"]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: expected a JSON object"):
        load_catalog(path)


def test_jsonl_missing_required_field_names_line_and_field(tmp_path):
    path = write_jsonl(tmp_path, [{"product_id": "p1", "title": "A"}, {"product_id": "p2"}])
    with pytest.raises(DataError) as error:
        load_catalog(path)
    assert "line 2" in str(error.value)
    assert "title" in str(error.value)


# --- errors -----------------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as error:
        load_catalog(path)
    assert str(path) in str(error.value)
    assert "no such file" in str(error.value)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_catalog(tmp_path)


@pytest.mark.parametrize("column", ["product_id", "title"])
def test_csv_missing_required_column_names_it(tmp_path, column):
    other = "title" if column == "product_id" else "product_id"
    path = write_csv(tmp_path, f"{other},brand\nx,y\n")
    with pytest.raises(DataError) as error:
        load_catalog(path)
    message = str(error.value)
    assert "missing required column" in message
    assert f"column(s) {column}" in message


def test_empty_csv_file(tmp_path):
    with pytest.raises(DataError, match="no header"):
        load_catalog(write_csv(tmp_path, ""))


def test_header_only_csv_has_no_products(tmp_path):
    with pytest.raises(DataError, match="no products"):
        load_catalog(write_csv(tmp_path, "product_id,title\n"))


def test_broken_utf8_names_line_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"product_id,title\np1,Drill\np2,Sa\xffw\n")
    with pytest.raises(DataError) as error:
        load_catalog(path)
    message = str(error.value)
    assert "line 3" in message
    assert "column 6" in message
    assert "0xff" in message


def test_broken_utf8_in_jsonl_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"product_id": "p1", "title": "A"}\n\xff\n')
    with pytest.raises(DataError, match="line 2"):
        load_catalog(path)


def test_duplicate_id_names_both_lines(tmp_path):
    path = write_csv(tmp_path, "product_id,title\np1,Drill\np2,Saw\np1,Hammer\n")
    with pytest.raises(DataError) as error:
        load_catalog(path)
    message = str(error.value)
    assert "duplicate" in message
    assert "'p1'" in message
    assert "line 4" in message
    assert "line 2" in message


def test_duplicate_id_after_stripping(tmp_path):
    with pytest.raises(DataError, match="duplicate"):
        load_catalog(write_csv(tmp_path, "product_id,title\np1,Drill\n p1 ,Saw\n"))


def test_empty_title_names_line(tmp_path):
    path = write_csv(tmp_path, "product_id,title\np1,Drill\np2,   \n")
    with pytest.raises(DataError) as error:
        load_catalog(path)
    assert "line 3" in str(error.value)
    assert "empty title" in str(error.value)


def test_untitled_products_can_be_left_out_with_a_warning(tmp_path, caplog):
    path = write_csv(tmp_path, "product_id,title\np1,Drill\np2,   \np3,Saw\np4,\n")
    with caplog.at_level("WARNING", logger="core.catalog"):
        products = load_catalog(path, skip_untitled=True)
    assert [product.product_id for product in products] == ["p1", "p3"]
    assert "left out 2 products with an empty title (lines 3, 5)" in caplog.text


def test_skipping_untitled_products_still_rejects_a_catalog_of_nothing_else(tmp_path):
    with pytest.raises(DataError, match="no products"):
        load_catalog(write_csv(tmp_path, "product_id,title\np1,\n"), skip_untitled=True)


def test_empty_product_id_names_line(tmp_path):
    with pytest.raises(DataError, match=r"line 2: empty product_id"):
        load_catalog(write_csv(tmp_path, "product_id,title\n,Drill\n"))


def test_short_row_gives_empty_title(tmp_path):
    with pytest.raises(DataError, match=r"line 2: .*empty title"):
        load_catalog(write_csv(tmp_path, "product_id,title\np1\n"))


def test_extra_fields_names_line(tmp_path):
    with pytest.raises(DataError, match=r"line 3: more fields than the header"):
        load_catalog(write_csv(tmp_path, "product_id,title\np1,Drill\np2,Saw,extra\n"))


def test_non_numeric_price_names_line_and_value(tmp_path):
    path = write_csv(tmp_path, "product_id,title,price\np1,Drill,9\np2,Saw,cheap\n")
    with pytest.raises(DataError) as error:
        load_catalog(path)
    message = str(error.value)
    assert "line 3" in message
    assert "'cheap'" in message
    assert "not a number" in message


@pytest.mark.parametrize("price", ["-1", "-0.01", "nan", "inf", "-inf"])
def test_negative_or_non_finite_price_rejected(tmp_path, price):
    path = write_csv(tmp_path, f"product_id,title,price\np1,Drill,{price}\n")
    with pytest.raises(DataError) as error:
        load_catalog(path)
    assert "line 2" in str(error.value)
    assert "invalid" in str(error.value)


def test_zero_price_allowed(tmp_path):
    assert load_catalog(write_csv(tmp_path, "product_id,title,price\np1,Free,0\n"))[0].price == 0.0


def test_jsonl_string_price_not_a_number(tmp_path):
    with pytest.raises(DataError, match=r"line 1: price 'abc'"):
        load_catalog(write_jsonl(tmp_path, [{"product_id": "p1", "title": "A", "price": "abc"}]))


# --- One record, without a file (the catalog API) -----------------------------------------------------------------------


def test_a_record_is_read_as_a_row_is():
    product = product_from_row({"product_id": 104.0, "title": " Drill ", "price": 9.5, "colour": "red", "size": ""})
    assert product == Product("104", "Drill", price=9.5, attributes={"colour": "red"})


@pytest.mark.parametrize(("row", "message"), [
    ({"product_id": " ", "title": "Drill"}, "empty product_id"),
    ({"product_id": "p1", "title": ""}, "product 'p1' has an empty title"),
    ({"product_id": "p1", "title": "Drill", "price": "cheap"}, "price 'cheap' of product 'p1' is not a number"),
    ({"product_id": "p1", "title": "Drill", "price": float("nan")}, "price 'nan' of product 'p1' is invalid"),
    ({"product_id": "p1", "title": "Drill", "price": -1}, "price '-1' of product 'p1' is invalid"),
])
def test_a_bad_record_says_what_is_wrong_without_a_place(row, message):
    with pytest.raises(DataError) as error:
        product_from_row(row)
    assert str(error.value) == message


def test_the_loader_names_the_file_and_line_before_the_record_message(tmp_path):
    path = write_csv(tmp_path, "product_id,title,price\np1,Drill,9\np2,Saw,cheap\n")
    with pytest.raises(DataError) as error:
        load_catalog(path)
    assert str(error.value) == f"catalog {path} line 3: price 'cheap' of product 'p2' is not a number"


# --- Product helpers --------------------------------------------------------------------------------------------------


def test_search_text_adds_brand_and_category_only_when_new():
    assert Product("p", "Cordless Drill", brand="Bosch", category="Drills").search_text() == "Cordless Drill | Bosch | Drills"
    assert Product("p", "Bosch Cordless Drill", brand="bosch", category="Drill").search_text() == "Bosch Cordless Drill"
    assert Product("p", "Hammer").search_text() == "Hammer"


def test_to_json_from_json_round_trip():
    product = Product("p1", "Drill", "desc", "Bosch", "Drills", "Tools", 9.5, "u", {"color": "red"})
    data = product.to_json()
    assert json.loads(json.dumps(data)) == data
    assert Product.from_json(data) == product


def test_catalog_digest_is_sha256_of_bytes(tmp_path):
    import hashlib

    path = tmp_path / "c.csv"
    path.write_bytes(b"product_id,title\np1,A\n")
    assert catalog_digest(path) == hashlib.sha256(b"product_id,title\np1,A\n").hexdigest()
    other = tmp_path / "d.csv"
    other.write_bytes(b"product_id,title\np1,B\n")
    assert catalog_digest(other) != catalog_digest(path)


def test_a_shop_is_the_name_given_else_the_catalog_folders():
    from core.catalog import shop_of

    assert shop_of("data/demo/catalog.csv") == "demo"
    assert shop_of("/data/Home Depot (2024)/catalog.csv") == "home-depot-2024"
    assert shop_of("/data/home-depot-product-search-relevance/catalog.csv", "home-depot") == "home-depot"


@pytest.mark.parametrize("name", ["Demo", "-demo", "a b", "x" * 65, "dé", "demo/../etc"])
def test_a_shop_name_is_lowercase_letters_digits_and_dots_dashes_underscores(name):
    from core.catalog import shop_of

    with pytest.raises(DataError, match="shop name"):
        shop_of("data/demo/catalog.csv", name)
