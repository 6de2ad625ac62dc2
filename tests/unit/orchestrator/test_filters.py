"""orchestrator.filters: validation and the boolean masks over a catalog."""

from __future__ import annotations

import numpy as np
import pytest

from core.catalog import Product
from core.errors import InvalidRequest
from orchestrator.filters import MAX_FILTER_VALUES, MAX_FILTERS, Filter, FilterColumns, validate_filters

PRODUCTS = [
    Product("p0", "Drill", brand="Bosch", category="Drills", department="Tools", price=99.0),
    Product("p1", "Saw", brand="BOSCH", category="Saws", department="Tools", price=49.5),
    Product("p2", "Hammer", brand="Stanley", category="Hand Tools", department="Tools", price=10.0),
    Product("p3", "Lamp", brand="Philips", category="Lighting", department="Home"),  # no price
    Product("p4", "Bulb", brand="", category="Lighting", department="Home", price=2.0),
]


@pytest.fixture
def columns() -> FilterColumns:
    return FilterColumns(PRODUCTS)


# --- validation -------------------------------------------------------------------------------------------------------


def test_unknown_field():
    with pytest.raises(InvalidRequest) as error:
        Filter("color", any_of=("red",)).validate()
    assert "'color'" in str(error.value)
    assert "brand" in str(error.value)


@pytest.mark.parametrize("field", ["brand", "category", "department"])
def test_text_field_needs_any_of(field):
    with pytest.raises(InvalidRequest, match="any_of"):
        Filter(field).validate()


def test_text_field_rejects_min_max():
    with pytest.raises(InvalidRequest, match="not min/max"):
        Filter("brand", any_of=("Bosch",), min=1.0).validate()
    with pytest.raises(InvalidRequest, match="not min/max"):
        Filter("brand", any_of=("Bosch",), max=1.0).validate()


def test_price_rejects_any_of():
    with pytest.raises(InvalidRequest, match="not any_of"):
        Filter("price", any_of=("10",), min=1.0).validate()


def test_price_needs_a_bound():
    with pytest.raises(InvalidRequest, match="min, max or both"):
        Filter("price").validate()


def test_price_min_above_max():
    with pytest.raises(InvalidRequest, match="min 20.0 is above max 10.0"):
        Filter("price", min=20.0, max=10.0).validate()


@pytest.mark.parametrize(
    "item",
    [
        Filter("brand", any_of=("Bosch",)),
        Filter("category", any_of=("a", "b")),
        Filter("department", any_of=("Tools",)),
        Filter("price", min=1.0),
        Filter("price", max=1.0),
        Filter("price", min=5.0, max=5.0),
        Filter("price", min=0.0, max=0.0),
    ],
)
def test_valid_filters_pass(item):
    item.validate()  # no exception


def test_a_search_holds_at_most_max_filter_values_in_all_its_filters():
    values = tuple(f"b{number}" for number in range(MAX_FILTER_VALUES))
    validate_filters([Filter("brand", any_of=values)])
    validate_filters([Filter("brand", any_of=values[:10]), Filter("category", any_of=values[10:])])
    with pytest.raises(InvalidRequest, match=f"{MAX_FILTER_VALUES + 1} values in the filters' any_of; the limit is "
                                             f"{MAX_FILTER_VALUES} in all"):
        validate_filters([Filter("brand", any_of=values), Filter("category", any_of=("x",))])


def test_a_search_holds_at_most_max_filters():
    validate_filters([Filter("price", min=1.0)] * MAX_FILTERS)
    with pytest.raises(InvalidRequest, match=f"{MAX_FILTERS + 1} filters; the limit is {MAX_FILTERS}"):
        validate_filters([Filter("price", min=1.0)] * (MAX_FILTERS + 1))


def test_validate_filters_checks_each_filter():
    with pytest.raises(InvalidRequest, match="unknown filter field"):
        validate_filters([Filter("price", min=1.0), Filter("colour", any_of=("red",))])


# --- masks ------------------------------------------------------------------------------------------------------------


def test_no_filters_is_none(columns):
    assert columns.mask([]) is None


def test_brand_case_insensitive(columns):
    mask = columns.mask([Filter("brand", any_of=("bosch",))])
    assert mask.dtype == bool
    assert mask.tolist() == [True, True, False, False, False]


def test_any_of_is_a_union(columns):
    mask = columns.mask([Filter("brand", any_of=("stanley", "PHILIPS"))])
    assert mask.tolist() == [False, False, True, True, False]


def test_casefold_not_just_lower():
    products = [Product("a", "x", brand="Straße"), Product("b", "y", brand="Other")]
    mask = FilterColumns(products).mask([Filter("brand", any_of=("STRASSE",))])
    assert mask.tolist() == [True, False]


def test_text_match_is_exact_not_substring(columns):
    mask = columns.mask([Filter("category", any_of=("Tools",))])
    assert mask.tolist() == [False, False, False, False, False]


def test_price_range_inclusive(columns):
    mask = columns.mask([Filter("price", min=10.0, max=49.5)])
    assert mask.tolist() == [False, True, True, False, False]


def test_price_min_only_and_max_only(columns):
    assert columns.mask([Filter("price", min=49.5)]).tolist() == [True, True, False, False, False]
    assert columns.mask([Filter("price", max=10.0)]).tolist() == [False, False, True, False, True]


def test_products_without_price_never_pass_price_filter(columns):
    mask = columns.mask([Filter("price", min=0.0)])
    assert mask.tolist() == [True, True, True, False, True]
    assert not columns.mask([Filter("price", max=1e18)])[3]


def test_several_filters_are_anded(columns):
    mask = columns.mask(
        [
            Filter("department", any_of=("tools",)),
            Filter("brand", any_of=("Bosch", "Stanley")),
            Filter("price", max=50.0),
        ]
    )
    assert mask.tolist() == [False, True, True, False, False]


def test_two_filters_on_same_field_intersect(columns):
    mask = columns.mask([Filter("price", min=5.0), Filter("price", max=60.0)])
    assert mask.tolist() == [False, True, True, False, False]


def test_filter_matching_nothing(columns):
    mask = columns.mask([Filter("brand", any_of=("Makita",))])
    assert not mask.any()
    assert len(mask) == len(PRODUCTS)


def test_empty_catalog_mask():
    mask = FilterColumns([]).mask([Filter("price", min=1.0)])
    assert isinstance(mask, np.ndarray)
    assert mask.shape == (0,)
