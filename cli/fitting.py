"""`shoprank train`: the cross-encoder, its combination weights, mined negatives, and the personalization blend."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from core.errors import ShoprankError

from orchestrator.harness import fresh_profile_store, triton_options

from .options import catalog_options, on_catalog


def cmd_train(args: argparse.Namespace) -> None:
    if args.model == "blend":
        cmd_fit_blend(args)
        return
    if not args.judgments:
        raise ShoprankError(f"train {args.model} needs --judgments")
    if args.model == "combination":
        cmd_fit_combination(args)
        return
    if args.model == "negatives":
        cmd_mine_negatives(args)
        return
    try:
        from core.cross_encoder import is_release  # noqa: PLC0415
        from training.train import TrainConfig, teacher_problem, train_reranker  # noqa: PLC0415 - imports torch, peft
    except ImportError as error:
        raise ShoprankError(f"training needs the train extra (pip install 'shoprank[train]'): {error}") from None

    negatives_path = Path(args.negatives) if args.negatives else None
    config = TrainConfig(loss=args.loss, epochs=args.epochs, lr=args.lr, seed=args.seed,
                         max_train_queries=args.max_train_queries, layers=args.layers,
                         negatives_per_query=args.negatives_per_query if negatives_path else 0,
                         correct_spelling=not args.no_spelling_correction, full_finetune=args.full_finetune,
                         lora_rank=args.lora_rank, lora_alpha=2 * args.lora_rank,
                         teacher_weight=args.teacher_weight if args.teacher else 0.0)
    compare_to = Path(args.compare_to) if args.compare_to else None
    teacher = Path(args.teacher) if args.teacher else None
    if compare_to is not None and not is_release(compare_to):
        raise ShoprankError(f"--compare-to {compare_to} holds no trained cross-encoder (adapter or weights, and head)")
    problem = teacher_problem(teacher) if teacher is not None else None
    if problem is not None:
        raise ShoprankError(f"--{problem}")  # "--teacher DIR holds no ..."
    if teacher is not None and not 0.0 < args.teacher_weight <= 1.0:
        raise ShoprankError(f"--teacher-weight must be above 0 and at most 1, not {args.teacher_weight}")
    manifest = train_reranker(config, Path(args.catalog), Path(args.judgments), Path(args.out),
                              max_minutes=args.max_minutes, log=lambda message: print(message, flush=True),
                              finalize_only=args.finalize, negatives_path=negatives_path, compare_to=compare_to,
                              also=[(Path(c), Path(j)) for c, j in args.also],
                              measure_on=[(Path(c), Path(j)) for c, j in args.measure_on], teacher=teacher)
    print(json.dumps({key: manifest.get(key) for key in ("complete", "epochs_completed", "dev_ndcg@10", "test_ndcg@10")}))


def cmd_mine_negatives(args: argparse.Namespace) -> None:
    """Mine retrieved-but-unjudged products of the train split's queries (training/negatives.py)."""
    from core.judgments import load_judgments  # noqa: PLC0415
    from core.splits import select  # noqa: PLC0415
    from training import negatives  # noqa: PLC0415

    catalog = Path(args.catalog)
    judgments = select(load_judgments(args.judgments), "train")
    mined = on_catalog(args, catalog, lambda stub: negatives.mine(stub, judgments))
    negatives.save(Path(args.out), mined)
    print(json.dumps({"queries": len(mined), "negatives": sum(len(ids) for ids in mined.values()), "out": args.out}))


