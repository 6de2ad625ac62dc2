import numpy as np
import pytest

from training.combination import (
    ANCHOR,
    COMPONENTS,
    Components,
    cross_validate,
    fit,
    mean_ndcg_over_sources,
    source_ndcg,
)


def _query(index: int, rng: np.random.Generator) -> Components:
    """Four candidates; the best one (gain 2) is found by the numbers feature, not by the noisy anchor."""
    ids = [f"q{index}-p{j}" for j in range(4)]
    gains = {ids[0]: 2.0, ids[1]: 0.0, ids[2]: 0.0, ids[3]: 1.0}
    features = np.zeros((4, len(COMPONENTS)))
    features[:, COMPONENTS.index(ANCHOR["latin"])] = rng.normal(size=4)  # the anchor: noise
    features[:, COMPONENTS.index("numbers")] = [1.0, -1.0, -1.0, 0.0]
    return Components(f"query {index}", ids, gains, features)


def test_fit_learns_an_informative_feature():
    rng = np.random.default_rng(0)
    data = [_query(i, rng) for i in range(60)]
    weights, combined, alone = fit(data)
    assert weights[ANCHOR["latin"]] == 1.0
    assert weights["numbers"] > 0
    assert combined > alone
    assert combined == mean_ndcg_over_sources(data, np.array([weights[name] for name in COMPONENTS]))
    # Fit on one half, measured on the other: the feature generalizes here, so the estimate beats the anchor alone.
    assert cross_validate(data) > alone


def test_fit_keeps_the_anchor_alone_when_nothing_helps():
    ids = ["a", "b"]
    features = np.zeros((2, len(COMPONENTS)))
    features[:, COMPONENTS.index(ANCHOR["latin"])] = [2.0, 1.0]
    data = [Components("q", ids, {"a": 1.0, "b": 0.0}, features)]
    weights, combined, alone = fit(data)
    assert combined == alone == 1.0
    assert all(value == 0.0 for name, value in weights.items() if name != ANCHOR["latin"])


def test_cjk_queries_are_fit_around_the_multilingual_cosine_without_english_components():
    rng = np.random.default_rng(1)
    data = []
    for index in range(40):
        ids = [f"c{index}-p{j}" for j in range(4)]
        features = np.zeros((4, len(COMPONENTS)))
        features[:, COMPONENTS.index("multilingual")] = rng.normal(size=4) * 0.1  # noise
        features[:, COMPONENTS.index("intent")] = [0.9, 0.1, 0.0, 0.2]  # finds the wanted product
        features[:, COMPONENTS.index("dense")] = [-1.0, 1.0, 1.0, 1.0]  # MiniLM on Chinese: misleading, never used
        data.append(Components(f"手机 {index}", ids, {ids[0]: 2.0}, features))
    weights, combined, alone = fit(data, "cjk")
    assert weights["multilingual"] == 1.0 and weights["reranker"] == 0.0 and weights["dense"] == 0.0
    assert weights["intent"] > 0 and combined > alone
    # Latin queries only: none here.
    assert np.isnan(fit(data, "latin")[1])


def test_each_source_counts_equally_whatever_its_size():
    def query(name: str, source: str, good: str) -> Components:
        ids = ["b", "a"]  # the wanted product second: a tie leaves it there
        features = np.zeros((2, len(COMPONENTS)))
        features[:, COMPONENTS.index(good)] = [0.0, 1.0]
        return Components(name, ids, {"a": 1.0}, features, source)

    data = [query(f"big {i}", "big", "overlap") for i in range(9)] + [query("small", "small", "numbers")]
    overlap_only = np.array([1.0 if name == "overlap" else 0.0 for name in COMPONENTS])
    # The big source is perfect, the small one keeps b first (nDCG 0.63): the mean of 1 and 0.63, not of ten queries.
    assert mean_ndcg_over_sources(data, overlap_only) == pytest.approx((1.0 + 1 / np.log2(3)) / 2)


