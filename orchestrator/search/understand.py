"""Understand the query: correct its spelling, find its script, and start encoding it through Triton.

Every model sees the corrected query: retrieval, the cross-encoder and the match features. A query in Chinese
(core/language.py) is not given to the English-only models at all (MiniLM, the cross-encoder). The embeddings are
left on their way (tasks on the context) so that BM25 overlaps the Triton calls; Retrieve awaits them.
"""

from __future__ import annotations

import asyncio

import numpy as np

from core.language import CJK, script_of
from core.specs import BI_ENCODER, MULTILINGUAL_ENCODER
from core.spelling import SpellingCorrector
from core.tokenization import SentencePieceEncoder, TextEncoder

from ..catalog.store import CatalogStore
from ..triton import TritonClient
from .context import SearchContext


class QueryEncoder:
    """Tokenizes in-process and gets the query's embeddings from Triton: MiniLM's, and the multilingual one's,
    from the model version given (the catalog's: its product vectors came from them)."""

    def __init__(self, client: TritonClient, tokenizer: TextEncoder,
                 multilingual_tokenizer: SentencePieceEncoder | None = None) -> None:
        self.client = client
        self.tokenizer = tokenizer
        self.multilingual_tokenizer = multilingual_tokenizer

    async def encode(self, text: str, version: str) -> np.ndarray:
        output = await self.client.infer(BI_ENCODER, self.tokenizer([text]), version)
        return output["embedding"][0]

    async def encode_multilingual(self, text: str, version: str) -> np.ndarray:
        output = await self.client.infer(MULTILINGUAL_ENCODER, self.multilingual_tokenizer([text]), version)
        return output["embedding"][0]


class Understand:
    """The query as every model will see it: corrected, its script known, its embeddings requested."""

    name = "understand"

    def __init__(self, catalog: CatalogStore, encoder: QueryEncoder, speller: SpellingCorrector | None) -> None:
        self.catalog = catalog
        self.encoder = encoder
        self.speller = speller

    async def run(self, context: SearchContext) -> None:
        request = context.request
        query = request.query
        if self.speller is not None and request.correct_spelling:
            # Under 1 ms for a typical query, up to ~40 ms for 1,000 characters of long unknown words: off the loop.
            query = await asyncio.to_thread(self.speller.correct, query)
        context.query, context.script = query, script_of(query)
        if request.mode not in ("hybrid", "dense"):
            return
        versions = self.catalog.encoder_versions  # a query is encoded by the version that encoded the products
        if context.script != CJK:
            context.embedding_task = asyncio.create_task(self.encoder.encode(query, versions[BI_ENCODER.name]))
        if self.encoder.multilingual_tokenizer is not None:
            context.multilingual_task = asyncio.create_task(
                self.encoder.encode_multilingual(query, versions[MULTILINGUAL_ENCODER.name]))
