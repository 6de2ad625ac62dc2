import numpy as np
import pytest

from core.features import FEATURES, match_features, numbers_and_units


@pytest.mark.parametrize(
    ("text", "numbers", "pairs"),
    [
        ("20 in. x 20 in. x 1in", {"20", "1"}, {("20", "in"), ("1", "in")}),
        ("Makita 18-Volt LXT 3.0Ah Battery", {"18", "3"}, {("18", "v"), ("3", "ah")}),
        ("galvanized nipple 1 x 1-1/2", {"1", "1/2"}, set()),
        ("30' x 96' 6 panel door", {"30", "96", "6"}, {("30", "ft"), ("96", "ft")}),
        ("E26 bulb", {"26"}, set()),
        ("salon chair", set(), set()),
        ("２０ｖ drill", {"20"}, {("20", "v")}),  # full-width digits are normalized
    ],
)
def test_numbers_and_units(text, numbers, pairs):
    assert numbers_and_units(text) == (numbers, pairs)


def test_features_reward_matching_numbers_units_and_terms():
    features = match_features("18v makita batteries 3.0ah", [
        "Makita 18-Volt LXT Lithium-Ion 3.0Ah Battery",
        "Makita 12V Battery 2.0 Ah",
        "Patio Chair",
    ])
    assert set(features) == set(FEATURES)
    np.testing.assert_allclose(features["numbers"], [1.0, -1.0, -1.0])
    np.testing.assert_allclose(features["units"], [1.0, -1.0, -1.0])
    assert features["overlap"][0] > features["overlap"][1] > features["overlap"][2] == 0.0


def test_query_without_numbers_gets_neutral_number_features():
    features = match_features("patio chair", ["Patio Chair 2-Pack", "Table"])
    np.testing.assert_allclose(features["numbers"], [0.0, 0.0])
    np.testing.assert_allclose(features["units"], [0.0, 0.0])
    np.testing.assert_allclose(features["overlap"], [1.0, 0.0])


def test_no_texts_gives_empty_columns():
    features = match_features("drill", [])
    assert all(values.shape == (0,) for values in features.values())
