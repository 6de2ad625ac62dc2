"""`shoprank catalog`: change a shop's live catalog through a running service's admin API (its catalog in Milvus).

    shoprank catalog upsert changes.csv        insert or replace the products of a CSV or JSON Lines catalog file
    shoprank catalog delete D0001 D0002
    shoprank catalog get D0001                 the stored product with its stock, as JSON

A file is read as `shoprank index` reads a catalog (data/FORMATS.md; a `stock` column is the stock) and streamed
in batches; a record the loader or the service rejects is reported by its file line and the others are kept. A
change is in every replica's next search once the command has printed it. The token is SHOPRANK_ADMIN_TOKEN, the
service's own; the address is the service's admin port.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from core._proto.shoprank.v1 import admin_pb2, admin_pb2_grpc
from core.catalog import REQUIRED_COLUMNS, Product, product_from_row, read_table, stock_of
from core.errors import ConfigError, DataError, ShoprankError
from orchestrator.harness import settings_from

from .options import admin_access, admin_call, admin_options, open_channel

BATCH = 1000  # records per UpsertProducts call: one call's answer acknowledges them all


def to_record(product: Product) -> admin_pb2.ProductRecord:
    """A product read from a catalog file as the API's record: its `stock` column, if any, is its stock."""
    attributes = {key: value for key, value in product.attributes.items() if key != "stock"}
    record = admin_pb2.ProductRecord(product_id=product.product_id, title=product.title,
                                     description=product.description, brand=product.brand, category=product.category,
                                     department=product.department, stock=stock_of(product),
                                     image_url=product.image_url, attributes=attributes)
    if product.price is not None:
        record.price = product.price
    return record


def file_records(path: Path) -> Iterator[tuple[int, admin_pb2.ProductRecord | str]]:
    """(line number, record) of each row of a catalog file, or (line number, why the loader rejects the row)."""
    for line, row in read_table(path, REQUIRED_COLUMNS, "catalog"):
        try:
            yield line, to_record(product_from_row(row))
        except DataError as error:
            yield line, str(error)


def record_json(record: admin_pb2.ProductRecord) -> dict[str, Any]:
    """A stored product as `catalog get` prints it (price null when it has none)."""
    return {"product_id": record.product_id, "title": record.title, "description": record.description,
            "brand": record.brand, "category": record.category, "department": record.department,
            "price": record.price if record.HasField("price") else None, "stock": record.stock,
            "image_url": record.image_url, "attributes": dict(record.attributes)}


def _batches(path: Path, size: int) -> Iterator[tuple[list[int], list[admin_pb2.ProductRecord], list[str]]]:
    """The file's rows in batches: (file lines of the records, the records, the rejections as 'line N: why')."""
    lines: list[int] = []
    records: list[admin_pb2.ProductRecord] = []
    rejected: list[str] = []
    for line, record in file_records(path):
        if isinstance(record, str):
            rejected.append(f"line {line}: {record}")
            continue
        lines.append(line)
        records.append(record)
        if len(records) >= size:
            yield lines, records, rejected
            lines, records, rejected = [], [], []
    if records or rejected:
        yield lines, records, rejected


def cmd_upsert(args: argparse.Namespace) -> None:
    if args.batch < 1:
        raise ConfigError("--batch must be at least 1")
    address, metadata = admin_access(args)
    path = Path(args.file)
    totals = dict.fromkeys(("stored", "created", "reembedded", "fields_updated", "unchanged"), 0)
    rejected = 0

    async def upsert() -> None:
        nonlocal rejected
        async with open_channel(args, address) as channel:
            stub = admin_pb2_grpc.AdminStub(channel)
            stored_to = None  # the last file line of the last acknowledged batch
            for lines, records, refused in _batches(path, args.batch):
                answer = admin_pb2.UpsertProductsResponse()
                if records:
                    try:
                        answer = await stub.UpsertProducts(iter(records), timeout=args.timeout, metadata=metadata)
                    except grpc.aio.AioRpcError as error:
                        done = f"the rows up to line {stored_to} are stored" if stored_to else "none is stored"
                        raise DataError(f"{error.code().name}: {error.details()} ({path}: {done}; upsert the file "
                                        f"again from line {lines[0]})") from None
                    stored_to = lines[-1]
                refused += [f"line {lines[error.index]}: {error.message}" for error in answer.errors]
                for why in refused:
                    print(f"shoprank: {path} {why}", file=sys.stderr)
                rejected += len(refused)
                for name in totals:
                    totals[name] += getattr(answer, name)

    asyncio.run(upsert())
    print(f"{path}: {totals['stored']} products stored ({totals['created']} new, {totals['reembedded']} embedded "
          f"again, {totals['fields_updated']} with only fields changed, {totals['unchanged']} unchanged), "
          f"{rejected} rejected", flush=True)
    if rejected:
        raise DataError(f"{rejected} records of {path} were rejected (above); the others are stored")


