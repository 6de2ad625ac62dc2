"""Filters on product fields: validated once, then applied as boolean masks over the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.catalog import Product
from core.errors import InvalidRequest

TEXT_FIELDS = ("brand", "category", "department")
NUMERIC_FIELDS = ("price",)
FIELDS = TEXT_FIELDS + NUMERIC_FIELDS
# Bounds on what one search may ask, checked before any work: each value costs ~20 µs on the index (FilterColumns.mask)
# and ~30 µs on Milvus (the expression built, sent and planned), so the ~50,000 values a 1 MB request can hold block
# the event loop for seconds. The values are counted over all of a search's filters, since that is what the cost
# follows (64 filters of 1,000 values each would take over a second again); the filters are counted too, for those
# without values (price). A shop's real filters are a few fields and a facet's values; these leave room to spare.
MAX_FILTERS = 64
MAX_FILTER_VALUES = 1000  # in all of a search's filters


@dataclass(frozen=True)
class Filter:
    """Keep products whose `field` is one of `any_of` (text fields) or lies in [min, max] (numeric fields)."""

    field: str
    any_of: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None

    def validate(self) -> None:
        """Raise InvalidRequest when the filter cannot be applied as written."""
        if self.field not in FIELDS:
            raise InvalidRequest(f"unknown filter field {self.field!r}; known fields: {', '.join(FIELDS)}")
        if self.field in TEXT_FIELDS:
            if not self.any_of:
                raise InvalidRequest(f"filter on {self.field!r} needs at least one value in any_of")
            if self.min is not None or self.max is not None:
                raise InvalidRequest(f"filter on {self.field!r} takes any_of, not min/max")
        else:
            if self.any_of:
                raise InvalidRequest(f"filter on {self.field!r} takes min/max, not any_of")
            if self.min is None and self.max is None:
                raise InvalidRequest(f"filter on {self.field!r} needs min, max or both")
            if self.min is not None and self.max is not None and self.min > self.max:
                raise InvalidRequest(f"filter on {self.field!r}: min {self.min} is above max {self.max}")


def validate_filters(filters: Sequence[Filter]) -> None:
    """Raise InvalidRequest when there are more than MAX_FILTERS filters or MAX_FILTER_VALUES values in all of them,
    or one of them cannot be applied."""
    if len(filters) > MAX_FILTERS:
        raise InvalidRequest(f"{len(filters)} filters; the limit is {MAX_FILTERS}")
    values = sum(len(item.any_of) for item in filters)
    if values > MAX_FILTER_VALUES:
        raise InvalidRequest(f"{values} values in the filters' any_of; the limit is {MAX_FILTER_VALUES} in all")
    for item in filters:
        item.validate()


class FilterColumns:
    """The catalog's filterable fields as arrays, built once per index."""

    def __init__(self, products: list[Product]) -> None:
        self._text = {
            name: np.array([getattr(product, name).casefold() for product in products], dtype=object)
            for name in TEXT_FIELDS
        }
        self._price = np.array([p.price if p.price is not None else np.nan for p in products], dtype=np.float64)

    def mask(self, filters: list[Filter]) -> np.ndarray | None:
        """Rows that pass every filter; None when there are no filters."""
        if not filters:
            return None
        keep = np.ones(len(self._price), dtype=bool)
        for item in filters:
            if item.field in TEXT_FIELDS:
                keep &= np.isin(self._text[item.field], [value.casefold() for value in item.any_of])
            else:
                # NaN (no price) fails every comparison, so products without a price never pass a price filter.
                values = self._price
                if item.min is not None:
                    keep &= values >= item.min
                if item.max is not None:
                    keep &= values <= item.max
        return keep
