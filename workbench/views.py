"""What a page shows of the service's answers: each product with its details and the parts of its score as a bar,
moves against another ranking, the overlap of two rankings and nDCG@10 where judged. Pure functions of the answers.

A score's parts come from `explain` (ScoreComponent: name, raw, rank, contribution). Their groups: the combination's
components (bm25, dense, multilingual, reranker, the match features, intent) and a personalized answer's
`relevance:*` blend features are relevance; `preference:*` is personal; `popularity:*` is popularity. The blend's
intercept (`blend:bias`) is the same for every product, so it is listed with the parts but left out of the bar.
A bar is diverging: parts that add go right of its zero line, parts that subtract go left, on one scale for every
bar of an answer, so bars compare across its products (each side of a comparison has its own scale).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from core._proto.shoprank.v1 import admin_pb2, ranking_pb2
from core.catalog import Product, stock_of
from core.metrics import ndcg_at_k
from core.weights import DEFAULT_WEIGHTS

NDCG_K = 10
INTERCEPT = "blend:bias"
GROUPS = ("relevance", "personal", "popularity")
PALETTES = {
    # In the order of core.weights.DEFAULT_WEIGHTS (reranker, bm25, dense, multilingual, overlap, numbers, units,
    # intent), then a personalized answer's relevance:* features: neighbours differ in hue or lightness.
    "relevance": ("#1e3a8a", "#22d3ee", "#7c3aed", "#60a5fa", "#0e7490", "#c4b5fd", "#4338ca", "#0284c7",
                  "#93c5fd", "#312e81"),
    "personal": ("#15803d", "#a3e635", "#0d9488", "#4ade80", "#14532d", "#65a30d", "#5eead4", "#166534",
                 "#bef264", "#115e59", "#86efac"),
    "popularity": ("#c2410c", "#f59e0b", "#9a3412", "#fdba74", "#b45309"),
}
GROUP_TITLES = {"relevance": "Relevance", "personal": "Personal", "popularity": "Popularity"}
# Smaller contributions are listed but draw nothing.
VISIBLE = 1e-9


def group_of(name: str) -> str:
    """The group a score component belongs to: relevance, personal, popularity, or intercept."""
    if name == INTERCEPT:
        return "intercept"
    prefix = name.split(":", 1)[0] if ":" in name else ""
    return {"preference": "personal", "popularity": "popularity"}.get(prefix, "relevance")


@dataclass(frozen=True)
class Part:
    """One score component as the page lists it."""

    name: str
    group: str
    raw: float | None  # None where the component has no value (NaN: a feature the user's history lacks)
    rank: int  # 1-based rank in its retriever's list, 0 when not in it
    contribution: float


@dataclass(frozen=True)
class Segment:
    """A part's stretch of a bar, in percent of the bar's width."""

    name: str
    group: str
    contribution: float
    left: float
    width: float
    color: str


@dataclass(frozen=True)
class Bar:
    """A score's parts drawn on its answer's scale; `axis` is where zero is, in percent from the left."""

    axis: float
    segments: tuple[Segment, ...]
    label: str  # what the bar shows, in words (for screen readers)


@dataclass(frozen=True)
class Move:
    """A product's place against a reference ranking."""

    kind: str  # up, down, same, new
    places: int  # how many places it moved (0 for same and new)
    before: int  # its 1-based position in the reference, 0 when not there

    @property
    def text(self) -> str:
        return {"up": f"▲ {self.places}", "down": f"▼ {self.places}", "same": "=", "new": "new"}[self.kind]

    def describe(self, reference: str) -> str:
        """In words, e.g. "up 3 places from 8 in the left ranking"."""
        if self.kind == "new":
            return f"not in the {reference}"
        if self.kind == "same":
            return f"same place as in the {reference}"
        return f"{self.kind} {self.places} place{'s' if self.places > 1 else ''} from {self.before} in the {reference}"


@dataclass(frozen=True)
class Details:
    """What the catalog says of a product beyond the answer: image, price, stock."""

    image_url: str = ""
    price: float | None = None
    stock: int | None = None  # None: the workbench has no catalog for this shop


@dataclass(frozen=True)
class ItemView:
    position: int
    product_id: str
    title: str
    score: float
    arm: str
    parts: tuple[Part, ...]
    bar: Bar
    details: Details
    gain: float | None  # its judgment for this query, None when not judged
    move: Move | None  # against the reference ranking, when there is one


