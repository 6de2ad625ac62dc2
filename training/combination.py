"""Learning the weights that combine the cross-encoder's score with BM25, the cosines, match features and intent.

final = reranker + w_bm25 * bm25 / max(bm25 over the query's candidates) + w_dense * MiniLM cosine
        + w_multilingual * multilingual cosine + w_overlap * overlap + w_numbers * numbers + w_units * units
        + w_intent * intent   (core/features.py, orchestrator/intent.py)

One set of weights per query script (core/language.py). Latin queries keep the cross-encoder's weight at 1
(only the ratios matter); cjk queries never reach it nor MiniLM, so theirs stay 0 and the multilingual
cosine's stays 1 instead.

The components come from the serving path itself (Search with the judged products as candidates and
explain on), so the weights are fit on exactly the numbers the orchestrator combines. The others are found by
coordinate ascent on nDCG@10, each weight in turn set to the best value of WEIGHT_GRID, until a full round
changes nothing. Several judged sets (shops) count equally, whatever their sizes: the objective is the mean
over sets of each set's mean nDCG@10, so a large shop does not decide alone what a small one gets. The test
splits are never used. `cross_validate` fits on half of the queries and measures on the other half, both
ways, for an estimate that is not measured on the queries the weights were chosen on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from core.language import CJK, LATIN, script_of
from core.metrics import ndcg_by_score
from core.weights import DEFAULT_WEIGHTS, SHOPS

# Every weight the orchestrator combines, the reranker's first.
COMPONENTS = tuple(DEFAULT_WEIGHTS)
# Per script: the component whose weight stays 1, and those a query of that script never gets.
ANCHOR = {LATIN: "reranker", CJK: "multilingual"}
ABSENT = {LATIN: (), CJK: ("reranker", "dense")}
# Weights sent with each collected query: any that make the service compute every component of the script.
COLLECT_WEIGHTS = {LATIN: {"reranker": 1.0}, CJK: {"multilingual": 1.0}}
# No negative weights: a closer lexical or semantic match never counts against a product. On dev the fit with
# negative values allowed (BM25 -0.5) scored the same (0.9392, 2-fold 0.9379 vs 0.9380 without).
# A first fit put the multilingual cosine at the grid's top (16, then 64) against the cross-encoder's 1; with the
# cosine as anchor instead, the small weights needed 0.05. The grid spans both.
WEIGHT_GRID = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
MAX_ROUNDS = 5


@dataclass(frozen=True)
class Components:
    """One judged query's candidates with the raw component scores the orchestrator saw."""

    query: str
    product_ids: list[str]
    gains: dict[str, float]
    features: np.ndarray  # [candidates, len(COMPONENTS)], bm25 divided by its maximum over the candidates
    source: str = ""  # which judged set (shop) the query comes from

    @property
    def script(self) -> str:
        return CJK if script_of(self.query) == CJK else LATIN


def collect_settings(settings):
    """The service settings `collect` needs: every candidate scored by the cross-encoder, whatever the defaults."""
    return dataclasses.replace(settings, rerank_depth=settings.rerank_depth or 100, cross_encoder_depth=0)


async def collect(stub: ranking_pb2_grpc.RankingStub, judgments: dict[str, dict[str, float]], catalog_ids: set[str],
                  show_progress: bool = True, source: str = "", search_depth: int = 0) -> list[Components]:
    """Ask the service for each query's component scores, explain on: over its judged products (rerank task), or,
    with `search_depth`, over the top `search_depth` of a search of the whole catalog, unjudged products at gain
    0 (for sets whose judgments list every relevant product)."""
    collected = []
    for query, judged in tqdm(judgments.items(), desc="components", unit="query", disable=not show_progress):
        candidates = sorted(pid for pid in judged if pid in catalog_ids)
        if not candidates:
            continue
        # Whatever the served weights, every component of the query's script is computed.
        anchor = COLLECT_WEIGHTS[CJK if script_of(query) == CJK else LATIN]
        if search_depth:
            request = ranking_pb2.SearchRequest(query=query, top_k=search_depth, explain=True,
                                                combination_weights=anchor)
        else:
            request = ranking_pb2.SearchRequest(query=query, candidate_ids=candidates, top_k=len(candidates),
                                                explain=True, combination_weights=anchor)
        response = await stub.Search(request)
        if response.degraded:
            raise RuntimeError(f"query {query!r} was answered degraded: {response.degraded_reason}")
        rows = []
        for item in response.items:
            raw = {component.name: component.raw for component in item.components}
            if "reranker" not in raw and script_of(query) != CJK:
                raise RuntimeError(f"query {query!r} was not reranked: is the reranker served and rerank_depth > 0?")
            rows.append([raw.get(name, 0.0) for name in COMPONENTS])
        features = np.array(rows, dtype=np.float64)
        top = features[:, 1].max(initial=0.0)
        features[:, 1] = features[:, 1] / top if top > 0 else 0.0
        collected.append(Components(query, [item.product_id for item in response.items], dict(judged), features,
                                    source))
    return collected