def test_a_step_that_lowers_one_set_below_its_start_is_not_taken():
    def query(name: str, source: str, good: str) -> Components:
        ids = ["b", "a"]
        features = np.zeros((2, len(COMPONENTS)))
        features[:, COMPONENTS.index(good)] = [0.0, 1.0]
        features[:, COMPONENTS.index("reranker")] = [0.0, 0.5]  # the start finds "a" in both sets
        return Components(name, ids, {"a": 1.0}, features, source)

    # Set "hd" would fall a little if overlap counted (one query's "b" has the overlap), "demo" would gain more.
    hd = [query(f"hd {i}", "hd", "numbers") for i in range(5)]
    hd[0].features[:, COMPONENTS.index("overlap")] = [1.0, 0.0]  # one of five
    demo = [query(f"demo {i}", "demo", "overlap") for i in range(5)]
    for item in demo:  # the start misses "a" here: only overlap would find it
        item.features[:, COMPONENTS.index("reranker")] = [0.5, 0.0]
    start = {"reranker": 1.0}
    reach = np.array([1.0 if n in ("reranker", "overlap") else 0.0 for n in COMPONENTS])
    started = np.array([start.get(n, 0.0) for n in COMPONENTS])
    assert mean_ndcg_over_sources(hd + demo, reach) > mean_ndcg_over_sources(hd + demo, started)
    weights, combined, at_start = fit(hd + demo, "latin", start)
    assert weights["overlap"] == 0.0
    assert source_ndcg(hd + demo, np.array([weights[n] for n in COMPONENTS]))["hd"] == 1.0


def test_the_fitted_shop_keeps_its_weights_and_unseen_shops_get_them_without_the_cross_encoder():
    from training.combination import split_default

    fitted = {"latin": {"reranker": 1.0, "dense": 2.0}, "cjk": {"reranker": 0.0, "multilingual": 1.0}}
    demo = {"catalog": "demo.csv", "weights": {"latin": {"reranker": 1.0, "dense": 16.0}}}
    result = split_default({"weights": fitted, "fit_on": ["hd dev"], "shops": {"demo": demo}}, "hd")
    assert result["weights"] == {"latin": {"reranker": 0.0, "dense": 2.0}, "cjk": {"reranker": 0.0, "multilingual": 1.0}}
    assert result["shops"]["hd"]["weights"] == fitted and result["shops"]["hd"]["fit_on"] == ["hd dev"]
    assert result["shops"]["demo"] == demo  # a shop with its own fit keeps it
    assert split_default({"weights": fitted}, "hd", "on") == {"weights": fitted}
    with pytest.raises(ValueError):
        split_default({"weights": fitted}, "hd", "maybe")


def test_the_default_without_the_cross_encoder_is_read_as_such(tmp_path):
    import json

    from core.weights import read_combination
    from training.combination import split_default

    fitted = {"latin": {"reranker": 1.0, "dense": 2.0}}
    path = tmp_path / "combination.json"
    result = split_default({"weights": fitted}, "hd")
    path.write_text(json.dumps({**result["weights"], "shops": result["shops"]}))
    assert read_combination(path)["latin"]["reranker"] == 0.0  # any other shop
    assert read_combination(path, shop="hd")["latin"]["reranker"] == 1.0


def test_the_cheap_fit_keeps_the_cross_encoder_out_and_no_set_below_the_bi_encoder():
    from training.combination import fit_cheap

    def query(name: str, source: str, helper: str) -> Components:
        ids = ["b", "a"]  # the wanted product second
        features = np.zeros((2, len(COMPONENTS)))
        features[:, COMPONENTS.index("reranker")] = [0.0, 5.0]  # would find it everywhere: must stay unused
        features[:, COMPONENTS.index("dense")] = [0.1, 0.0]  # the bi-encoder misses it by a little
        features[:, COMPONENTS.index(helper)] = [0.0, 1.0]
        return Components(name, ids, {"a": 1.0}, features, source)

    hd = [query(f"hd {i}", "hd", "overlap") for i in range(5)]
    other = [query(f"other {i}", "other", "numbers") for i in range(5)]
    other[0].features[:, COMPONENTS.index("overlap")] = [1.0, 0.0]  # overlap misleads one query of the other set
    weights = fit_cheap(hd + other)
    assert weights["reranker"] == 0.0 and weights["dense"] == 1.0
    assert weights["numbers"] > 0
    by_set = source_ndcg(hd + other, np.array([weights[n] for n in COMPONENTS]))
    alone = source_ndcg(hd + other, np.array([1.0 if n == "dense" else 0.0 for n in COMPONENTS]))
    assert all(by_set[name] >= alone[name] for name in alone) and by_set["hd"] == 1.0
