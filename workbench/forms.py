"""What a page's form asks, checked, and the SearchRequest it becomes. Pure functions: BadInput names the field.

A side of the comparison is an experiment's arm in its own grammar (orchestrator/experiments/arms.py: default,
fused, no-cross-encoder, no-personalization, weights=NAME:W+..., reranker=V, parts joined by commas) and, optionally,
the blend's group weights; both become fields of the public SearchRequest. `reranker=V` has no field there (the
public API serves the stable version or a rollout's share), so that side is refused with a message saying so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from core._proto.shoprank.v1 import ranking_pb2
from core.errors import InvalidRequest
from orchestrator.experiments.arms import parse_arm

from .config import WorkbenchConfig
from .errors import BadInput

MAX_QUERY = 1000
BLEND_GROUPS = ("relevance", "preference", "popularity")
EVENT_TYPES = {"click": ranking_pb2.EVENT_TYPE_CLICK, "cart": ranking_pb2.EVENT_TYPE_CART,
               "purchase": ranking_pb2.EVENT_TYPE_PURCHASE}
MAX_GAIN = 3
# The arms a side's field suggests (any arm text is accepted).
SUGGESTED_ARMS = ("default", "fused", "no-cross-encoder", "no-personalization", "weights=bm25:1",
                  "weights=reranker:1", "weights=dense:1+multilingual:1")


@dataclass(frozen=True)
class SearchForm:
    """The search every page shows: the same fields on the search and the compare page."""

    server: str
    query: str = ""
    user_id: str = ""
    top_k: int = 10
    category: str = ""
    brand: str = ""
    min_price: float | None = None
    max_price: float | None = None
    exact: bool = False
    out_of_stock: bool = False

    def request(self) -> ranking_pb2.SearchRequest:
        """The explained SearchRequest of this form."""
        filters = [ranking_pb2.Filter(field=name, any_of=_values(text))
                   for name, text in (("category", self.category), ("brand", self.brand)) if _values(text)]
        if self.min_price is not None or self.max_price is not None:
            price = ranking_pb2.Filter(field="price")
            if self.min_price is not None:
                price.min = self.min_price
            if self.max_price is not None:
                price.max = self.max_price
            filters.append(price)
        return ranking_pb2.SearchRequest(query=self.query, user_id=self.user_id, top_k=self.top_k, filters=filters,
                                         explain=True, skip_spelling_correction=self.exact,
                                         include_out_of_stock=self.out_of_stock)

    def params(self) -> dict[str, str]:
        """The form as URL parameters (what a link back to this search carries)."""
        params = {"server": self.server, "q": self.query, "user": self.user_id, "top_k": str(self.top_k),
                  "category": self.category, "brand": self.brand,
                  "min_price": "" if self.min_price is None else f"{self.min_price:g}",
                  "max_price": "" if self.max_price is None else f"{self.max_price:g}",
                  "exact": "1" if self.exact else "", "out_of_stock": "1" if self.out_of_stock else ""}
        return {name: value for name, value in params.items() if value}


@dataclass(frozen=True)
class Side:
    """One configuration of the comparison: an arm's text and blend group weights that override the learned ones."""

    arm: str = "default"
    blend: dict[str, float] = field(default_factory=dict)

    def request(self, base: ranking_pb2.SearchRequest) -> ranking_pb2.SearchRequest:
        """`base` ranked as this side asks; BadInput for an arm the public API cannot ask for."""
        try:
            arm = parse_arm(self.arm)
        except InvalidRequest as error:
            raise BadInput(str(error)) from None
        if arm.reranker_version:
            raise BadInput(f"arm {self.arm!r}: the public API cannot ask for a reranker version (reranker=V); it "
                           f"serves the stable version or a rollout's share. Compare versions through an "
                           f"experiment (`shoprank experiment start`) or `shoprank eval --baseline reranker=V`")
        request = ranking_pb2.SearchRequest()
        request.CopyFrom(base)
        request.skip_rerank = arm.skip_rerank
        request.skip_cross_encoder = arm.skip_cross_encoder
        request.skip_personalization = not arm.personalize
        if arm.combination_weights is not None:
            request.combination_weights.update(dict(arm.combination_weights))
        for group, weight in self.blend.items():
            setattr(request.blend_weights, group, weight)
        return request


def search_form(params: Mapping[str, str], config: WorkbenchConfig) -> SearchForm:
    """The search form's fields from a page's URL parameters (defaults where absent)."""
    server = _text(params, "server") or config.servers[0]
    if server not in config.servers:
        raise BadInput(f"server {server!r} is not one this workbench was started with: {', '.join(config.servers)}")
    query = _text(params, "q")
    if len(query) > MAX_QUERY:
        raise BadInput(f"the query has {len(query)} characters; at most {MAX_QUERY}")
    top_k = _number(params, "top_k", "results", int) if _text(params, "top_k") else config.top_k
    if not 1 <= top_k <= 100:
        raise BadInput(f"results must be 1..100, not {top_k}")
    min_price, max_price = (_number(params, name, label, float) if _text(params, name) else None
                            for name, label in (("min_price", "lowest price"), ("max_price", "highest price")))
    if min_price is not None and max_price is not None and min_price > max_price:
        raise BadInput(f"the lowest price {min_price:g} is above the highest {max_price:g}")
    user_id = _text(params, "user")
    if len(user_id.encode()) > 256:
        raise BadInput("a user id has at most 256 bytes")
    return SearchForm(server=server, query=query, user_id=user_id, top_k=top_k, category=_text(params, "category"),
                      brand=_text(params, "brand"), min_price=min_price, max_price=max_price,
                      exact=_flag(params, "exact"), out_of_stock=_flag(params, "out_of_stock"))


def side_form(params: Mapping[str, str], name: str, default_arm: str) -> Side:
    """One side of the comparison from the URL parameters `NAME` (the arm) and `NAME_GROUP` (blend weights)."""
    blend = {}
    for group in BLEND_GROUPS:
        if _text(params, f"{name}_{group}"):
            blend[group] = _number(params, f"{name}_{group}", f"the {name} side's {group} weight", float)
    return Side(arm=_text(params, name) or default_arm, blend=blend)


def product_ids(text: str, field_name: str) -> list[str]:
    """A comma-separated list of product ids (a ranking carried in a URL)."""
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if len(ids) > 1000 or any(len(product_id) > 256 for product_id in ids):
        raise BadInput(f"{field_name}: at most 1000 product ids of at most 256 characters")
    return ids


def gain_of(value: object) -> int:
    """A judgment's gain as the page sends it: a whole number 0..3."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise BadInput(f"a rating is a whole number 0..{MAX_GAIN}, not {value!r}")
    gain = int(value)
    if gain > MAX_GAIN:
        raise BadInput(f"a rating is a whole number 0..{MAX_GAIN}, not {gain}")
    return gain


def _text(params: Mapping[str, str], name: str) -> str:
    return (params.get(name) or "").strip()


def _flag(params: Mapping[str, str], name: str) -> bool:
    return _text(params, name).lower() in ("1", "on", "true", "yes")


def _values(text: str) -> list[str]:
    return [value.strip() for value in text.split(",") if value.strip()]


def _number(params: Mapping[str, str], name: str, label: str, kind: type):
    text = _text(params, name)
    try:
        value = kind(text)
    except ValueError:
        raise BadInput(f"{label} must be a {'whole ' if kind is int else ''}number, not {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise BadInput(f"{label} must be a number >= 0, not {text!r}")
    return value
