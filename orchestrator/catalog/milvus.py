"""A shop's catalog in Milvus: products, their BM25 text and both embeddings, searched by lexical and dense
retrieval. The only module that imports pymilvus; the same code talks to Milvus Lite here and to Milvus standalone or
distributed in production, only the URL changes.

Each shop is an alias (`shop_home_depot`) over one collection per generation (`shop_home_depot__g1`, `__g2`...):
a full rebuild fills a new generation while the alias serves the old one, then `switch_alias` moves every reader and
writer at once, and can move them back. Milvus Lite 2.5.1 implements no alias call, so the alias is a row of the
`shoprank_aliases` collection rather than a Milvus alias (see MilvusCatalog).

The calls are synchronous (MilvusClient is); an asyncio caller runs them with `asyncio.to_thread`. One MilvusCatalog
may be shared by threads: pymilvus keeps one gRPC channel per client, and gRPC channels are thread-safe.

Errors: pymilvus's exceptions are translated here, into

    CatalogStoreError             a call to Milvus failed (refused, malformed, an unknown collection...)
    └── CatalogUnavailable        nothing answers at the Milvus URL, or it did not answer in time

(core/errors.py). A filter or
record that cannot be expressed raises core.errors.InvalidRequest before anything is sent.

What Milvus Lite 2.5.1 can and cannot do, found by trying it (timings: benchmarks/milvus_retrieval.py):
- no nullable fields: a product without a price is stored with `has_price` false and price 0.0, and fails every
  price filter, as orchestrator/filters.py's NaN does;
- no partial update: `update_fields` reads whole rows (with their vectors) and writes them back;
- no expression templates (filter_params): literals are escaped here; control characters cannot be written in a
  literal at all, so the filter keys are stored and matched with them replaced by spaces;
- no alias calls (UNIMPLEMENTED), see above;
- a delete (and so an upsert) writes the primary keys into an SQLite statement unescaped, in apostrophes: an
  apostrophe in a product id is stored as a private-use character (APOSTROPHE_KEY) and read back as one;
- every acknowledged write is a committed SQLite transaction (fdatasync before the answer), so it survives `kill -9`
  of the server; reads see it at once (the consistency level is set to Strong for servers where it matters).
"""

from __future__ import annotations

import json
import math
import re
import time
import unicodedata
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

import grpc
import numpy as np
from pymilvus import DataType, Function, FunctionType, MilvusClient
from pymilvus.client.types import Status
from pymilvus.exceptions import ConnectError, MilvusException, MilvusUnavailableException

from core.analysis import analyze
from core.catalog import Product
from core.errors import CatalogStoreError, CatalogUnavailable, ConfigError, InvalidRequest
from orchestrator.filters import TEXT_FIELDS, Filter, validate_filters


# The schema, named once.
PRODUCT_ID = "product_id"
TITLE, DESCRIPTION, BRAND, CATEGORY, DEPARTMENT = "title", "description", "brand", "category", "department"
PRICE, HAS_PRICE, STOCK, IMAGE_URL, ATTRIBUTES = "price", "has_price", "stock", "image_url", "attributes"
TEXT = "text"  # Product.search_text(), analyzed for BM25
TEXT_SPARSE = "text_sparse"  # filled by Milvus's BM25 function from TEXT; never written or read by us
DENSE, MULTILINGUAL = "dense", "multilingual"  # the bi-encoder's and the multilingual encoder's unit vectors
VECTOR_FIELDS = (DENSE, MULTILINGUAL)
FILTER_KEYS = {name: f"{name}_key" for name in TEXT_FIELDS}  # casefolded copies of brand, category, department
MAX_LENGTHS = {PRODUCT_ID: 512, TITLE: 4096, DESCRIPTION: 65535, BRAND: 1024, CATEGORY: 1024, DEPARTMENT: 1024,
               IMAGE_URL: 4096, TEXT: 8192, **{key: 1024 for key in FILTER_KEYS.values()}}  # bytes, as Milvus counts
PRODUCT_FIELDS = (PRODUCT_ID, TITLE, DESCRIPTION, BRAND, CATEGORY, DEPARTMENT, PRICE, HAS_PRICE, STOCK, IMAGE_URL,
                  ATTRIBUTES)
STORED_FIELDS = (*PRODUCT_FIELDS, TEXT, *FILTER_KEYS.values(), *VECTOR_FIELDS)  # all we write (TEXT_SPARSE is derived)
# Fields whose change embeds nothing: neither search_text() nor meaning_text() reads them.
EMBEDDING_FREE_FIELDS = (PRICE, STOCK, DEPARTMENT, IMAGE_URL, ATTRIBUTES)

