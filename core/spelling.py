"""Query spelling correction against the catalog's own vocabulary ("tiolet tank lid" -> "toilet tank lid").

Shoppers misspell ("cieling fan"), run words together ("castiron", "btuair") and use words no title has.
BM25 then matches nothing for that word, and the bi-encoder and cross-encoder read it as unknown word pieces.
Only words that cannot be right are corrected, and only into terms that occur in the catalog:
- a word is left alone when it is short (under 4 letters) or very long, a stopword, has digits or non-Latin
  letters, is a whole word of the encoder's WordPiece vocabulary ("hire", "maid": real words, whatever the
  catalog says), or its index term (core/analysis.py) occurs in some product;
- otherwise it becomes, in this order of preference:
  1. the catalog term one edit away (insert, delete, substitute, or swap two neighbours) found in the most
     products, unless a split into two catalog terms is more common;
  2. that split ("castiron" -> "cast iron"), scored by the rarer of its two terms;
  3. for words of 6 letters or more, the catalog term two edits away found in the most products.

Candidates come from a symmetric-delete index (SymSpell): every catalog term is stored under each string
left by deleting up to two of its letters, so a query word needs only its own deletions looked up, then each
candidate's true distance checked: under 1 ms a typical query. A correction is written as the catalog writes
the word ("headphnes" -> "headphones", not the index term "headphone").

On Home Depot's judged queries it changes 17% of dev and 13% of test queries; what it does to ranking
quality is measured in README.md (Spelling correction). SHOPRANK_MAX_SPELLING_EDITS=0 turns it off.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from itertools import combinations

from .analysis import analyze, stem
from .catalog import Product

MIN_LENGTH = 4  # shorter words ("rom", "ac") have too many neighbours to guess from
MAX_LENGTH = 30  # longer "words" are not typos, and their deletions would cost a query milliseconds
MIN_LENGTH_TWO_EDITS = 6
_WORD = re.compile(r"[A-Za-z]+")


def _deletions(word: str, max_deletes: int) -> set[str]:
    """Every string left by deleting up to `max_deletes` letters of `word` (itself included)."""
    result = {word}
    for count in range(1, min(max_deletes, len(word) - 1) + 1):
        for positions in combinations(range(len(word)), count):
            result.add("".join(letter for i, letter in enumerate(word) if i not in positions))
    return result


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment): inserts, deletes, substitutions, adjacent swaps."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]


class SpellingCorrector:
    """Corrects query words into the catalog's terms; built once per index."""

    def __init__(self, document_frequency: Counter[str], known_words: Iterable[str] = (), max_edits: int = 2,
                 spellings: dict[str, str] | None = None) -> None:
        """`document_frequency`: index term -> number of products that have it; `known_words`: lower-case words
        never corrected (the encoder's vocabulary); `max_edits`: 1 or 2; `spellings`: index term -> the word
        written in its place ("canva" -> "canvas"), else the term itself is written."""
        if max_edits not in (1, 2):
            raise ValueError(f"max_edits must be 1 or 2, not {max_edits}")
        self.frequency = document_frequency
        self.spellings = spellings or {}
        self.known_words = frozenset(known_words)
        self.max_edits = max_edits
        self._by_deletion: dict[str, list[str]] = {}
        for term in document_frequency:
            if term.isascii() and term.isalpha() and len(term) >= MIN_LENGTH - max_edits:
                for variant in _deletions(term, max_edits):
                    self._by_deletion.setdefault(variant, []).append(term)

    @classmethod
    def for_texts(cls, texts: Iterable[str], known_words: Iterable[str] = (), max_edits: int = 2) -> "SpellingCorrector":
        """A corrector for a catalog given as its products' texts; a correction is written as the catalog's most
        common word for the term ("headphone" -> "headphones"), so the encoders read a real word."""
        frequency: Counter[str] = Counter()
        words: dict[str, Counter[str]] = {}
        for text in texts:
            frequency.update(set(analyze(text)))
            for word in _WORD.findall(text.lower()):
                words.setdefault(stem(word), Counter())[word] += 1
        spellings = {term: max(counts.items(), key=lambda item: (item[1], item[0]))[0] for term, counts in words.items()}
        return cls(frequency, known_words, max_edits, spellings)

    @classmethod
    def for_catalog(cls, products: Iterable[Product], known_words: Iterable[str] = (),
                    max_edits: int = 2) -> "SpellingCorrector":
        """The corrector of a catalog as the service builds it, over what BM25 indexes: each product's search text."""
        return cls.for_texts((product.search_text() for product in products), known_words, max_edits)

    def correct(self, query: str) -> str:
        """The query with every word that cannot be right replaced; the query itself when nothing changes."""
        return _WORD.sub(lambda match: self.correct_word(match.group(0)), query)

    def correct_word(self, word: str) -> str:
        lower = word.lower()
        if not MIN_LENGTH <= len(lower) <= MAX_LENGTH or lower in self.known_words:
            return word
        terms = analyze(lower)
        if not terms or any(term in self.frequency for term in terms):  # a stopword, or in some product
            return word
        near = self._within(lower)
        one = max((term for term, distance in near if distance == 1), key=self._rank, default=None)
        split = self._best_split(lower)
        if one is not None and (split is None or self.frequency[one] >= split[0]):
            return self._written(one)
        if split is not None:
            return " ".join(self._written(term) for term in split[1])
        if self.max_edits >= 2 and len(lower) >= MIN_LENGTH_TWO_EDITS:
            two = max((term for term, distance in near if distance == 2), key=self._rank, default=None)
            if two is not None:
                return self._written(two)
        return word

    def _written(self, term: str) -> str:
        return self.spellings.get(term, term)

    def _rank(self, term: str) -> tuple[int, str]:
        return self.frequency[term], term  # the most common; ties by the term, so the choice is reproducible

    def _within(self, word: str) -> list[tuple[str, int]]:
        """Catalog terms within max_edits of `word`, with their distance."""
        candidates = {term for variant in _deletions(word, self.max_edits) for term in self._by_deletion.get(variant, ())}
        found = [(term, edit_distance(word, term)) for term in candidates]
        return [(term, distance) for term, distance in found if 0 < distance <= self.max_edits]

    def _best_split(self, word: str) -> tuple[int, tuple[str, str]] | None:
        """(products with the rarer half, (left, right)) for the most common split into two catalog terms."""
        best = None
        for cut in range(2, len(word) - 1):
            left, right = word[:cut], word[cut:]
            if left in self.frequency and right in self.frequency:
                score = min(self.frequency[left], self.frequency[right])
                if best is None or score > best[0]:
                    best = (score, (left, right))
        return best