@dataclass(frozen=True)
class Quality:
    """nDCG@10 of a ranking's top 10 against the query's judgments."""

    ndcg: float | None  # None when no judged product has a positive gain
    judged: int  # how many of the top 10 are judged
    shown: int  # how many products the top 10 holds

    @property
    def text(self) -> str:
        if self.ndcg is None:
            return f"nDCG@{NDCG_K}: no positive rating yet ({self.judged} of {self.shown} judged)"
        return f"nDCG@{NDCG_K} {self.ndcg:.3f} ({self.judged} of {self.shown} judged)"


@dataclass(frozen=True)
class AnswerView:
    """One answer of the service as a page shows it."""

    items: tuple[ItemView, ...]
    model_versions: tuple[tuple[str, str], ...]
    degraded: bool
    degraded_reason: str
    personalized: bool
    personalization: str
    corrected_query: str
    request_id: str
    experiment: str
    shop: str
    shop_weights: bool
    took_ms: float
    quality: Quality
    intercept: float | None  # the blend's intercept, the same for every product (None: not a blended answer)

    @property
    def ids(self) -> list[str]:
        return [item.product_id for item in self.items]


@dataclass(frozen=True)
class Overlap:
    """How much two rankings share."""

    shared: int
    size: int  # the longer ranking's length
    only_left: tuple[str, ...]
    only_right: tuple[str, ...]

    @property
    def text(self) -> str:
        share = self.shared / self.size if self.size else 1.0
        return f"{self.shared} of {self.size} products in both rankings ({share:.0%})"


def parts_of(item: ranking_pb2.Item) -> tuple[Part, ...]:
    """An item's explained components as parts (NaN raw values become None)."""
    return tuple(Part(name=c.name, group=group_of(c.name), raw=c.raw if math.isfinite(c.raw) else None, rank=c.rank,
                      contribution=c.contribution) for c in item.components)


def legend(answers: Iterable[ranking_pb2.SearchResponse]) -> dict[str, str]:
    """Component name -> colour, for every component the answers draw (a contribution that is not 0): one colour a
    name on the whole page, listed by group."""
    names: dict[str, list[str]] = {group: [] for group in GROUPS}
    known = list(DEFAULT_WEIGHTS)
    for answer in answers:
        for item in answer.items:
            for component in item.components:
                group = group_of(component.name)
                if group in names and component.name not in names[group] and abs(component.contribution) > VISIBLE:
                    names[group].append(component.name)
    colors = {}
    for group, members in names.items():
        members.sort(key=lambda name: (known.index(name) if name in known else len(known), name))
        palette = PALETTES[group]
        colors.update({name: palette[index % len(palette)] for index, name in enumerate(members)})
    return colors


