"""Text analysis for the lexical index: the same function turns products and queries into terms.

Latin-script text splits into words, lower-cased, with plural endings removed (Harman's S-stemmer)
and mixed letter-digit words also split ("20v" -> "20v", "20", "v"). Chinese, Japanese and Korean
text has no spaces, so each run of those characters yields its overlapping bigrams, as Lucene's CJK
analyzer does ("手机推荐" -> 手机, 机推, 推荐, which matches a title with "手机"); a lone character stays
a unigram. Unigrams of longer runs would let 机 in "耳机" (earphones) match "手机" (phone).
"""

from __future__ import annotations

import re
import unicodedata

# CJK Unified Ideographs (with extension A), Hiragana, Katakana and Hangul syllables.
_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0x3040, 0x309F), (0x30A0, 0x30FF), (0xAC00, 0xD7AF))
_CJK = "".join(f"{chr(low)}-{chr(high)}" for low, high in _CJK_RANGES)
# The same ranges as a set, for counting characters (core/language.py).
CJK_CHARACTERS = frozenset(chr(c) for low, high in _CJK_RANGES for c in range(low, high + 1))
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+(?:[.,][0-9]+)*")
_LETTERS_DIGITS = re.compile(r"[0-9]+(?:[.,][0-9]+)*|[^\W\d_]+")
_CJK_RUN = re.compile(rf"[{_CJK}]")

STOPWORDS = frozenset("a an and are as at by for from in is of on or the to with".split())


def analyze(text: str) -> list[str]:
    """Split text into index terms."""
    terms: list[str] = []
    for token in _TOKEN.findall(unicodedata.normalize("NFKC", text).lower()):
        if _CJK_RUN.match(token):
            if len(token) == 1:
                terms.append(token)
            else:
                terms.extend(token[i : i + 2] for i in range(len(token) - 1))
            continue
        if token in STOPWORDS:
            continue
        stemmed = stem(token)
        terms.append(stemmed)
        pieces = _LETTERS_DIGITS.findall(token)
        if len(pieces) > 1:
            terms.extend(stem(piece) for piece in pieces if piece not in STOPWORDS)
    return terms


def stem(word: str) -> str:
    """Harman's S-stemmer, plus "-xes/-ches/-shes/-sses/-zes" -> stem: strips English plural endings only."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith(("xes", "ches", "shes", "sses", "zes")):
        return word[:-2]
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word
