"""core.analysis: the terms BM25 indexes, for products and queries alike."""

from __future__ import annotations

import pytest

from core.analysis import STOPWORDS, analyze


def test_cjk_run_yields_overlapping_bigrams():
    terms = analyze("手机推荐")
    assert "手机" in terms
    assert {"手机", "机推", "推荐"} <= set(terms)


def test_cjk_query_shares_terms_with_shorter_title():
    assert set(analyze("手机")) <= set(analyze("手机推荐"))


def test_cjk_bigrams_do_not_share_a_lone_character():
    # "耳机" (earphones) must not match "手机" (phone) through the shared character 机.
    assert not set(analyze("耳机")) & set(analyze("手机"))


def test_single_cjk_character_is_a_unigram():
    assert analyze("猫") == ["猫"]


def test_japanese_and_korean_runs():
    assert {"カメ", "メラ"} <= set(analyze("カメラ"))
    assert "한국" in analyze("한국")


def test_mixed_cjk_and_latin_split_into_runs():
    terms = analyze("华为手机 drills")
    assert "手机" in terms
    assert "drill" in terms
    # a bigram never spans the space or the script boundary
    assert not any(" " in term for term in terms)


@pytest.mark.parametrize(
    "word, stem",
    [
        ("drills", "drill"),
        ("batteries", "battery"),
        ("boxes", "box"),
        ("glass", "glass"),
        ("glasses", "glass"),
        ("benches", "bench"),
        ("brushes", "brush"),
        ("hoses", "hose"),
        ("status", "status"),
        ("bus", "bus"),
        ("gas", "gas"),
        ("drill", "drill"),
    ],
)
def test_plural_stemming(word, stem):
    assert analyze(word) == [stem]


def test_lower_cased():
    assert analyze("Cordless DRILL") == ["cordless", "drill"]


def test_mixed_letters_and_digits_also_split():
    assert analyze("20v") == ["20v", "20", "v"]
    assert analyze("M12") == ["m12", "m", "12"]


def test_decimal_numbers_stay_whole():
    assert analyze("2.5") == ["2.5"]
    assert analyze("1,000") == ["1,000"]
    terms = analyze("1.5mm")
    assert "1.5" in terms and "mm" in terms
    assert "5" not in terms
    # a sentence-ending period is not part of a word
    assert analyze("drill.") == ["drill"]


def test_mixed_token_pieces_drop_stopwords():
    assert analyze("4a") == ["4a", "4"]


def test_stopwords_removed():
    assert analyze("the drill for a wall") == ["drill", "wall"]
    assert analyze("The AND of") == []
    assert {"the", "a", "and", "for", "with"} <= STOPWORDS


def test_punctuation_and_underscores_split_words():
    assert analyze("drill/driver, set_of-bits!") == ["drill", "driver", "set", "bit"]


def test_nfkc_full_width_to_ascii():
    assert analyze("ＡＢＣ") == ["abc"]
    assert analyze("２０Ｖ") == ["20v", "20", "v"]


def test_nfkc_half_width_katakana():
    assert analyze("ｶﾒﾗ") == analyze("カメラ")


def test_empty_and_symbol_only_text():
    assert analyze("") == []
    assert analyze("  --- !!! ") == []
    assert analyze("\u2205") == []


def test_products_and_queries_agree():
    # The same function on both sides: a plural query matches a singular title.
    assert set(analyze("cordless drills")) == set(analyze("Cordless Drill"))