def cmd_delete(args: argparse.Namespace) -> None:
    answer = admin_call(args, "DeleteProducts", admin_pb2.DeleteProductsRequest(product_ids=args.ids))
    print(f"deleted {answer.deleted} products" + (f"; not found: {', '.join(answer.not_found)}"
                                                   if answer.not_found else ""))


def cmd_get(args: argparse.Namespace) -> None:
    record = admin_call(args, "GetProduct", admin_pb2.GetProductRequest(product_id=args.id))
    print(json.dumps(record_json(record), ensure_ascii=False, indent=2))


def cmd_generations(args: argparse.Namespace) -> None:
    """The shop's generations in Milvus, the live one marked."""
    from orchestrator.catalog.milvus import MilvusCatalog  # noqa: PLC0415

    catalog = _milvus(args, MilvusCatalog)
    try:
        for item in catalog.generations():
            spec = item.spec
            print(f"{'*' if item.live else ' '} generation {item.number}: catalog {spec.source[:12] or '?'}, "
                  f"bi_encoder {spec.dense_version or '?'}, multilingual_encoder {spec.multilingual_version or '?'}, "
                  f"analyzer {spec.analyzer}")
    finally:
        catalog.close()


def cmd_switch(args: argparse.Namespace) -> None:
    """Point the shop's alias at another generation: every replica reads it, and encodes queries with its encoder
    versions, within a second or two."""
    from orchestrator.catalog.milvus import MilvusCatalog  # noqa: PLC0415

    catalog = _milvus(args, MilvusCatalog)
    try:
        before = catalog.live_generation()
        catalog.switch_alias(args.generation)
        print(f"shop {catalog.shop!r}: generation {before} -> {args.generation}")
    finally:
        catalog.close()


def _milvus(args: argparse.Namespace, kind):
    settings = settings_from(args)
    if not settings.catalog_store or not settings.shop:
        raise ShoprankError("name the Milvus and the shop: --catalog-store milvus://HOST:PORT --shop NAME "
                            "(or SHOPRANK_CATALOG_STORE, SHOPRANK_SHOP)")
    return kind(settings.catalog_store, settings.shop)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's commands."""
    catalog = commands.add_parser("catalog", help="change a shop's live catalog on a running service (admin API), "
                                                 "list and switch its generations in Milvus")
    actions = catalog.add_subparsers(dest="action", required=True)
    sub = actions.add_parser("upsert", help="insert or replace the products of a catalog file (CSV or JSON Lines)")
    sub.add_argument("file", help="a catalog file as data/FORMATS.md describes, with an optional stock column")
    sub.add_argument("--batch", type=int, default=BATCH,
                     help=f"records per call; each answer acknowledges its batch (default {BATCH})")
    admin_options(sub)
    sub.set_defaults(func=cmd_upsert)
    sub = actions.add_parser("delete", help="remove products by id")
    sub.add_argument("ids", nargs="+", metavar="ID")
    admin_options(sub, timeout_s=60.0)
    sub.set_defaults(func=cmd_delete)
    sub = actions.add_parser("get", help="print a stored product with its stock, as JSON")
    sub.add_argument("id")
    admin_options(sub, timeout_s=60.0)
    sub.set_defaults(func=cmd_get)
    for name, func, text in (("generations", cmd_generations, "list the shop's generations in Milvus (* live)"),
                             ("switch", cmd_switch, "point the shop at another generation (a rebuild's, or back)")):
        sub = actions.add_parser(name, help=text)
        if name == "switch":
            sub.add_argument("generation", type=int)
        sub.add_argument("--catalog-store", required=False, help="milvus://HOST:PORT (default SHOPRANK_CATALOG_STORE)")
        sub.add_argument("--shop", help="the shop (default SHOPRANK_SHOP)")
        sub.set_defaults(func=func)
