"""The combination weights: their names, their fallback, and the per-script file the orchestrator reads.

`combination.json` (written by `shoprank export` from the reranker's manifest) maps a query script
(core/language.py) to weights: {"latin": {"reranker": 1, "bm25": ..., ...}, "cjk": {...}}. A flat set of weights
(the format before scripts) is the latin set. A script without weights keeps the fused order; without any file,
latin queries are ranked by the reranker alone.

A shop with its own judgments can have its own weights, under "shops": {shop name: {"weights": {script: ...}}}.
A shop is a name (`--shop`, recorded in its index), not a catalog file: it keeps its weights whatever its catalog
becomes. Every other shop gets the default weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ConfigError
from .features import FEATURES
from .language import CJK, LATIN

# Every component the combination can weigh, the reranker's first.
DEFAULT_WEIGHTS = {"reranker": 1.0, "bm25": 0.0, "dense": 0.0, "multilingual": 0.0,
                   **{name: 0.0 for name in FEATURES}, "intent": 0.0}
SCRIPTS = (LATIN, CJK)
SHOPS = "shops"


def per_script(weights: dict) -> dict[str, dict[str, float]]:
    """Script -> complete weights, from either format; unknown names are a ConfigError."""
    weights = {key: value for key, value in weights.items() if key != SHOPS}
    sets = weights if set(weights) <= set(SCRIPTS) and weights else {LATIN: weights}
    result = {}
    for script, values in sets.items():
        unknown = sorted(set(values) - set(DEFAULT_WEIGHTS))
        if unknown:
            raise ConfigError(f"combination weights for {script} name unknown components {unknown}; "
                              f"known: {', '.join(DEFAULT_WEIGHTS)}")
        # A set fit without the cross-encoder (cjk) must not get its default weight of 1.
        defaults = DEFAULT_WEIGHTS if "reranker" in values or script == LATIN else {**DEFAULT_WEIGHTS, "reranker": 0.0}
        result[script] = {name: float(values.get(name, default)) for name, default in defaults.items()}
    return result


def read_combination(path: Path, shop: str = "") -> dict[str, dict[str, float]]:
    """The weights in `path` for the shop named `shop` (its own where it has them, else the default's, script by
    script); the reranker alone for latin queries when there is no file."""
    content = _read(path)
    if content is None:
        return {LATIN: dict(DEFAULT_WEIGHTS)}
    own = _own_weights(content, shop)
    return {**per_script(content), **(per_script(own) if own else {})}


def has_shop_weights(path: Path, shop: str) -> bool:
    """Whether `path` holds weights of the shop's own (else the shop gets the default's)."""
    content = _read(path)
    return content is not None and bool(_own_weights(content, shop))


def _read(path: Path) -> dict | None:
    """The file's JSON object; None without a file."""
    if not Path(path).is_file():
        return None
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"combination weights {path} are not JSON: {error}") from None


def _own_weights(content: dict, shop: str) -> dict:
    return content.get(SHOPS, {}).get(shop, {}).get("weights", {}) if shop else {}
