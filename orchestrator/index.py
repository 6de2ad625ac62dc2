"""The catalog index: products, their embeddings (computed through Triton), the HNSW graph and BM25.

On disk, one directory:
    manifest.json      format, catalog digest, encoder model and version, counts, build time
    products.jsonl     the catalog as loaded, in row order
    embeddings.npy     float32 [products, 384], L2-normalized, from the English MiniLM bi-encoder
    hnsw.faiss         its ANN graph
    multilingual/      embeddings.npy [products, 512] and hnsw.faiss of the multilingual encoder (title, brand,
                       category and description: Product.meaning_text)
    intent.npz         the query-intent model fit on the catalog's categories (orchestrator/intent.py), if any
    bm25/              the bm25s index
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from tqdm import tqdm

from core.catalog import Product, catalog_digest
from core.errors import CatalogIndexError
from core.language import CJK, script_of
from core.settings import Settings
from core.specs import BI_ENCODER, MULTILINGUAL_ENCODER, ModelSpec
from core.tokenization import SentencePieceEncoder, TextEncoder

from .filters import FilterColumns
from .intent import IntentModel
from .retrieval import DenseIndex, LexicalIndex
from .triton import TritonClient

FORMAT_VERSION = 3


@dataclass
class CatalogIndex:
    """Everything the pipeline searches, loaded in memory."""

    products: list[Product]
    lexical: LexicalIndex
    dense: DenseIndex
    multilingual: DenseIndex
    intent: IntentModel | None
    manifest: dict[str, Any]

    def __post_init__(self) -> None:
        self.row_of = {product.product_id: row for row, product in enumerate(self.products)}
        self.filter_columns = FilterColumns(self.products)
        # Which products the English-only components can read (core/language.py).
        self.cjk = np.array([script_of(product.search_text()) == CJK for product in self.products], dtype=bool)

    @property
    def encoder_versions(self) -> dict[str, str]:
        """Encoder model -> the version that embedded the products: queries must be encoded by the same one."""
        return {BI_ENCODER.name: self.manifest["encoder_version"],
                MULTILINGUAL_ENCODER.name: self.manifest["multilingual_encoder_version"]}

    @property
    def shop(self) -> str:
        """The shop whose catalog this is ("" for an index built before shops had names)."""
        return self.manifest.get("shop", "")

    @property
    def version(self) -> str:
        """Short identifier of what was indexed: the catalog digest's first 12 hex digits."""
        return self.manifest["catalog_sha256"][:12]

    def save(self, directory: Path) -> None:
        """Write the index atomically: into a sibling folder, then renamed over `directory`."""
        directory = Path(directory)
        staging = directory.with_name(directory.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "bm25").mkdir(parents=True)
        with open(staging / "products.jsonl", "w", encoding="utf-8") as handle:
            for product in self.products:
                handle.write(json.dumps(product.to_json(), ensure_ascii=False) + "\n")
        self.dense.save(staging)
        (staging / "multilingual").mkdir()
        self.multilingual.save(staging / "multilingual")
        if self.intent is not None:
            self.intent.save(staging)
        self.lexical.save(staging / "bm25")
        (staging / "manifest.json").write_text(json.dumps(self.manifest, indent=2) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)

    @classmethod
    def load(cls, directory: Path) -> "CatalogIndex":
        """Read an index written by `save`; CatalogIndexError when it is missing or from another format."""
        directory = Path(directory)
        manifest_path = directory / "manifest.json"
        if not manifest_path.is_file():
            raise CatalogIndexError(f"no index at {directory}: build one with `shoprank index --catalog FILE --out {directory}`")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise CatalogIndexError(
                f"index at {directory} has format {manifest.get('format_version')}, this shoprank reads {FORMAT_VERSION}; rebuild it"
            )
        with open(directory / "products.jsonl", encoding="utf-8") as handle:
            products = [Product.from_json(json.loads(line)) for line in handle]
        dense = DenseIndex.load(directory)
        multilingual = DenseIndex.load(directory / "multilingual")
        for embeddings in (dense.embeddings, multilingual.embeddings):
            if len(embeddings) != len(products):
                raise CatalogIndexError(f"index at {directory} is inconsistent: {len(products)} products, {len(embeddings)} embeddings")
        if not manifest.get("encoder_version") or not manifest.get("multilingual_encoder_version"):
            raise CatalogIndexError(f"index at {directory} does not say which encoder versions embedded it; rebuild it")
        return cls(products, LexicalIndex.load(directory / "bm25"), dense, multilingual, IntentModel.load(directory),
                   manifest)


