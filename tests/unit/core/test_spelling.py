import pytest

from core.spelling import SpellingCorrector, edit_distance

TITLES = [
    "Glacier Bay Toilet Tank Lid",
    "American Standard Toilet Seat",
    "Kohler Toilet Flapper",
    "Hunter Ceiling Fan with Light",
    "Cast Iron Propane Heater",
    "Cast Iron Skillet",
    "Iron Gate Hinge",
    "Everbilt Heavy Duty Canvas Drop Cloth",
    "Dimmable LED Ceiling Light",
    "Toilet Paper Holder",
    "Champagne Bronze Tile",
    "手机 支架",
]
WORDS = ["what", "maid", "hire", "pain", "with"]


@pytest.fixture(scope="module")
def corrector() -> SpellingCorrector:
    return SpellingCorrector.for_texts(TITLES, known_words=WORDS)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("glacier bay tiolet tank lid", "glacier bay toilet tank lid"),  # a swap
        ("cieling fan", "ceiling fan"),  # a swap
        ("toilett seat", "toilet seat"),  # a deletion
        ("dimable light", "dimmable light"),  # an insertion
        ("castiron heater", "cast iron heater"),  # run-together words
        ("everblit drop cloth", "everbilt drop cloth"),
        ("chanpayne tile", "champagne tile"),  # two edits in a long word
    ],
)
def test_corrects_words_no_product_has(corrector, query, expected):
    assert corrector.correct(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        "toilet seats",  # an index term of the catalog (plural stemmed)
        "closet maid drawer",  # "maid" is a known word, though no title has it
        "what is a ceiling fan",  # known word, stopwords
        "rom toilet",  # too short to guess
        "12v 2x4 toilet",  # words with digits are left alone
        "手机 cieling",  # non-Latin text is left alone, Latin words still corrected
        "xyzzyqwv fan",  # nothing near enough
        "x" * 40,  # too long to be a typo
    ],
)
def test_leaves_alone_what_can_be_right_or_cannot_be_guessed(corrector, query):
    expected = "手机 ceiling" if query == "手机 cieling" else query
    assert corrector.correct(query) == expected


def test_keeps_the_query_around_the_corrected_word(corrector):
    assert corrector.correct("Tiolet  tank-lid, 12 in.") == "toilet  tank-lid, 12 in."


def test_most_common_term_wins_and_ties_are_reproducible():
    corrector = SpellingCorrector.for_texts(["bolt", "bolt nut", "boat", "belt"])
    assert corrector.correct("bilt") == "bolt"  # "belt" and "bolt" are one edit away; "bolt" is in more products
    tied = SpellingCorrector.for_texts(["cart", "card"])
    assert tied.correct("carx") == tied.correct("carx") == "cart"  # same frequency: the larger term


def test_one_edit_only_when_configured():
    corrector = SpellingCorrector.for_texts(TITLES, max_edits=1)
    assert corrector.correct("chanpayne tile") == "chanpayne tile"
    assert corrector.correct("cieling fan") == "ceiling fan"
    with pytest.raises(ValueError, match="max_edits"):
        SpellingCorrector.for_texts(TITLES, max_edits=3)


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("toilet", "toilet", 0), ("tiolet", "toilet", 1), ("dimable", "dimmable", 1), ("chanpayne", "champagne", 2),
     ("", "abc", 3), ("ca", "abc", 3)],
)
def test_edit_distance(a, b, distance):
    assert edit_distance(a, b) == distance == edit_distance(b, a)


def test_corrections_are_written_as_the_catalog_writes_them():
    corrector = SpellingCorrector.for_texts(["Wireless Headphones", "Kids Headphones", "Headphone Stand",
                                             "Canvas Drop Cloth"])
    # The index terms are "headphone" and "canva" (plural endings stripped); the encoders get the real words.
    assert corrector.correct("wireles headphnes") == "wireless headphones"
    assert corrector.correct("canvass cloth") == "canvas cloth"
