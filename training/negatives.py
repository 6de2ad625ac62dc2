"""Retrieved-but-unjudged products, mined as negatives for the cross-encoder.

Judged products are the ones the shop's own search showed, so a reranker trained on them alone never sees
what our retrieval also brings up: products the query does not describe at all. Served on the whole catalog,
such a reranker can put them above judged products (full-catalog search nDCG@10 fell below the fused order).
Mining asks the serving path itself (Search, fused order, no reranking) for each train query's top products
and keeps the unjudged ones; training adds a seeded sample of them to the query with gain 0.

File format, JSON Lines: {"query": "...", "product_ids": ["...", ...]} in fused order, best first.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
from tqdm import tqdm

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from core.errors import DataError

MINE_DEPTH = 100


async def mine(stub: ranking_pb2_grpc.RankingStub, judgments: dict[str, dict[str, float]], depth: int = MINE_DEPTH,
               show_progress: bool = True) -> dict[str, list[str]]:
    """query -> the unjudged products among its top `depth` fused results, best first."""
    mined: dict[str, list[str]] = {}
    for query, judged in tqdm(judgments.items(), desc="negatives", unit="query", disable=not show_progress):
        request = ranking_pb2.SearchRequest(query=query, top_k=depth, skip_rerank=True)
        try:
            response = await stub.Search(request)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                continue  # a query the service refuses (e.g. punctuation only) has nothing to mine
            raise
        if response.degraded:
            raise RuntimeError(f"query {query!r} was answered degraded: {response.degraded_reason}")
        mined[query] = [item.product_id for item in response.items if item.product_id not in judged]
    return mined


def save(path: Path, mined: dict[str, list[str]]) -> None:
    """Write atomically: a partial file never replaces a complete one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".partial")
    with open(staging, "w", encoding="utf-8") as handle:
        for query, product_ids in mined.items():
            handle.write(json.dumps({"query": query, "product_ids": product_ids}, ensure_ascii=False) + "\n")
    staging.replace(path)


def load(path: Path) -> dict[str, list[str]]:
    """Read a file written by `save`; DataError naming the line of a malformed row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no negatives file at {path}: mine one with `shoprank train negatives ... --out {path}`")
    mined: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            try:
                row = json.loads(line)
                query, product_ids = row["query"], row["product_ids"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataError(f"negatives {path} line {line_number}: expected {{\"query\": ..., \"product_ids\": [...]}}") from None
            if not isinstance(query, str) or not isinstance(product_ids, list):
                raise DataError(f"negatives {path} line {line_number}: query must be text and product_ids a list")
            mined[query] = [str(pid) for pid in product_ids]
    return mined