def query_ndcg(item: Components, weights: np.ndarray) -> float | None:
    """nDCG@10 of one query's candidates ordered by `weights`; None when none of them is relevant."""
    return ndcg_by_score(item.features @ weights, [item.gains.get(pid, 0.0) for pid in item.product_ids], 10,
                         judged=item.gains.values())


def source_ndcg(data: list[Components], weights: np.ndarray) -> dict[str, float]:
    """Each source's mean nDCG@10 under `weights`."""
    by_source: dict[str, list[float]] = {}
    for item in data:
        value = query_ndcg(item, weights)
        if value is not None:
            by_source.setdefault(item.source, []).append(value)
    return {source: float(np.mean(values)) for source, values in by_source.items()}


def mean_ndcg_over_sources(data: list[Components], weights: np.ndarray) -> float:
    """Mean over sources of each source's mean nDCG@10."""
    by_source = source_ndcg(data, weights)
    return float(np.mean(list(by_source.values()))) if by_source else float("nan")


def _vector(script: str, start: dict[str, float] | None = None, anchor: str | None = None) -> np.ndarray:
    """`start` as a vector, the anchor's weight 1 (the script's, or `anchor`); the anchor alone without `start`."""
    weights = np.array([float((start or {}).get(name, 0.0)) for name in COMPONENTS])
    weights[COMPONENTS.index(anchor or ANCHOR[script])] = 1.0
    return weights


def _coordinate_ascent(data: list[Components], script: str = LATIN, start: dict[str, float] | None = None,
                       anchor: str | None = None, absent: tuple[str, ...] = ()) -> np.ndarray:
    """From `start` (or the anchor alone), each free weight in turn set to the grid value that raises the mean over
    sources most, never letting one source fall below what `start` gave it: a step that helps one shop at
    another's cost is not taken. `anchor` replaces the script's anchor; the weights in `absent` stay as `start`
    has them (0 without it)."""
    anchor = anchor or ANCHOR[script]
    weights = _vector(script, start, anchor)
    floors = source_ndcg(data, weights)
    best = mean_ndcg_over_sources(data, weights)
    fixed = {anchor, *ABSENT[script], *absent}
    free = [i for i, name in enumerate(COMPONENTS) if name not in fixed]
    for _ in range(MAX_ROUNDS):
        changed = False
        for position in free:
            for value in WEIGHT_GRID:
                trial = weights.copy()
                trial[position] = value
                by_source = source_ndcg(data, trial)
                score = float(np.mean(list(by_source.values())))
                if score > best + 1e-6 and all(by_source[s] >= floors[s] for s in floors):
                    weights, best, changed = trial, score, True
        if not changed:
            break
    return weights


def fit(data: list[Components], script: str = LATIN,
        start: dict[str, float] | None = None) -> tuple[dict[str, float], float, float]:
    """(weights, nDCG@10 with them, nDCG@10 at the start: `start`, or the anchor alone), over the queries of
    `script` in `data`."""
    data = [item for item in data if item.script == script]
    weights = _coordinate_ascent(data, script, start)
    start_ndcg = mean_ndcg_over_sources(data, _vector(script, start))
    return dict(zip(COMPONENTS, weights.tolist())), mean_ndcg_over_sources(data, weights), start_ndcg


def fit_cheap(data: list[Components]) -> dict[str, float]:
    """Latin weights for the path without the cross-encoder (its weight 0), fit as `fit` fits, around the MiniLM
    cosine (weight 1) from the cosine alone: no set falls below what the zero-shot bi-encoder gives it."""
    data = [item for item in data if item.script == LATIN]
    return dict(zip(COMPONENTS, _coordinate_ascent(data, LATIN, anchor="dense", absent=("reranker",)).tolist()))


