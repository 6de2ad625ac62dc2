"""The domain's filters as Milvus boolean expressions: what each keeps, and that no value escapes its literal."""

import math
import re

import pytest
from pymilvus.exceptions import MilvusException

from core.errors import CatalogStoreError, ConfigError, InvalidRequest
from orchestrator.filters import MAX_FILTERS, Filter
from orchestrator.catalog.milvus import (APOSTROPHE_KEY, _translate, alias_of, client_uri, conjunction, filter_expression,
                                         filter_key, id_problem, in_list, product_id_of, stored_id, stored_keys,
                                         string_literal)

HOSTILE = ['we"ird\\cat', "it's", '" or product_id != "', "\\", '\\"', "ü日本😀", "' or 1==1 or '", "a\\nb",
           '"]) or (["']


def unquote(literal: str) -> str:
    """Read a literal back the way Milvus's parser does: a backslash takes the next character as it is."""
    assert literal.startswith('"') and literal.endswith('"')
    body, out, position = literal[1:-1], [], 0
    while position < len(body):
        char = body[position]
        if char == "\\":
            position += 1
            out.append(body[position])
        else:
            assert char != '"', f"an unescaped quote ends the literal early in {literal}"
            out.append(char)
        position += 1
    return "".join(out)


def test_no_filters_keep_everything():
    assert filter_expression() == ""


def test_text_filters_match_casefolded_keys():
    assert filter_expression([Filter("brand", any_of=("DeWalt", "Makita", "dewalt"))]) == \
        'brand_key in ["dewalt", "makita"]'


def test_price_range_needs_a_price():
    assert filter_expression([Filter("price", min=10, max=99.5)]) == \
        "has_price == true and price >= 10.0 and price <= 99.5"
    assert filter_expression([Filter("price", max=5)]) == "has_price == true and price <= 5.0"


def test_filters_and_stock_combine_with_and():
    expression = filter_expression([Filter("category", any_of=("Tools",)), Filter("price", min=1)], in_stock=True)
    assert expression == '(category_key in ["tools"]) and ((has_price == true and price >= 1.0) and (stock > 0))'


def test_parts_are_joined_as_a_balanced_tree_which_milvus_lite_can_plan():
    # Milvus Lite 2.5.1 refuses a flat chain of ~50 ands ("unsupported expr proto node"); a tree of n parts is
    # log2(n) deep.
    assert conjunction(["a"]) == "a"
    assert conjunction(["a", "b", "c", "d"]) == "((a) and (b)) and ((c) and (d))"
    expression = conjunction([f"p{number}" for number in range(MAX_FILTERS * 3)])
    depth = deepest = 0
    for char in expression:
        depth += {"(": 1, ")": -1}.get(char, 0)
        deepest = max(deepest, depth)
    assert deepest == math.ceil(math.log2(MAX_FILTERS * 3))
    assert re.findall(r"p\d+", expression) == [f"p{number}" for number in range(MAX_FILTERS * 3)]


def test_the_same_filter_twice_is_written_once():
    assert filter_expression([Filter("price", min=1.0, max=2000.0)] * 50) == \
        "has_price == true and price >= 1.0 and price <= 2000.0"


def test_too_many_filters_are_refused_before_an_expression_is_built():
    with pytest.raises(InvalidRequest, match="filters; the limit is"):
        filter_expression([Filter("price", min=float(number)) for number in range(MAX_FILTERS + 1)])


def test_milvus_source_paths_never_reach_an_error_message():
    refusal = MilvusException(2000, " => unsupported expr proto node:  at /workspace/milvus-lite/thirdparty/milvus/"
                                    "internal/core/src/query/PlanProto.cpp:543")
    error = _translate(refusal, "search shop_demo__g1")
    assert isinstance(error, CatalogStoreError)
    assert str(error) == "Milvus refused to search shop_demo__g1: => unsupported expr proto node:"
    assert "/workspace" not in str(_translate(MilvusException(2000, 'Assert "x" => Cannot find field with field_id: 0 '
                                                                     "at /w/src/common/Schema.h:178"), "search"))


def test_in_stock_alone():
    assert filter_expression(in_stock=True) == "stock > 0"


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_stay_inside_their_literal(value):
    literal = string_literal(value)
    assert unquote(literal) == value
    expression = filter_expression([Filter("category", any_of=(value,))])
    assert expression == f"category_key in [{string_literal(value.casefold())}]"


def test_control_characters_cannot_be_written_in_a_literal():
    with pytest.raises(InvalidRequest, match="control character"):
        string_literal("a\nb")
    # so the filter keys replace them, on both sides
    assert filter_key("Paint\n\tSupplies\x00") == "paint  supplies "
    assert filter_expression([Filter("department", any_of=("A\nB",))]) == 'department_key in ["a b"]'


def test_ids_are_escaped_too():
    assert in_list("product_id", ['1"]) or (["2', "x\\"]) == 'product_id in ["1\\"]) or ([\\"2", "x\\\\"]'


@pytest.mark.parametrize("bound", [math.nan, math.inf, -math.inf])
def test_a_price_bound_must_be_finite(bound):
    with pytest.raises(InvalidRequest, match="finite"):
        filter_expression([Filter("price", min=bound)])


@pytest.mark.parametrize("bad", [Filter("colour", any_of=("red",)), Filter("brand"), Filter("price"),
                                 Filter("price", min=5, max=1), Filter("brand", any_of=("x",), min=1)])
def test_invalid_filters_are_refused_as_orchestrator_filters_refuses_them(bad):
    with pytest.raises(InvalidRequest):
        filter_expression([bad])


def test_shop_names_map_to_milvus_names_one_to_one():
    assert alias_of("home-depot") == "shop_home_depot"
    assert alias_of("demo") == "shop_demo"
    for bad in ("Home", "home_depot", "", "-x", "a" * 64, 'x"y'):
        with pytest.raises(ConfigError):
            alias_of(bad)


def test_client_uri_accepts_the_forms_a_setting_may_take():
    assert client_uri("milvus://milvus:19530") == "http://milvus:19530"
    assert client_uri("127.0.0.1:19530") == "http://127.0.0.1:19530"
    assert client_uri("http://127.0.0.1:1") == "http://127.0.0.1:1"


@pytest.mark.parametrize("product_id", ["men's-shirt", "'", "x') OR ('1'='1", "plain", "ü日本'😀"])
def test_an_apostrophe_never_reaches_a_primary_key_and_reads_back_as_sent(product_id):
    key = stored_id(product_id)
    assert "'" not in key and product_id_of(key) == product_id
    assert stored_id("plain") == "plain"


def test_ids_no_stored_product_can_have_are_left_out_of_reads():
    assert id_problem("a\x01b") == "holds a control character, which a Milvus filter cannot match"
    assert "private-use" in id_problem(f"x{APOSTROPHE_KEY}")
    assert id_problem("men's-shirt") == ""
    assert stored_keys(["p1", "a\nb", "it's", "p1", f"x{APOSTROPHE_KEY}"]) == ["p1", f"it{APOSTROPHE_KEY}s"]