WRITE_BATCH = 1000  # rows per upsert call (~4 KB of vectors each, well under gRPC's 64 MB message limit)
MAX_TOP_K = 16384  # Milvus's limit on one search's results
ANALYZED = "shoprank"  # CollectionSpec.analyzer: text stored as core.analysis terms, split on whitespace
SHOP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
CONSISTENCY = "Strong"
ALIASES = "shoprank_aliases"  # one row per shop: the collection its alias names (see MilvusCatalog)
ALIAS, ALIAS_TARGET, ALIAS_VECTOR = "alias", "collection", "unused"


@dataclass(frozen=True)
class CollectionSpec:
    """How one generation's collection is built; kept in the collection's description so that readers search it with
    the parameters it was built for."""

    dense_dim: int = 384
    multilingual_dim: int = 512
    # "shoprank": the text is stored as core.analysis's terms (what the in-process BM25 indexes: S-stemmed words, CJK
    # bigrams) and split on spaces; else a Milvus built-in analyzer: "english" stems, "chinese" segments with jieba.
    analyzer: str = ANALYZED
    bm25_k1: float = 1.2  # Lucene's, as the in-process index
    bm25_b: float = 0.75
    # What the generation holds: the encoder versions that embedded its products (queries must be encoded by the
    # same), and the catalog it was built from.
    dense_version: str = ""
    multilingual_version: str = ""
    source: str = ""
    index_type: str = "IVF_FLAT"  # what Milvus Lite builds: FLAT, IVF_FLAT or AUTOINDEX (HNSW on a Milvus server)
    nlist: int = 128  # IVF_FLAT's clusters
    nprobe: int = 32  # IVF_FLAT's clusters searched per query

    def index_params(self) -> dict[str, Any]:
        return {"nlist": self.nlist} if self.index_type == "IVF_FLAT" else {}

    def search_params(self) -> dict[str, Any]:
        return {"nprobe": self.nprobe} if self.index_type == "IVF_FLAT" else {}


@dataclass(frozen=True)
class StockedProduct:
    """A product as the catalog holds it, with its stock."""

    product: Product
    stock: int


@dataclass(frozen=True)
class CatalogRecord:
    """A product to store: its fields, its stock and both of its unit-normalized embeddings."""

    product: Product
    stock: int
    dense: Sequence[float] | np.ndarray
    multilingual: Sequence[float] | np.ndarray


@dataclass(frozen=True)
class Generation:
    """One collection of a shop: its number, whether the shop's alias points at it, and how it was built."""

    number: int
    live: bool
    spec: CollectionSpec = field(default_factory=CollectionSpec)


class Hits(NamedTuple):
    """Retrieved products, best first: their ids and scores (BM25, or the inner product of unit vectors)."""

    ids: list[str]
    scores: np.ndarray


# Filters: the domain's filters as a Milvus boolean expression.

def filter_key(value: str) -> str:
    """What a text filter matches on: the value casefolded (as orchestrator/filters.py does), with control characters,
    which a Milvus string literal cannot carry, as spaces."""
    return "".join(" " if unicodedata.category(char) == "Cc" else char for char in value.casefold())


def string_literal(value: str) -> str:
    """`value` as a double-quoted Milvus string literal: backslashes and quotes escaped, so nothing in it is read as
    expression syntax."""
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise InvalidRequest(f"{value!r} holds a control character, which a Milvus filter cannot match")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def number_literal(value: float) -> str:
    number = float(value)
    if not math.isfinite(number):
        raise InvalidRequest(f"filter bound {value!r} is not a finite number")
    return repr(number)


def in_list(name: str, values: Iterable[str]) -> str:
    """`name in ["a", "b"]` with each value escaped."""
    return f"{name} in [{', '.join(string_literal(value) for value in values)}]"


# Product ids: what Milvus holds of them. Milvus Lite 2.5.1 deletes rows (and so upserts them: a delete, then an
# insert) by an SQLite statement that quotes their primary keys in apostrophes without escaping them: a key holding
# one fails ('near "s": syntax error'), and a crafted one (x') OR ('1'='1) deletes every row of the collection from
# its store. So an apostrophe is stored as APOSTROPHE_KEY, a private-use character, and read back as an apostrophe;
# a product id holding that character cannot be stored, nor one holding a control character (which no filter can
# match: see string_literal).
APOSTROPHE_KEY = "\ue027"


def id_problem(product_id: str) -> str:
    """Why the catalog in Milvus cannot hold a product with this id; "" when it can."""
    if any(unicodedata.category(char) == "Cc" for char in product_id):
        return "holds a control character, which a Milvus filter cannot match"
    if APOSTROPHE_KEY in product_id:
        return "holds U+E027, a private-use character the catalog in Milvus keeps for apostrophes"
    return ""


def stored_id(product_id: str) -> str:
    """The primary key a product id is stored under (see APOSTROPHE_KEY)."""
    return product_id.replace("'", APOSTROPHE_KEY)


def product_id_of(key: str) -> str:
    """The product id stored under a primary key."""
    return key.replace(APOSTROPHE_KEY, "'")