def cmd_fit_combination(args: argparse.Namespace) -> None:
    """Fit the combination's weights per query script through the serving path; store them in the manifest.

    The default weights (every shop without its own) are fit on the dev split of --judgments (the reranker was
    trained on its train split), its judged products and its searches, and on the train split of every --also
    set, starting from the released weights, no set falling below what those gave it. Each --shop-set's shop then
    gets its own weights, fit on the train split of its judgments from the default ones, none of its sets falling;
    --catalog's shop (--shop) keeps the default's as its own."""
    from core.catalog import load_catalog, shop_of  # noqa: PLC0415
    from core.judgments import load_judgments  # noqa: PLC0415
    from core.splits import select  # noqa: PLC0415
    from core.weights import SHOPS, per_script  # noqa: PLC0415
    from training import combination  # noqa: PLC0415

    manifest_path = Path(args.out) / "manifest.json"
    if not manifest_path.is_file():
        raise ShoprankError(f"no reranker manifest at {manifest_path}: train the reranker into {args.out} first")
    manifest = json.loads(manifest_path.read_text())
    # (catalog, judgments, split, search depth): the main set both ways, its judged products and its whole-catalog
    # searches (what `eval rerank` and `eval search` measure); the others' whole-catalog searches.
    main = (Path(args.catalog), Path(args.judgments))
    default_sets = [(*main, "dev", 0), (*main, "dev", 100)]
    default_sets += [(Path(catalog), Path(judgments), "train", 100) for catalog, judgments in args.also]
    shop_sets = [(Path(catalog), Path(judgments), "train", 100) for _, catalog, judgments in args.shop_set]
    shop_names = {Path(catalog): shop_of(catalog, shop) for shop, catalog, _ in args.shop_set}
    shop_names[main[0]] = shop_of(main[0], args.shop or "")

    def source(catalog, judgments_file, split, depth) -> str:
        return f"{judgments_file} ({split}, {'search' if depth else 'judged products'}) over {catalog}"

    cache = Path(args.components) if args.components else None
    data = combination.load(cache) if cache is not None and cache.is_file() else []
    for item in dict.fromkeys(default_sets + shop_sets):
        name = source(*item)
        if any(component.source == name for component in data):
            print(f"combination: {name} from {cache}", flush=True)
            continue
        catalog, judgments_file, split, depth = item
        index_dir = Path(args.index) if args.index and catalog == main[0] else None  # --index is --catalog's
        judgments = select(load_judgments(judgments_file), split)
        catalog_ids = {product.product_id for product in load_catalog(catalog, skip_untitled=args.skip_untitled)}
        data += on_catalog(args, catalog, lambda stub: combination.collect(
            stub, judgments, catalog_ids, source=name, search_depth=depth), adjust=combination.collect_settings,
            index_dir=index_dir, shop=shop_names.get(catalog, ""))
        if cache is not None:
            combination.save(cache, data)

    released = per_script(manifest.get("combination", {}).get("weights") or {"reranker": 1.0})
    default_data = [item for item in data if item.source in {source(*s) for s in default_sets}]
    # Latin weights start from the released ones; cjk from the multilingual cosine alone.
    weights, report = combination.fit_scripts(default_data, {"latin": released.get("latin")})
    result = {"weights": weights, "fit_on": [source(*s) for s in default_sets],
              "objective": "mean over sets of each set's mean nDCG@10, no set below its start", "scripts": report}
    for shop in dict.fromkeys(shop_names[catalog] for catalog, *_ in shop_sets):
        names = {source(*s) for s in shop_sets if shop_names[s[0]] == shop}
        shop_weights, shop_report = combination.fit_scripts([item for item in data if item.source in names], weights)
        result.setdefault(SHOPS, {})[shop] = {"weights": shop_weights, "fit_on": sorted(names), "scripts": shop_report}
    # The set the default was fit on keeps its weights as its own shop; the others get them without the
    # cross-encoder unless --unseen-reranker on (training/combination.py, UNSEEN_SHOP_RERANKER).
    result = combination.split_default(result, shop_names[main[0]], args.unseen_reranker)
    manifest["combination"] = result
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest["combination"]))


