"""Which script a text is written in, so that components which read only English do not judge what they can't read.

The cross-encoder, the MiniLM bi-encoder and the spelling corrector were trained on English. A query or a
product title in Chinese, Japanese or Korean is "cjk"; one in Latin letters is "latin". A text that mixes both
("iphone 手机壳") is cjk when its CJK characters are at least a fifth of its letters: one Han character carries
about as much as a short Latin word, so even a few of them are a word the English models cannot read.
"""

from __future__ import annotations

import unicodedata

from .analysis import CJK_CHARACTERS

LATIN, CJK, NONE = "latin", "cjk", "none"
# Share of CJK characters among all letters from which a text counts as cjk.
CJK_SHARE = 0.2


def script_of(text: str) -> str:
    """"cjk", "latin", or "none" for a text without letters (digits, punctuation, empty)."""
    cjk = latin = 0
    for character in unicodedata.normalize("NFKC", text):
        if character in CJK_CHARACTERS:
            cjk += 1
        elif character.isalpha():
            latin += 1
    if cjk == 0 and latin == 0:
        return NONE
    return CJK if cjk >= CJK_SHARE * (cjk + latin) else LATIN
