import json

import pytest

from core.errors import ConfigError
from core.weights import DEFAULT_WEIGHTS, has_shop_weights, per_script, read_combination


def test_a_flat_set_is_the_latin_set_and_cjk_gets_none():
    weights = per_script({"reranker": 1.0, "bm25": 0.5})
    assert set(weights) == {"latin"}
    assert weights["latin"]["bm25"] == 0.5 and weights["latin"]["multilingual"] == 0.0


def test_per_script_sets_are_completed_and_a_cjk_set_has_no_reranker_by_default():
    weights = per_script({"latin": {"reranker": 1.0}, "cjk": {"multilingual": 1.0, "intent": 2.0}})
    assert weights["cjk"]["reranker"] == 0.0 and weights["cjk"]["intent"] == 2.0
    assert set(weights["cjk"]) == set(DEFAULT_WEIGHTS)


def test_unknown_component_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown components"):
        per_script({"latin": {"reranker": 1.0, "colour": 2.0}})


def test_read_combination(tmp_path):
    assert read_combination(tmp_path / "missing.json") == {"latin": DEFAULT_WEIGHTS}
    path = tmp_path / "combination.json"
    path.write_text(json.dumps({"cjk": {"multilingual": 1.0}}))
    assert set(read_combination(path)) == {"cjk"}
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        read_combination(path)


def test_a_shop_with_its_own_weights_gets_them_script_by_script_and_others_the_default(tmp_path):
    path = tmp_path / "combination.json"
    path.write_text(json.dumps({
        "latin": {"reranker": 1.0, "overlap": 4.0}, "cjk": {"multilingual": 1.0},
        "shops": {"demo": {"weights": {"latin": {"reranker": 1.0, "multilingual": 2.0}}}},
    }))
    own = read_combination(path, shop="demo")
    assert own["latin"]["multilingual"] == 2.0 and own["latin"]["overlap"] == 0.0
    assert own["cjk"]["multilingual"] == 1.0  # not fit for the shop: the default's
    other = read_combination(path, shop="corner-store")
    assert other["latin"]["overlap"] == 4.0
    assert read_combination(path) == other
    assert has_shop_weights(path, "demo") and not has_shop_weights(path, "corner-store")
    assert not has_shop_weights(path, "") and not has_shop_weights(tmp_path / "missing.json", "demo")