def stored_keys(ids: Iterable[str]) -> list[str]:
    """The primary keys of `ids`, once each, in order; ids no stored product can have are left out (their products
    are not stored)."""
    return [stored_id(product_id) for product_id in dict.fromkeys(ids) if not id_problem(product_id)]


def filter_expression(filters: Sequence[Filter] = (), in_stock: bool = False) -> str:
    """The Milvus boolean expression that keeps what every filter keeps (and, with `in_stock`, only products with
    stock); "" keeps everything. Raises InvalidRequest for a filter that cannot be applied as written."""
    validate_filters(filters)
    parts = []
    for item in filters:
        if item.field in TEXT_FIELDS:
            keys = dict.fromkeys(filter_key(value) for value in item.any_of)  # unique, in order
            parts.append(in_list(FILTER_KEYS[item.field], keys))
        else:  # price; one without a price passes no price filter
            bounds = [f"{HAS_PRICE} == true"]
            if item.min is not None:
                bounds.append(f"{item.field} >= {number_literal(item.min)}")
            if item.max is not None:
                bounds.append(f"{item.field} <= {number_literal(item.max)}")
            parts.append(" and ".join(bounds))
    if in_stock:
        parts.append(f"{STOCK} > 0")
    return conjunction(list(dict.fromkeys(parts))) if parts else ""


def conjunction(parts: Sequence[str]) -> str:
    """`parts` joined by `and` as a balanced tree of parentheses: Milvus Lite 2.5.1 cannot plan a flat chain of more
    than ~50 `and`s ("unsupported expr proto node"), while a balanced tree of 100 parts is only 7 deep."""
    if len(parts) == 1:
        return parts[0]
    middle = len(parts) // 2
    return " and ".join(f"({conjunction(half)})" for half in (parts[:middle], parts[middle:]))


# Errors: pymilvus's, translated once.

def _status_code(error: BaseException) -> object:
    code = getattr(error, "code", None)
    # pymilvus 2.5 passes a gRPC error's bound `code` method as the MilvusException's code
    return code() if callable(code) else code


UNAVAILABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, Status.CONNECT_FAILED)


# Where in its source Milvus failed (" at /workspace/milvus-lite/.../PlanProto.cpp:543"): the server's business, never
# a client's.
SOURCE_PATH = re.compile(r"\s*(?:\bat\s+)?/[\w./+-]+\.(?:cpp|cc|cxx|h|hpp|go|py)(?::\d+)?")


def _message(error: Exception) -> str:
    """The error's message without Milvus's source paths."""
    return SOURCE_PATH.sub("", str(getattr(error, "message", None) or error)).strip()


def _translate(error: Exception, what: str) -> CatalogStoreError:
    if isinstance(error, (ConnectError, MilvusUnavailableException)) or _status_code(error) in UNAVAILABLE_CODES:
        return CatalogUnavailable(f"Milvus did not answer ({what}): {_message(error)}")
    return CatalogStoreError(f"Milvus refused to {what}: {_message(error)}")


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except (MilvusException, grpc.RpcError) as error:
        raise _translate(error, what) from error


def client_uri(url: str) -> str:
    """MilvusClient's URI for a URL given as host:port, http://host:port or milvus://host:port."""
    if url.startswith("milvus://"):
        return "http://" + url[len("milvus://"):]
    return url if "://" in url else f"http://{url}"


def alias_of(shop: str) -> str:
    """The alias that names a shop's live collection (Milvus names allow letters, digits and underscores)."""
    if not SHOP_NAME.match(shop):
        raise ConfigError(f"shop name {shop!r} must be lowercase letters, digits and hyphens, at most 63 characters")
    return "shop_" + shop.replace("-", "_")


