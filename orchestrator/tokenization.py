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

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Tokenize a batch; returns int64 arrays of shape [batch, longest]."""
        encodings = self._tokenizer.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
