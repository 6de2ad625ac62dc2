"""Reading catalogs in the shared format (CSV or JSON Lines), with errors that name the offending row."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from .digest import files_digest
from .errors import DataError

log = logging.getLogger(__name__)

# The stock of a product whose catalog file gives none: available.
DEFAULT_STOCK = 1
SHOP_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
REQUIRED_COLUMNS = ("product_id", "title")
KNOWN_COLUMNS = ("product_id", "title", "description", "brand", "category", "department", "price", "image_url")


@dataclass(frozen=True)
class Product:
    """One catalog row. Unknown columns are kept in `attributes`."""

    product_id: str
    title: str
    description: str = ""
    brand: str = ""
    category: str = ""
    department: str = ""
    price: float | None = None
    image_url: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    def search_text(self) -> str:
        """The text both retrievers see: the title, then brand and category where they add something."""
        parts = [self.title]
        lowered = self.title.lower()
        for extra in (self.brand, self.category):
            if extra and extra.lower() not in lowered:
                parts.append(extra)
        return " | ".join(parts)

    def meaning_text(self) -> str:
        """What the multilingual encoder embeds: the search text and the description, which says what the product
        is for ("keeps coffee hot for 12 hours") in words a shopper who describes a need uses."""
        return f"{self.search_text()} | {self.description}" if self.description else self.search_text()

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the index's products file."""
        return {
            "product_id": self.product_id,
            "title": self.title,
            "description": self.description,
            "brand": self.brand,
            "category": self.category,
            "department": self.department,
            "price": self.price,
            "image_url": self.image_url,
            "attributes": self.attributes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Product":
        """The inverse of `to_json`."""
        return cls(**data)


def load_catalog(path: str | Path, skip_untitled: bool = False) -> list[Product]:
    """Read a catalog file; `.jsonl`/`.json` are JSON Lines, everything else is CSV.

    Raises DataError naming the file and row for a missing file, missing required columns,
    broken UTF-8, an empty id or title, a duplicate id, or a price that is not a number. With `skip_untitled`,
    products with an empty title are left out instead (nothing could find them by text), with a warning that
    counts them and names the first lines.
    """
    path = Path(path)
    products: list[Product] = []
    first_row_of: dict[str, int] = {}
    untitled: list[int] = []
    for line_number, row in read_table(path, REQUIRED_COLUMNS, "catalog"):
        if skip_untitled and cell_text(row.get("product_id")) and not cell_text(row.get("title")):
            untitled.append(line_number)
            continue
        product = _product(row, path, line_number)
        if product.product_id in first_row_of:
            raise DataError(
                f"catalog {path} line {line_number}: duplicate product_id {product.product_id!r} "
                f"(first seen on line {first_row_of[product.product_id]})"
            )
        first_row_of[product.product_id] = line_number
        products.append(product)
    if untitled:
        lines = ", ".join(map(str, untitled[:5])) + (" ..." if len(untitled) > 5 else "")
        log.warning("catalog %s: left out %d products with an empty title (lines %s)", path, len(untitled), lines)
    if not products:
        raise DataError(f"catalog {path}: no products")
    return products


def catalog_digest(path: str | Path) -> str:
    """SHA-256 of the catalog file's bytes: identifies which content an index was built from (never which shop)."""
    return files_digest(Path(path))


def stock_of(product: Product) -> int:
    """A product's stock: a catalog file's `stock` column (kept in attributes), else DEFAULT_STOCK (available)."""
    value = product.attributes.get("stock", "")
    try:
        return max(int(float(value)), 0) if value.strip() else DEFAULT_STOCK
    except ValueError:
        return DEFAULT_STOCK


def check_shop(name: str) -> str:
    """The shop name, or DataError: lowercase letters, digits, '.', '_' and '-', starting with a letter or digit."""
    if not SHOP_NAME.fullmatch(name):
        raise DataError(f"shop name {name!r} is not usable: lowercase letters, digits, '.', '_' and '-', starting "
                        f"with a letter or digit, at most 64 characters")
    return name


def shop_of(catalog: str | Path, given: str = "") -> str:
    """The shop a catalog belongs to: the name given (`--shop`, SHOPRANK_SHOP), else the name of the catalog's folder
    (data/demo/catalog.csv is the shop `demo`). A shop keeps its name, and what was learned for it, whatever its
    catalog's content becomes."""
    if given:
        return check_shop(given)
    folder = Path(catalog).resolve().parent.name.lower()
    return check_shop(re.sub(r"[^a-z0-9._-]+", "-", folder).strip("-._")[:64] or "default")


def read_table(path: Path, required: tuple[str, ...], what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of a CSV or JSON Lines file (by suffix), after checking it exists, is UTF-8 and has `required`."""
    if not path.is_file():
        raise DataError(f"{what} {path}: no such file")
    text = _decode(path.read_bytes(), path, what)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return _json_lines(text, path, required, what)
    return _csv_rows(text, path, required, what)


def _decode(raw: bytes, path: Path, what: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise DataError(
            f"{what} {path} line {line}, column {column}: not valid UTF-8 "
            f"(byte 0x{raw[error.start]:02x}); save the file as UTF-8"
        ) from None


def _csv_rows(text: str, path: Path, required: tuple[str, ...], what: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in (reader.fieldnames or [])]
    missing = [name for name in required if name not in header]
    if missing:
        raise DataError(
            f"{what} {path}: missing required column(s) {', '.join(missing)}; found {', '.join(header) or 'no header'}"
        )
    reader.fieldnames = header
    try:
        for row in reader:
            # The physical line where the record ends; the header is line 1.
            line_number = reader.line_num
            if None in row:
                raise DataError(f"{what} {path} line {line_number}: more fields than the header has columns")
            yield line_number, {key: (value or "") for key, value in row.items()}
    except csv.Error as error:
        raise DataError(f"{what} {path} line {reader.line_num}: {error}") from None


def _json_lines(text: str, path: Path, required: tuple[str, ...], what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    # Only "\n" ends a record: str.splitlines() would also split on U+2028 and U+0085, legal inside JSON strings.
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{what} {path} line {line_number}: not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{what} {path} line {line_number}: expected a JSON object")
        missing = [name for name in required if name not in row]
        if missing:
            raise DataError(f"{what} {path} line {line_number}: missing required field(s) {', '.join(missing)}")
        yield line_number, row


def cell_text(value: Any) -> str:
    """A CSV cell or JSON value as text: None is empty, 104.0 is "104", whitespace is trimmed."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _product(row: dict[str, Any], path: Path, line_number: int) -> Product:
    try:
        return product_from_row(row)
    except DataError as error:
        raise DataError(f"catalog {path} line {line_number}: {error}") from None


def product_from_row(row: Mapping[str, Any]) -> Product:
    """One catalog record (a CSV row's cells, a JSON object, a record sent to the catalog API) as a Product, validated
    as `load_catalog` validates a row: DataError says what is wrong (an empty id or title, a price that is not a
    non-negative number), without a place; the caller names the row."""
    def text(name: str) -> str:
        return cell_text(row.get(name))

    product_id = text("product_id")
    title = text("title")
    if not product_id:
        raise DataError("empty product_id")
    if not title:
        raise DataError(f"product {product_id!r} has an empty title")
    price = None
    raw_price = text("price")
    if raw_price:
        try:
            price = float(raw_price)
        except ValueError:
            raise DataError(f"price {raw_price!r} of product {product_id!r} is not a number") from None
        if not math.isfinite(price) or price < 0:
            raise DataError(f"price {raw_price!r} of product {product_id!r} is invalid")
    attributes = {key: text(key) for key in row if key not in KNOWN_COLUMNS and text(key)}
    return Product(
        product_id=product_id,
        title=title,
        description=text("description"),
        brand=text("brand"),
        category=text("category"),
        department=text("department"),
        price=price,
        image_url=text("image_url"),
        attributes=attributes,
    )