class MilvusCatalog:
    """One shop's catalog in Milvus, read and written through the shop's alias (its live generation), or through
    one generation's collection for a catalog from `generation(n)`."""

    def __init__(self, url: str, shop: str, timeout_s: float = 10.0, *, alias_ttl_s: float = 0.0,
                 _client: MilvusClient | None = None, _generation: int | None = None) -> None:
        self.url = url
        self.alias_ttl_s = alias_ttl_s
        self._live: tuple[str, float] | None = None  # the live collection as last read, and when
        self.shop = shop
        self.alias = alias_of(shop)
        self.timeout_s = timeout_s
        # pymilvus stops retrying a call that failed (the server is down) after `timeout` seconds only when it is an
        # int; given a float it retries 75 times with a growing back-off, for minutes.
        self._timeout = max(1, math.ceil(timeout_s))
        self._generation = _generation
        self._specs: dict[str, CollectionSpec] = {}
        self._aliases_ready = False
        self._owns_client = _client is None
        if _client is not None:
            self._client = _client
        else:
            # A connection of its own: pymilvus shares one per URI unless named, and closing it closes it for all.
            with _translated(f"connect to {url}"):
                self._client = MilvusClient(uri=client_uri(url), timeout=self._timeout,
                                            alias=f"shoprank-{uuid.uuid4()}")

    def close(self) -> None:
        """Close the connection (a catalog from `generation(n)` shares its parent's and leaves it open)."""
        if self._owns_client:
            with _translated("close the connection"):
                self._client.close()

    # Generations: one collection each, the live one named by the shop's alias. Milvus Lite 2.5.1 answers every
    # alias call (create, alter, describe, list) with UNIMPLEMENTED, so the alias is a row of ALIASES instead: one
    # upsert switches it atomically, on Lite and on a server alike. It is read on every call (a primary-key lookup),
    # so a replica follows a switch at its next call and no write lands in a generation switched away from earlier.

    def _collection_name(self, number: int) -> str:
        return f"{self.alias}__g{number}"

    def generation(self, number: int) -> "MilvusCatalog":
        """This shop's generation `number`, read and written directly (what a rebuild fills before switching)."""
        return MilvusCatalog(self.url, self.shop, self.timeout_s, _client=self._client, _generation=number)

    def generations(self) -> list[Generation]:
        """The shop's generations, oldest first."""
        prefix = f"{self.alias}__g"
        with _translated("list collections"):
            names = [name for name in self._client.list_collections(timeout=self._timeout)
                     if name.startswith(prefix) and name[len(prefix):].isdigit()]
        live = self._live_collection()
        return sorted((Generation(int(name[len(prefix):]), name == live, self._spec(name)) for name in names),
                      key=lambda item: item.number)

    def _ensure_aliases(self) -> None:
        if self._aliases_ready:
            return
        with _translated(f"create {ALIASES}"):
            if not self._client.has_collection(ALIASES, timeout=self._timeout):
                schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
                schema.add_field(ALIAS, DataType.VARCHAR, is_primary=True, max_length=128)
                schema.add_field(ALIAS_TARGET, DataType.VARCHAR, max_length=256)
                schema.add_field(ALIAS_VECTOR, DataType.FLOAT_VECTOR, dim=2)  # Milvus wants one in every collection
                indexes = self._client.prepare_index_params()
                indexes.add_index(ALIAS_VECTOR, index_type="FLAT", metric_type="L2")
                self._client.create_collection(ALIASES, schema=schema, index_params=indexes,
                                               consistency_level=CONSISTENCY, timeout=self._timeout)
        self._aliases_ready = True

    def _live_collection(self) -> str | None:
        if not self._aliases_ready:
            with _translated(f"look for {ALIASES}"):
                if not self._client.has_collection(ALIASES, timeout=self._timeout):
                    return None
            self._aliases_ready = True
        with _translated(f"read alias {self.alias}"):
            rows = self._client.query(ALIASES, filter=f"{ALIAS} == {string_literal(self.alias)}",
                                      output_fields=[ALIAS_TARGET], consistency_level=CONSISTENCY,
                                      timeout=self._timeout)
        return rows[0][ALIAS_TARGET] if rows else None

    def live_generation(self) -> int | None:
        """The generation the shop's alias points at; None before the first `ensure`."""
        live = self._live_collection()
        return None if live is None else int(live.rsplit("__g", 1)[1])

    def create_generation(self, spec: CollectionSpec = CollectionSpec()) -> int:
        """Create the shop's next generation, empty and not yet live; its number."""
        existing = [item.number for item in self.generations()]
        number = max(existing, default=0) + 1
        self._create(self._collection_name(number), spec)
        return number

    def ensure(self, spec: CollectionSpec = CollectionSpec()) -> int:
        """The shop's live generation, creating generation 1 and pointing the alias at it when the shop has none."""
        live = self.live_generation()
        if live is not None:
            return live
        number = self.create_generation(spec)
        self.switch_alias(number)
        return number

    def switch_alias(self, number: int) -> None:
        """Point the shop's alias at generation `number`: every reader and writer of the shop moves to it at once."""
        name = self._collection_name(number)
        with _translated(f"look for {name}"):
            exists = self._client.has_collection(name, timeout=self._timeout)
        if not exists:
            raise InvalidRequest(f"shop {self.shop!r} has no generation {number}")
        self._ensure_aliases()
        with _translated(f"point {self.alias} at {name}"):
            self._client.upsert(ALIASES, [{ALIAS: self.alias, ALIAS_TARGET: name, ALIAS_VECTOR: [0.0, 0.0]}],
                                timeout=self._timeout)

    def drop_generation(self, number: int) -> None:
        """Drop a generation that is not live."""
        name = self._collection_name(number)
        if self._live_collection() == name:
            raise InvalidRequest(f"generation {number} of shop {self.shop!r} is live; switch the alias away first")
        with _translated(f"drop {name}"):
            self._client.drop_collection(name, timeout=self._timeout)
        self._specs.pop(name, None)

    def drop_all(self) -> None:
        """Drop the shop's alias and every generation (tests, benchmarks)."""
        if self._live_collection() is not None:
            with _translated(f"drop alias {self.alias}"):
                self._client.delete(ALIASES, filter=f"{ALIAS} == {string_literal(self.alias)}",
                                    timeout=self._timeout)
        for item in self.generations():
            self.drop_generation(item.number)

    def _create(self, name: str, spec: CollectionSpec) -> None:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                            description=json.dumps(asdict(spec)))
        schema.add_field(PRODUCT_ID, DataType.VARCHAR, is_primary=True, max_length=MAX_LENGTHS[PRODUCT_ID])
        for text_field in (TITLE, DESCRIPTION, BRAND, CATEGORY, DEPARTMENT, IMAGE_URL, *FILTER_KEYS.values()):
            schema.add_field(text_field, DataType.VARCHAR, max_length=MAX_LENGTHS[text_field])
        schema.add_field(PRICE, DataType.DOUBLE)
        schema.add_field(HAS_PRICE, DataType.BOOL)
        schema.add_field(STOCK, DataType.INT64)
        schema.add_field(ATTRIBUTES, DataType.JSON)
        analyzer = {"tokenizer": "whitespace"} if spec.analyzer == ANALYZED else {"type": spec.analyzer}
        schema.add_field(TEXT, DataType.VARCHAR, max_length=MAX_LENGTHS[TEXT], enable_analyzer=True,
                         analyzer_params=analyzer)
        schema.add_field(TEXT_SPARSE, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field(DENSE, DataType.FLOAT_VECTOR, dim=spec.dense_dim)
        schema.add_field(MULTILINGUAL, DataType.FLOAT_VECTOR, dim=spec.multilingual_dim)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=[TEXT],
                                     output_field_names=[TEXT_SPARSE]))
        indexes = self._client.prepare_index_params()
        indexes.add_index(TEXT_SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                          params={"bm25_k1": spec.bm25_k1, "bm25_b": spec.bm25_b})
        for vector in VECTOR_FIELDS:
            indexes.add_index(vector, index_type=spec.index_type, metric_type="IP", params=spec.index_params())
        with _translated(f"create collection {name}"):
            self._client.create_collection(name, schema=schema, index_params=indexes, consistency_level=CONSISTENCY,
                                           timeout=self._timeout)
        self._specs[name] = spec

    def _spec(self, name: str) -> CollectionSpec:
        if name not in self._specs:
            with _translated(f"describe {name}"):
                description = self._client.describe_collection(name, timeout=self._timeout).get("description", "")
            try:
                self._specs[name] = CollectionSpec(**json.loads(description))
            except (ValueError, TypeError):
                raise CatalogStoreError(f"collection {name} was not made by shoprank: its description is "
                                        f"{description[:80]!r}") from None
        return self._specs[name]

    def _target(self, read: bool = False) -> str:
        """The collection this catalog reads and writes now. A read may take the alias as read up to `alias_ttl_s`
        ago (a switch reaches it within that); a write always reads the alias, so none lands in a generation
        switched away from."""
        if self._generation is not None:
            return self._collection_name(self._generation)
        now = time.monotonic()
        if read and self._live is not None and now - self._live[1] < self.alias_ttl_s:
            return self._live[0]
        live = self._live_collection()
        if live is None:
            raise CatalogStoreError(f"shop {self.shop!r} has no catalog in Milvus at {self.url}")
        self._live = (live, now)
        return live

    def reading(self) -> tuple[int, CollectionSpec]:
        """The generation reads go to now (the alias's, as read up to alias_ttl_s ago) and how it was built."""
        name = self._target(read=True)
        return int(name.rsplit("__g", 1)[1]), self._spec(name)

    @property
    def spec(self) -> CollectionSpec:
        """How the collection this catalog reads was built (for the alias: the live generation's)."""
        return self._spec(self._target(read=True))

    # Writes: each returns once Milvus has acknowledged (and, on Milvus Lite, committed) it.

    def upsert(self, records: Sequence[CatalogRecord]) -> None:
        """Insert or replace whole products, vectors included."""
        name = self._target()
        spec = self._spec(name)
        self._write(name, [_row(record, spec) for record in records])

    def _write(self, name: str, rows: list[dict[str, Any]]) -> None:
        # Each batch is one acknowledged write; a failure leaves earlier batches stored (upserts are idempotent:
        # write the lot again).
        rows = [{**row, PRODUCT_ID: stored_id(row[PRODUCT_ID])} for row in rows]
        for start in range(0, len(rows), WRITE_BATCH):
            with _translated(f"upsert into {name}"):
                self._client.upsert(name, rows[start:start + WRITE_BATCH], timeout=self._timeout)

    def update_fields(self, changes: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Change fields that embed nothing (price, stock, department, image_url, attributes) of stored products,
        keeping their text and vectors: `{product_id: {"price": 9.99, "stock": 0}}`; a price of None removes it.
        Returns the ids that are not stored (and so were not changed).

        Milvus 2.5 has no partial update, so each row is read with its vectors and written back whole: a concurrent
        write of the same product in between is overwritten (the catalog's writer orders a shop's changes).
        """
        for product_id, fields in changes.items():
            unknown = set(fields) - set(EMBEDDING_FREE_FIELDS)
            if unknown:
                raise InvalidRequest(f"product {product_id!r}: {', '.join(sorted(unknown))} cannot change without "
                                     f"embedding again; upsert the whole product")
        name = self._target()
        ids = list(changes)
        stored = {row[PRODUCT_ID]: row for row in self._query(name, ids, STORED_FIELDS)}
        rows = []
        for product_id, row in stored.items():
            row = {field_name: row[field_name] for field_name in STORED_FIELDS}
            for field_name, value in changes[product_id].items():
                if field_name == PRICE:
                    row[HAS_PRICE] = value is not None
                    row[PRICE] = 0.0 if value is None else _price(value, product_id)
                elif field_name == STOCK:
                    row[STOCK] = _stock(value, product_id)
                elif field_name == ATTRIBUTES:
                    row[ATTRIBUTES] = {str(key): str(item) for key, item in dict(value).items()}
                else:  # department, image_url
                    row[field_name] = str(value)
                    if field_name in FILTER_KEYS:
                        row[FILTER_KEYS[field_name]] = filter_key(row[field_name])
            for vector in VECTOR_FIELDS:
                row[vector] = np.asarray(row[vector], dtype=np.float32)
            _check_lengths(row, product_id)
            rows.append(row)
        self._write(name, rows)
        return [product_id for product_id in ids if product_id not in stored]

    def delete(self, ids: Sequence[str]) -> None:
        """Remove products; ids that are not stored are ignored."""
        name = self._target()
        keys = stored_keys(ids)
        for start in range(0, len(keys), WRITE_BATCH):
            expression = in_list(PRODUCT_ID, keys[start:start + WRITE_BATCH])
            with _translated(f"delete from {name}"):
                self._client.delete(name, filter=expression, timeout=self._timeout)

    # Reads: each sees every write acknowledged before it.

    def _query(self, name: str, ids: Sequence[str], fields: Sequence[str]) -> list[dict[str, Any]]:
        # Never MilvusClient.get: it quotes string ids without escaping them.
        rows: list[dict[str, Any]] = []
        keys = stored_keys(ids)
        for start in range(0, len(keys), WRITE_BATCH):
            part = keys[start:start + WRITE_BATCH]
            with _translated(f"read from {name}"):
                rows.extend(self._client.query(name, filter=in_list(PRODUCT_ID, part), output_fields=list(fields),
                                               limit=len(part), consistency_level=CONSISTENCY,
                                               timeout=self._timeout))
        return [_read(row) for row in rows]

    def get(self, ids: Sequence[str]) -> list[StockedProduct]:
        """The stored products among `ids`, in the order asked."""
        found = {row[PRODUCT_ID]: row for row in self._query(self._target(read=True), ids, PRODUCT_FIELDS)}
        return [_stocked(found[product_id]) for product_id in dict.fromkeys(ids) if product_id in found]

    def count(self) -> int:
        """How many products are stored."""
        return self._count(self._target(read=True))

    def _count(self, name: str) -> int:
        with _translated(f"count {name}"):
            rows = self._client.query(name, filter="", output_fields=["count(*)"], consistency_level=CONSISTENCY,
                                      timeout=self._timeout)
        return int(rows[0]["count(*)"])

    def lexical(self, text: str, k: int, expression: str = "") -> Hits:
        """The `k` products whose text best matches `text` by BM25 (analyzed by the collection's analyzer), among
        those `expression` (see filter_expression) keeps."""
        name = self._target(read=True)
        text = _text(text, self._spec(name))
        if not text.strip() or k <= 0:
            return Hits([], np.zeros(0, dtype=np.float32))
        return self._search(name, TEXT_SPARSE, text, k, expression, {"metric_type": "BM25"})

    def dense(self, field_name: str, vector: Sequence[float] | np.ndarray, k: int, expression: str = "") -> Hits:
        """The `k` products whose `field_name` vector (DENSE or MULTILINGUAL) has the largest inner product with
        `vector`, among those `expression` keeps."""
        if field_name not in VECTOR_FIELDS:
            raise InvalidRequest(f"unknown vector field {field_name!r}; known: {', '.join(VECTOR_FIELDS)}")
        if k <= 0:
            return Hits([], np.zeros(0, dtype=np.float32))
        name = self._target(read=True)
        query = np.asarray(vector, dtype=np.float32).tolist()
        return self._search(name, field_name, query, k, expression,
                            {"metric_type": "IP", "params": self._spec(name).search_params()})

    def _search(self, name: str, anns_field: str, query: Any, k: int, expression: str,
                params: dict[str, Any]) -> Hits:
        if k > MAX_TOP_K:
            raise InvalidRequest(f"at most {MAX_TOP_K} results per search, not {k}")
        try:
            result = self._client.search(name, data=[query], anns_field=anns_field, limit=k, filter=expression,
                                         output_fields=[], search_params=params, consistency_level=CONSISTENCY,
                                         timeout=self._timeout)
        except (MilvusException, grpc.RpcError) as error:
            # BM25 over no documents divides by an average length of zero: Milvus Lite refuses with "NaN or Inf".
            if anns_field == TEXT_SPARSE and "NaN or Inf" in str(error) and self._count(name) == 0:
                return Hits([], np.zeros(0, dtype=np.float32))
            raise _translate(error, f"search {name}") from error
        hits = result[0]
        return Hits([product_id_of(hit["id"]) for hit in hits], np.array([hit["distance"] for hit in hits], dtype=np.float32))

    def lexical_scores_of(self, text: str, ids: Sequence[str]) -> np.ndarray:
        """The BM25 score of each of `ids` for `text` (0 where its text has none of the words, or it is not
        stored), for fusing candidates another retriever found."""
        scores = np.zeros(len(ids), dtype=np.float32)
        keys = stored_keys(ids)
        name = self._target(read=True)
        text = _text(text, self._spec(name))
        if not keys or not text.strip():
            return scores
        found: dict[str, float] = {}
        for start in range(0, len(keys), WRITE_BATCH):
            part = keys[start:start + WRITE_BATCH]
            hits = self._search(name, TEXT_SPARSE, text, len(part), in_list(PRODUCT_ID, part),
                                {"metric_type": "BM25"})
            found.update(zip(hits.ids, hits.scores.tolist()))
        for position, product_id in enumerate(ids):
            scores[position] = found.get(product_id, 0.0)
        return scores

    def fetch(self, ids: Sequence[str], vector_fields: Sequence[str] = ()) -> tuple[list[StockedProduct],
                                                                                  dict[str, np.ndarray]]:
        """The stored products among `ids`, in the order asked, with their `vector_fields` (rows aligned), in one
        read."""
        unknown = set(vector_fields) - set(VECTOR_FIELDS)
        if unknown:
            raise InvalidRequest(f"unknown vector fields {sorted(unknown)}; known: {', '.join(VECTOR_FIELDS)}")
        name = self._target(read=True)
        found = {row[PRODUCT_ID]: row for row in self._query(name, ids, [*PRODUCT_FIELDS, *vector_fields])}
        rows = [found[product_id] for product_id in dict.fromkeys(ids) if product_id in found]
        spec = self._spec(name)
        vectors = {field_name: np.asarray([row[field_name] for row in rows], dtype=np.float32).reshape(
            len(rows), spec.dense_dim if field_name == DENSE else spec.multilingual_dim) for field_name in vector_fields}
        return [_stocked(row) for row in rows], vectors

    def scan(self, vector_fields: Sequence[str] = (), batch: int = WRITE_BATCH) -> Iterator[tuple[
            list[StockedProduct], dict[str, np.ndarray]]]:
        """Every stored product, a batch at a time, with its `vector_fields` (for what is built from the whole
        catalog: the spelling vocabulary, the intent prototypes)."""
        name = self._target(read=True)
        spec = self._spec(name)
        with _translated(f"scan {name}"):
            iterator = self._client.query_iterator(name, batch_size=batch, output_fields=[*PRODUCT_FIELDS,
                                                                                          *vector_fields],
                                                   timeout=self._timeout)
        try:
            while True:
                with _translated(f"scan {name}"):
                    rows = iterator.next()
                if not rows:
                    return
                rows = [_read(row) for row in rows]
                yield [_stocked(row) for row in rows], {
                    field_name: np.asarray([row[field_name] for row in rows], dtype=np.float32).reshape(
                        len(rows), spec.dense_dim if field_name == DENSE else spec.multilingual_dim)
                    for field_name in vector_fields}
        finally:
            iterator.close()

    def similarities(self, field_name: str, vector: Sequence[float] | np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """The inner product of each of `ids`' `field_name` vector with `vector` (0 for a product not stored), by a
        search restricted to them: the vectors stay in Milvus."""
        scores = np.zeros(len(ids), dtype=np.float32)
        keys = stored_keys(ids)
        found: dict[str, float] = {}
        for start in range(0, len(keys), WRITE_BATCH):
            part = keys[start:start + WRITE_BATCH]
            hits = self.dense(field_name, vector, len(part), in_list(PRODUCT_ID, part))
            found.update(zip(hits.ids, hits.scores.tolist()))
        for position, product_id in enumerate(ids):
            scores[position] = found.get(product_id, 0.0)
        return scores

    def vectors_of(self, field_name: str, ids: Sequence[str]) -> np.ndarray:
        """The `field_name` vectors of `ids`, one row each (zeros for a product that is not stored)."""
        if field_name not in VECTOR_FIELDS:
            raise InvalidRequest(f"unknown vector field {field_name!r}; known: {', '.join(VECTOR_FIELDS)}")
        name = self._target(read=True)
        spec = self._spec(name)
        dim = spec.dense_dim if field_name == DENSE else spec.multilingual_dim
        found = {row[PRODUCT_ID]: row[field_name] for row in self._query(name, ids, [PRODUCT_ID, field_name])}
        vectors = np.zeros((len(ids), dim), dtype=np.float32)
        for position, product_id in enumerate(ids):
            if product_id in found:
                vectors[position] = found[product_id]
        return vectors


# Rows: the schema's side of a product.

def _price(value: Any, product_id: str) -> float:
    price = float(value)
    if not math.isfinite(price):
        raise InvalidRequest(f"product {product_id!r}: price {value!r} is not a finite number")
    return price


def _stock(value: Any, product_id: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidRequest(f"product {product_id!r}: stock {value!r} is not a whole number of at least 0")
    return int(value)


def _vector(values: Sequence[float] | np.ndarray, dim: int, name: str, product_id: str) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    if vector.shape != (dim,) or not np.all(np.isfinite(vector)):
        raise InvalidRequest(f"product {product_id!r}: {name} must be {dim} finite numbers, not shape {vector.shape}")
    return vector


def _check_lengths(row: dict[str, Any], product_id: str) -> None:
    for name, limit in MAX_LENGTHS.items():
        if len(row[name].encode("utf-8")) > limit:
            raise InvalidRequest(f"product {product_id!r}: {name} is longer than {limit} bytes")
    if len(stored_id(product_id).encode("utf-8")) > MAX_LENGTHS[PRODUCT_ID]:
        raise InvalidRequest(f"product {product_id!r}: product_id is longer than {MAX_LENGTHS[PRODUCT_ID]} bytes as "
                             f"stored (an apostrophe takes 3, see APOSTROPHE_KEY)")


def _row(record: CatalogRecord, spec: CollectionSpec) -> dict[str, Any]:
    product = record.product
    identifier = product.product_id
    if not identifier:
        raise InvalidRequest("a product needs a product_id")
    problem = id_problem(identifier)
    if problem:
        raise InvalidRequest(f"product {identifier!r}: product_id {problem}")
    row = {
        PRODUCT_ID: identifier,
        TITLE: product.title,
        DESCRIPTION: product.description,
        BRAND: product.brand,
        CATEGORY: product.category,
        DEPARTMENT: product.department,
        PRICE: 0.0 if product.price is None else _price(product.price, identifier),
        HAS_PRICE: product.price is not None,
        STOCK: _stock(record.stock, identifier),
        IMAGE_URL: product.image_url,
        ATTRIBUTES: dict(product.attributes),
        TEXT: _text(product.search_text(), spec),
        DENSE: _vector(record.dense, spec.dense_dim, DENSE, identifier),
        MULTILINGUAL: _vector(record.multilingual, spec.multilingual_dim, MULTILINGUAL, identifier),
    }
    for name, key in FILTER_KEYS.items():
        row[key] = filter_key(row[name])
    _check_lengths(row, identifier)
    return row


def check_storable(product: Product, stock: int, spec: CollectionSpec) -> None:
    """InvalidRequest, naming the product, when it cannot be stored in a collection built by `spec` as it is (a field
    longer than the schema holds, a stock that is not a whole number of at least 0): checked before anything of a
    batch is written or embedded."""
    _row(CatalogRecord(product, stock, np.zeros(spec.dense_dim, np.float32),
                       np.zeros(spec.multilingual_dim, np.float32)), spec)


def _text(text: str, spec: CollectionSpec) -> str:
    """Text as the collection's BM25 analyzer takes it: core.analysis's terms for ANALYZED, else as written."""
    return " ".join(analyze(text)) if spec.analyzer == ANALYZED else text


def _read(row: dict[str, Any]) -> dict[str, Any]:
    """A row as Milvus returned it, with its product id as the product's (see APOSTROPHE_KEY)."""
    row[PRODUCT_ID] = product_id_of(row[PRODUCT_ID])
    return row


def _stocked(row: Mapping[str, Any]) -> StockedProduct:
    product = Product(product_id=row[PRODUCT_ID], title=row[TITLE], description=row[DESCRIPTION], brand=row[BRAND],
                      category=row[CATEGORY], department=row[DEPARTMENT],
                      price=float(row[PRICE]) if row[HAS_PRICE] else None, image_url=row[IMAGE_URL],
                      attributes=dict(row[ATTRIBUTES] or {}))
    return StockedProduct(product, int(row[STOCK]))