def legend_groups(colors: Mapping[str, str]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The legend's rows: (group title, [(name, colour)]) for each group with a drawn part."""
    rows = []
    for group in GROUPS:
        members = [(name, color) for name, color in colors.items() if group_of(name) == group]
        if members:
            rows.append((GROUP_TITLES[group], members))
    return rows


def scale(answer: ranking_pb2.SearchResponse) -> tuple[float, float]:
    """(largest sum of subtracting parts, largest sum of adding parts) over the answer's items: one scale for its
    bars (two configurations' scores need not share a unit: a fused score is a fraction, a combined one tens)."""
    most_negative = most_positive = 0.0
    for item in answer.items:
        drawn = [c.contribution for c in item.components if group_of(c.name) != "intercept"]
        most_negative = max(most_negative, -sum(value for value in drawn if value < 0))
        most_positive = max(most_positive, sum(value for value in drawn if value > 0))
    return most_negative, most_positive


def bar(parts: Sequence[Part], score: float, colors: Mapping[str, str], bar_scale: tuple[float, float]) -> Bar:
    """The parts of one score drawn on its answer's scale: adding parts right of zero, subtracting parts left."""
    negative, positive = bar_scale
    total = negative + positive
    axis = 100.0 * negative / total if total > 0 else 0.0
    segments = []
    right = left = axis
    drawn = sorted((part for part in parts if part.group != "intercept" and abs(part.contribution) > VISIBLE),
                   key=lambda part: -abs(part.contribution))
    for part in drawn:
        width = 100.0 * abs(part.contribution) / total
        if part.contribution > 0:
            start, right = right, right + width
        else:
            left, start = left - width, left - width
        segments.append(Segment(part.name, part.group, part.contribution, round(start, 3), round(width, 3),
                                colors.get(part.name, "#6b7280")))
    spoken = ", ".join(f"{part.name} {part.contribution:+.3f}" for part in drawn[:6])
    more = f" and {len(drawn) - 6} smaller parts" if len(drawn) > 6 else ""
    return Bar(axis=round(axis, 3), segments=tuple(segments), label=f"score {score:.3f}: {spoken}{more}")


def details_of(product: Product | None) -> Details:
    if product is None:
        return Details()
    return Details(image_url=product.image_url, price=product.price, stock=stock_of(product))


def moves(ids: Sequence[str], reference: Sequence[str]) -> list[Move]:
    """Each product's move against `reference`: up when it ranks higher than there."""
    before = {product_id: position for position, product_id in enumerate(reference, start=1)}
    result = []
    for position, product_id in enumerate(ids, start=1):
        was = before.get(product_id, 0)
        if not was:
            result.append(Move("new", 0, 0))
        elif was == position:
            result.append(Move("same", 0, was))
        else:
            result.append(Move("up" if was > position else "down", abs(was - position), was))
    return result


def overlap(left: Sequence[str], right: Sequence[str]) -> Overlap:
    shared = set(left) & set(right)
    return Overlap(shared=len(shared), size=max(len(left), len(right)),
                   only_left=tuple(pid for pid in left if pid not in shared),
                   only_right=tuple(pid for pid in right if pid not in shared))


def quality(ids: Sequence[str], judged: Mapping[str, float]) -> Quality:
    """nDCG@10 of the first 10 ids (project's linear-gain nDCG, core.metrics), with how many of them are judged."""
    top = list(ids[:NDCG_K])
    value = ndcg_at_k(top, dict(judged), NDCG_K) if judged else None
    return Quality(ndcg=value, judged=sum(1 for product_id in top if product_id in judged), shown=len(top))


def answer_view(response: ranking_pb2.SearchResponse, products: Mapping[str, Product], judged: Mapping[str, float],
                colors: Mapping[str, str], reference: Sequence[str] | None = None) -> AnswerView:
    """The page's view of one answer; `reference` is the ranking moves are shown against (the other side, or the
    answer before the feedback just sent)."""
    ids = [item.product_id for item in response.items]
    item_moves = moves(ids, reference) if reference is not None else [None] * len(ids)
    answer_scale = scale(response)
    items = []
    for position, (item, move) in enumerate(zip(response.items, item_moves), start=1):
        parts = parts_of(item)
        items.append(ItemView(position=position, product_id=item.product_id, title=item.title, score=item.score,
                              arm=item.arm, parts=parts, bar=bar(parts, item.score, colors, answer_scale),
                              details=details_of(products.get(item.product_id)), gain=judged.get(item.product_id),
                              move=move))
    intercepts = [c.contribution for item in response.items for c in item.components if c.name == INTERCEPT]
    return AnswerView(
        items=tuple(items), model_versions=tuple(sorted(response.model_versions.items())),
        degraded=response.degraded, degraded_reason=response.degraded_reason, personalized=response.personalized,
        personalization=response.personalization, corrected_query=response.corrected_query,
        request_id=response.request_id, experiment=response.experiment, shop=response.shop,
        shop_weights=response.shop_weights, took_ms=response.took_ms, quality=quality(ids, judged),
        intercept=intercepts[0] if intercepts else None)


def as_json(value) -> object:
    """A view as JSON-ready data (dataclasses to objects, moves with their text)."""
    if isinstance(value, Move):
        return {**asdict(value), "text": value.text}
    if isinstance(value, Quality):
        return {**asdict(value), "text": value.text}
    if hasattr(value, "__dataclass_fields__"):
        return {name: as_json(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, (list, tuple)):
        return [as_json(member) for member in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class ExperimentRow:
    """An experiment as the compare page lists it, with its arms ready to compare."""

    name: str
    running: bool
    method: str
    control: str
    treatment: str
    share: float
    decision: str
    detail: str = ""


def experiment_rows(statuses: Iterable[admin_pb2.ExperimentStatus]) -> list[ExperimentRow]:
    """The service's experiments, running first."""
    rows = []
    for status in statuses:
        if status.method == "interleave":
            detail = f"{status.wins} won, {status.losses} lost, {status.ties} tied of {status.shown} shown"
        else:
            detail = f"{status.shown} searches"
        rows.append(ExperimentRow(name=status.name, running=status.running, method=status.method,
                                  control=status.control, treatment=status.treatment, share=status.share,
                                  decision=status.decision or "undecided", detail=detail))
    return sorted(rows, key=lambda row: (not row.running, row.name))
