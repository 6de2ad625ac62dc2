"""Simple query-product match features, combined with the cross-encoder's score (orchestrator/fusion.py).

A MiniLM cross-encoder reads "12 in." and "12-Inch" as similar text but does not check that the numbers agree,
and a 48-token window may cut a title before the words that matter. These features look at the whole text:
- overlap: share of the query's distinct terms (core/analysis.py) that occur in the product text;
- numbers: +1 when every number of the query occurs in the product text, -1 when none does, linear in between;
  0 for a query without numbers;
- units: the same over the query's number-unit pairs ("40v", "5 mm", "12 in."), units spelled one way
  ("inch", "in.", '"' -> in); 0 for a query without any.

Brand is not a feature yet: the Home Depot catalog, the only judged one here, has no brand column, so its
weight could not be learned.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

from .analysis import analyze

FEATURES = ("overlap", "numbers", "units")

# A number: 12, 1.5, 1/2 (a "1-1/2" splits into 1 and 1/2). An optional unit follows it.
_NUMBER = re.compile(r"(?<![\d.])(\d+(?:/\d+|\.\d+)?)(?:\s*-?\s*(\"|'|[a-z]+\.?))?")
_UNITS = {
    "in": ("in", "in.", "inch", "inches", '"'),
    "ft": ("ft", "ft.", "foot", "feet", "'"),
    "mm": ("mm",), "cm": ("cm",), "m": ("m", "meter", "meters"),
    "v": ("v", "volt", "volts"), "w": ("w", "watt", "watts"), "amp": ("amp", "amps"),
    "ah": ("ah",), "gal": ("gal", "gal.", "gallon", "gallons"), "oz": ("oz", "oz.", "ounce", "ounces"),
    "lb": ("lb", "lb.", "lbs", "lbs.", "pound", "pounds"), "qt": ("qt", "qt.", "quart", "quarts"),
    "sq": ("sq", "sq."), "btu": ("btu", "btus"), "cu": ("cu", "cu."), "gauge": ("gauge", "ga", "ga."),
    "mph": ("mph",), "cfm": ("cfm",), "psi": ("psi",),
}
_UNIT_OF = {spelling: unit for unit, spellings in _UNITS.items() for spelling in spellings}


def numbers_and_units(text: str) -> tuple[set[str], set[tuple[str, str]]]:
    """The numbers of `text` (normalized: "1.50" -> "1.5") and its (number, unit) pairs with a known unit."""
    numbers: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    for number, unit in _NUMBER.findall(unicodedata.normalize("NFKC", text).lower()):
        if "." in number:
            number = number.rstrip("0").rstrip(".")
        numbers.add(number)
        if unit in _UNIT_OF:
            pairs.add((number, _UNIT_OF[unit]))
    return numbers, pairs


def _coverage(wanted: set, found: set) -> float:
    """+1 all of `wanted` is in `found`, -1 none is; 0 when nothing is wanted."""
    if not wanted:
        return 0.0
    return 2.0 * len(wanted & found) / len(wanted) - 1.0


class QueryFeatures:
    """Computes every feature of one query against many product texts, analyzing the query once."""

    def __init__(self, query: str) -> None:
        self.terms = set(analyze(query))
        self.numbers, self.pairs = numbers_and_units(query)

    def of(self, text: str) -> tuple[float, float, float]:
        terms = set(analyze(text)) if self.terms else set()
        overlap = len(self.terms & terms) / len(self.terms) if self.terms else 0.0
        numbers, pairs = numbers_and_units(text) if self.numbers else (set(), set())
        return overlap, _coverage(self.numbers, numbers), _coverage(self.pairs, pairs)


def match_features(query: str, texts: list[str]) -> dict[str, np.ndarray]:
    """Feature name -> values aligned with `texts`."""
    scorer = QueryFeatures(query)
    values = np.array([scorer.of(text) for text in texts], dtype=np.float64).reshape(len(texts), len(FEATURES))
    return {name: values[:, column] for column, name in enumerate(FEATURES)}
