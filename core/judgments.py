"""Reading graded judgments (query, product_id, gain) in the shared format."""

from __future__ import annotations

import math
from pathlib import Path

from core.catalog import cell_text, read_table
from core.errors import DataError


def load_judgments(path: str | Path) -> dict[str, dict[str, float]]:
    """query -> {product_id: gain}, queries in file order. Raises DataError naming the line of a bad row."""
    path = Path(path)
    judgments: dict[str, dict[str, float]] = {}
    for line_number, row in read_table(path, ("query", "product_id", "gain"), "judgments"):
        query = cell_text(row["query"])
        product_id = cell_text(row["product_id"])
        if not query or not product_id:
            raise DataError(f"judgments {path} line {line_number}: empty query or product_id")
        try:
            gain = float(row["gain"])
        except (TypeError, ValueError):
            raise DataError(f"judgments {path} line {line_number}: gain {row['gain']!r} is not a number") from None
        if not math.isfinite(gain) or gain < 0:
            raise DataError(f"judgments {path} line {line_number}: gain {row['gain']!r} must be a number >= 0")
        judgments.setdefault(query, {})[product_id] = gain
    if not judgments:
        raise DataError(f"judgments {path}: no rows")
    return judgments