def cross_validate(data: list[Components], script: str = LATIN, start: dict[str, float] | None = None) -> float:
    """Mean nDCG@10 over the queries, each scored with weights fit on the other half (halves by query hash)."""
    data = [item for item in data if item.script == script]
    half = [int(hashlib.sha256(item.query.encode()).hexdigest(), 16) % 2 for item in data]
    folds = [[item for item, side in zip(data, half) if side == k] for k in (0, 1)]
    total, count = 0.0, 0
    for k in (0, 1):
        weights = _coordinate_ascent(folds[1 - k], script, start)
        total += mean_ndcg_over_sources(folds[k], weights) * len(folds[k])
        count += len(folds[k])
    return total / count


def save(path: Path, data: list[Components]) -> None:
    """The collected components as JSON Lines, so a refit need not ask the service again."""
    with open(path, "w", encoding="utf-8") as handle:
        for item in data:
            handle.write(json.dumps({"query": item.query, "product_ids": item.product_ids, "gains": item.gains,
                                     "features": item.features.tolist(), "source": item.source,
                                     "components": COMPONENTS}, ensure_ascii=False) + "\n")


def load(path: Path) -> list[Components]:
    data = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if tuple(row["components"]) != COMPONENTS:
                raise ValueError(f"{path} holds components {row['components']}, not {list(COMPONENTS)}: collect again")
            data.append(Components(row["query"], row["product_ids"], row["gains"], np.array(row["features"]),
                                   row["source"]))
    return data


def fit_scripts(data: list[Components], starts: dict[str, dict[str, float] | None]) -> tuple[dict, dict]:
    """Weights per script present in `data`, each fit from `starts[script]` (the anchor alone when missing),
    and a report of each: queries, nDCG@10 fit and 2-fold, at the start, per set."""
    weights, report = {}, {}
    for script, anchor in ANCHOR.items():
        queries = [item for item in data if item.script == script]
        if not queries:
            continue
        start = starts.get(script)
        weights[script], combined, at_start = fit(data, script, start)
        by_source = source_ndcg(queries, np.array([weights[script][name] for name in COMPONENTS]))
        report[script] = {"queries": len(queries), "ndcg@10": round(combined, 4),
                          "ndcg@10_2fold": round(cross_validate(data, script, start), 4),
                          "ndcg@10_at_start": round(at_start, 4), "start": start or f"{anchor} alone",
                          "by_set": {name: round(value, 4) for name, value in by_source.items()}}
    return weights, report


# Shops without their own judgments get the fitted weights without the cross-encoder. On judged category queries
# derived from two catalogs none of it was fit on (`shoprank derive`; judged rerank, nDCG@10, paired 95% intervals):
# - Instacart, 130 queries: with the cross-encoder the default lost to the zero-shot MiniLM bi-encoder, -0.0117
#   [-0.0238, -0.0002]; without it, +0.0004 [-0.0066, +0.0071], and +0.0121 [+0.0022, +0.0224] over with it;
# - Flipkart, 77 queries: both tied with the bi-encoder (+0.0018 with, +0.0031 without).
# The cross-encoder alone was 0.046-0.058 (Instacart) and 0.022 (Flipkart) below the default. The judged set the
# weights were fit on (Home Depot, where the cross-encoder adds +0.012 [+0.006, +0.018] in search) keeps them, the
# cross-encoder included, as its own shop's.
UNSEEN_SHOP_RERANKER = "off"


def without_reranker(weights: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The same weights per script with the cross-encoder's set to 0: the cheap combination, no Triton call."""
    return {script: {**values, "reranker": 0.0} for script, values in weights.items()}


def split_default(result: dict, shop: str, unseen_reranker: str = UNSEEN_SHOP_RERANKER) -> dict:
    """`result` (weights fit on a shop's judgments, {"weights": ..., "fit_on": ..., "scripts": ...}) with those
    weights kept as that shop's own (by its name), and with `unseen_reranker` "off", the default for every
    other shop without the cross-encoder. A shop already in result["shops"] keeps its own weights."""
    if unseen_reranker not in ("on", "off"):
        raise ValueError(f"unseen_reranker must be on or off, not {unseen_reranker!r}")
    if unseen_reranker == "on":
        return result
    shops = dict(result.get(SHOPS, {}))
    shops.setdefault(shop, {"weights": result["weights"], "fit_on": result.get("fit_on", []),
                            "scripts": result.get("scripts", {})})
    return {**result, "weights": without_reranker(result["weights"]), SHOPS: shops,
            "unseen_shops": "the fitted weights without the cross-encoder (training/combination.py, "
                            "UNSEEN_SHOP_RERANKER)"}
