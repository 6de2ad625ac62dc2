"""Order: the answer's top k products, each with its score's components when asked to explain; products out of
stock (there only when the request asked for them) after every product in stock."""

from __future__ import annotations

import numpy as np

from ..fusion import Component
from .context import ScoredItem, SearchContext


class Order:
    """`context.items`: the first top_k of `context.ranking`, explained on request."""

    name = "order"

    async def run(self, context: SearchContext) -> None:
        ranking, explain = context.ranking, context.request.explain
        positions = np.argsort(context.candidates.stock[ranking.rows] <= 0, kind="stable")  # in stock first
        for position in positions[:context.top_k].tolist():
            product = context.candidates.products[int(ranking.rows[position])]
            components = tuple(_explain(component, position) for component in ranking.components) if explain else ()
            context.items.append(ScoredItem(product.product_id, product.title, float(ranking.scores[position]),
                                            components))


def _explain(component: Component, position: int) -> tuple[str, float, int, float]:
    """(name, raw value, rank among the candidates, contribution to the score) of one product."""
    return (component.name, float(component.raw[position]), int(component.rank[position]),
            float(component.contribution[position]))
