"""In-process tokenization with the fast (Rust) tokenizer that matches the exported encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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

    The query comes first and keeps up to `max_query_tokens`; the product text gets whatever of `max_tokens`
    is left ("only_second" truncation). Batches are padded to their longest pair, never to `max_tokens`.
    """

    def __init__(self, tokenizer_file: Path, max_tokens: int, max_query_tokens: int = 24,
                 pad_to_multiple_of: int | None = None) -> None:
        if not Path(tokenizer_file).is_file():
            raise ConfigError(f"tokenizer {tokenizer_file} not found; run `shoprank export` first")
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._pair = Tokenizer.from_file(str(tokenizer_file))
        self._pair.enable_truncation(max_length=max_tokens, strategy="only_second")
        # Training pads to a multiple of 8: fewer distinct shapes for the CPU kernels and allocator.
        self._pair.enable_padding(pad_id=self._pair.token_to_id("[PAD]") or 0, pad_token="[PAD]",
                                  pad_to_multiple_of=pad_to_multiple_of)
        self.max_tokens = max_tokens
        self.max_query_tokens = max_query_tokens

    def _short_query(self, query: str) -> str:
        encoding = self._tokenizer.encode(query, add_special_tokens=False)
        if len(encoding.ids) <= self.max_query_tokens:
            return query
        return query[: encoding.offsets[self.max_query_tokens - 1][1]]

    def __call__(self, query: str | list[str], texts: list[str]) -> dict[str, np.ndarray]:
        """Tokenize pairs; `query` is one query for all texts, or one per text. int64 arrays [batch, longest]."""
        queries = [query] * len(texts) if isinstance(query, str) else query
        short = {q: self._short_query(q) for q in set(queries)}
        encodings = self._pair.encode_batch([(short[q], text) for q, text in zip(queries, texts)])
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