async def embed_texts(
    client: TritonClient,
    encoder: TextEncoder | SentencePieceEncoder,
    texts: list[str],
    batch_size: int = 64,
    in_flight: int = 2,
    progress: Callable[[int], None] | None = None,
    spec: ModelSpec = BI_ENCODER,
    version: str = "",
) -> np.ndarray:
    """Embed texts through Triton with that version of the encoder (default: the server's choice), in batches
    of similar length (little padding), `in_flight` requests at a time."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    result = np.zeros((len(texts), spec.outputs[0].axes[1]), dtype=np.float32)
    semaphore = asyncio.Semaphore(in_flight)

    async def run(batch: list[int]) -> None:
        async with semaphore:
            embedding = (await client.infer(spec, encoder([texts[i] for i in batch]), version))["embedding"]
        result[batch] = embedding
        if progress is not None:
            progress(len(batch))

    await asyncio.gather(*(run(batch) for batch in batches))
    return result


def product_encoders(settings: Settings) -> tuple[TextEncoder, SentencePieceEncoder]:
    """The tokenizers of both encoders for product texts, as build_index takes them."""
    return (TextEncoder(settings.tokenizer_file, settings.max_product_tokens),
            SentencePieceEncoder(settings.multilingual_tokenizer_file, settings.max_product_tokens))


@dataclass(frozen=True)
class ProductVectors:
    """Both encoders' unit vectors of a list of products, and the encoder versions that made them."""

    dense: np.ndarray
    multilingual: np.ndarray
    versions: dict[str, str]  # encoder model -> version
    seconds: float


async def embed_products(products: list[Product], client: TritonClient, encoder: TextEncoder,
                         multilingual_encoder: SentencePieceEncoder, show_progress: bool = True,
                         versions: Mapping[str, str] | None = None) -> ProductVectors:
    """Embed products through Triton with both encoders: MiniLM their search text, the multilingual encoder their
    meaning text. Each encoder's version is fixed before the first product is embedded (`versions`, encoder model ->
    version, as a catalog that already holds products was embedded; else the newest that Triton serves) and named
    in every request."""
    started = time.perf_counter()
    versions = versions or {}
    version = versions.get(BI_ENCODER.name) or await client.model_version(BI_ENCODER)
    multilingual_version = (versions.get(MULTILINGUAL_ENCODER.name)
                            or await client.model_version(MULTILINGUAL_ENCODER))
    with tqdm(total=2 * len(products), unit="product", desc="embedding", disable=not show_progress) as bar:
        dense = await embed_texts(client, encoder, [product.search_text() for product in products],
                                  progress=bar.update, version=version)
        multilingual = await embed_texts(client, multilingual_encoder, [product.meaning_text() for product in products],
                                         progress=bar.update, spec=MULTILINGUAL_ENCODER, version=multilingual_version)
    return ProductVectors(dense, multilingual, {BI_ENCODER.name: version, MULTILINGUAL_ENCODER.name: multilingual_version},
                          time.perf_counter() - started)


async def build_index(
    catalog_path: Path,
    products: list[Product],
    client: TritonClient,
    encoder: TextEncoder,
    multilingual_encoder: SentencePieceEncoder,
    shop: str,
    show_progress: bool = True,
) -> CatalogIndex:
    """Embed a loaded catalog through Triton with both encoders (embed_products; their versions go in the
    manifest), build the retrievers and the intent model."""
    started = time.perf_counter()
    texts = [product.search_text() for product in products]
    vectors = await embed_products(products, client, encoder, multilingual_encoder, show_progress)
    embeddings, multilingual_embeddings = vectors.dense, vectors.multilingual
    version, multilingual_version = vectors.versions[BI_ENCODER.name], vectors.versions[MULTILINGUAL_ENCODER.name]
    embed_seconds = vectors.seconds
    dense = await asyncio.to_thread(DenseIndex.build, embeddings)
    multilingual = await asyncio.to_thread(DenseIndex.build, multilingual_embeddings)
    intent = await asyncio.to_thread(IntentModel.fit, multilingual_embeddings, [p.category for p in products])
    lexical = await asyncio.to_thread(LexicalIndex.build, texts)
    manifest = {
        "format_version": FORMAT_VERSION,
        "shop": shop,
        "catalog": str(catalog_path),
        "catalog_sha256": catalog_digest(catalog_path),
        "products": len(products),
        "encoder_model": BI_ENCODER.name,
        "encoder_version": version,
        "multilingual_encoder_model": MULTILINGUAL_ENCODER.name,
        "multilingual_encoder_version": multilingual_version,
        "max_product_tokens": encoder.max_tokens,
        "dim": int(embeddings.shape[1]),
        "intent_categories": len(intent.categories) if intent is not None else 0,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "embed_seconds": round(embed_seconds, 2),
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    return CatalogIndex(products, lexical, dense, multilingual, intent, manifest)
