"""Order: the answer's top k products, each with its score's components when asked to explain."""

from __future__ import annotations

from ..fusion import Component
from .context import ScoredItem, SearchContext


class Order:
    """`context.items`: the first top_k of `context.ranking`, explained on request."""

    name = "order"

    async def run(self, context: SearchContext) -> None:
        ranking, explain = context.ranking, context.request.explain
        for position in range(min(context.top_k, len(ranking.rows))):
            product = context.candidates.products[int(ranking.rows[position])]
            components = tuple(_explain(component, position) for component in ranking.components) if explain else ()
            context.items.append(ScoredItem(product.product_id, product.title, float(ranking.scores[position]),
                                            components))


def _explain(component: Component, position: int) -> tuple[str, float, int, float]:
    """(name, raw value, rank among the candidates, contribution to the score) of one product."""
    return (component.name, float(component.raw[position]), int(component.rank[position]),
            float(component.contribution[position]))