def cmd_fit_blend(args: argparse.Namespace) -> None:
    """Replay users' past orders, read the blend features of their next orders' searches, fit the blend."""
    from core.catalog import load_catalog  # noqa: PLC0415
    from training.blend_fit import QueryGroup, fit, load_blend_data, save_blend_data  # noqa: PLC0415
    from training.personal import collect_blend_data, load_histories  # noqa: PLC0415

    if args.data and all(Path(path).is_file() for path in args.data):
        groups = [group for path in args.data for group in load_blend_data(Path(path))]
        print(f"blend data: {len(groups)} searches from {', '.join(args.data)}", flush=True)
    else:
        if args.data and len(args.data) > 1:
            raise ShoprankError(f"--data: {', '.join(p for p in args.data if not Path(p).is_file())} missing; "
                                "several files are read only when all exist")
        if not args.events:
            raise ShoprankError("train blend needs --events (or --data FILE collected before)")
        catalog = Path(args.catalog)
        products = load_catalog(catalog, skip_untitled=args.skip_untitled)
        histories = load_histories(Path(args.events))
        if args.max_users:
            histories = dict(list(histories.items())[: args.max_users])
        with fresh_profile_store("blend") as store:
            def collecting(settings):  # a fresh store, and no blend: the explained order is the relevance order
                return dataclasses.replace(settings, blend_model=None, profile_store=store)

            collected = on_catalog(args, catalog, lambda stub: collect_blend_data(
                stub, histories, products, searches=tuple(args.searches.split(","))), adjust=collecting)
        groups = [QueryGroup(query_id, user, X, y) for query_id, user, X, y in collected]
        if args.data:
            save_blend_data(Path(args.data[0]), groups)
            print(f"blend data: {len(groups)} searches saved to {args.data[0]}", flush=True)
    manifest = fit(groups, Path(args.out), seed=args.seed, log=lambda message: print(message, flush=True))
    print(json.dumps({key: manifest.get(key) for key in ("kind", "version", "metrics")}))


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's commands."""
    sub = commands.add_parser("train", help="fine-tune a model on judgments")
    sub.add_argument("model", choices=("reranker", "combination", "negatives", "blend"),
                     help="reranker: fine-tune the cross-encoder; combination: fit its weights with BM25, cosine and "
                          "match features on dev; negatives: mine retrieved-but-unjudged products of the train queries; "
                          "blend: learn the personalization blend from users' events (--events)")
    sub.add_argument("--catalog", required=True)
    sub.add_argument("--judgments", help="reranker, combination, negatives: the judged queries")
    sub.add_argument("--events", help="blend: users' events (FORMATS.md), each user's last order is the target")
    sub.add_argument("--data", action="append",
                     help="blend: the collected features file (.npz): read when it exists, else written; repeatable "
                          "(all read, when all exist)")
    sub.add_argument("--searches", default="filtered",
                     help="blend: which searches to collect: filtered (the aisle's name over the aisle), unfiltered "
                          "(over the whole catalog, every 6th aisle), or both (default: filtered)")
    sub.add_argument("--max-users", type=int, help="blend: only the first N users of the events file")
    sub.add_argument("--out", required=True,
                     help="reranker and combination: the model folder (checkpoints, adapter and head, manifest.json); "
                          "negatives: the JSON Lines file to write")
    sub.add_argument("--loss", choices=("pointwise", "listwise", "pairwise"), default="pointwise",
                     help="default pointwise: it beat listwise on dev (models/reranker/manifest.json)")
    sub.add_argument("--epochs", type=int, default=2)
    sub.add_argument("--negatives", help="mined negatives file (`shoprank train negatives`) to add to the train queries")
    sub.add_argument("--negatives-per-query", type=int, default=3, help="mined negatives added to each train query (default 3)")
    sub.add_argument("--no-spelling-correction", action="store_true",
                     help="reranker: train on queries as typed, not as the service corrects them")
    sub.add_argument("--index", help="combination and negatives: prebuilt index of the catalog (default: cached under .shoprank/indexes)")
    sub.add_argument("--also", nargs=2, action="append", default=[], metavar=("CATALOG", "JUDGMENTS"),
                     help="combination: another shop's judged queries, whose judgments list every relevant product: "
                          "its train split is searched over its whole catalog and counts as much as --judgments; "
                          "reranker: another shop whose train split joins training and whose dev and test splits "
                          "are reported (repeatable)")
    sub.add_argument("--shop-set", nargs=3, action="append", default=[], metavar=("SHOP", "CATALOG", "JUDGMENTS"),
                     help="combination: a shop's own judged queries over its catalog (every relevant product judged): "
                          "the shop gets its own weights, fit on the train split from the default ones (repeatable; "
                          "a shop named twice is fit on both sets)")
    sub.add_argument("--unseen-reranker", choices=("on", "off"), default="off",
                     help="combination: whether shops without their own weights get the cross-encoder (default off: "
                          "on shops it was not fit on it lost to the zero-shot bi-encoder; training/combination.py)")
    sub.add_argument("--components", help="combination: the collected components (JSON Lines): read when it exists, "
                                          "else collected and written")
    sub.add_argument("--lr", type=float, default=3e-4)
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--max-train-queries", type=int, help="train on a seeded sample of the train queries")
    sub.add_argument("--layers", type=int, help="keep only the first N transformer layers (default: all 6)")
    sub.add_argument("--full-finetune", action="store_true",
                     help="reranker: train every weight instead of LoRA adapters (released as the whole transformer)")
    sub.add_argument("--lora-rank", type=int, default=16, help="reranker: LoRA rank (alpha is twice the rank)")
    sub.add_argument("--measure-on", nargs=2, action="append", default=[], metavar=("CATALOG", "JUDGMENTS"),
                     help="reranker: a shop kept out of training, reported whole beside the zero-shot bi-encoder "
                          "(repeatable)")
    sub.add_argument("--compare-to", help="reranker: an earlier release, scored beside the trained model on dev "
                                          "and test with paired 95%% intervals")
    sub.add_argument("--teacher", help="reranker: distil this trained cross-encoder (pointwise loss) into the "
                                       "targets: each becomes (1 - W) * gain + W * the teacher's score")
    sub.add_argument("--teacher-weight", type=float, default=0.5, metavar="W",
                     help="reranker: the teacher's share W of each target (default 0.5)")
    sub.add_argument("--max-minutes", type=float, help="stop (resumably) after this long")
    sub.add_argument("--finalize", action="store_true",
                     help="train no further: release the best adapter of the epochs completed in --out")
    catalog_options(sub)
    triton_options(sub)
    sub.set_defaults(func=cmd_train)

    sub = commands.add_parser("derive", help="derive judged queries (category name -> its products, near misses at "
                                             "gain 0) from a catalog without queries, to measure an unseen shop")
    sub.add_argument("source", choices=("instacart", "flipkart"), help="the catalog's layout (training/derived.py)")
    sub.add_argument("--from", dest="source_dir", required=True,
                     help="the source folder (instacart: catalog.csv; flipkart: product.csv)")
    sub.add_argument("--out", required=True, help="folder for the derived catalog.csv and judgments.csv")
    sub.add_argument("--per-query", type=int, default=5, help="relevant products judged per query (default 5), "
                                                              "and as many near misses")
    sub.add_argument("--seed", type=int, default=0)
    sub.set_defaults(func=cmd_derive)


def cmd_derive(args: argparse.Namespace) -> None:
    from training.derived import derive_source  # noqa: PLC0415

    if args.per_query < 1:
        raise ShoprankError(f"--per-query must be at least 1, not {args.per_query}")
    print(json.dumps(derive_source(args.source, Path(args.source_dir), Path(args.out), args.per_query, args.seed)))
