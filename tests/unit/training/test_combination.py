import numpy as np

from training.combination import COMPONENTS, Components, cross_validate, fit, mean_ndcg


def _query(index: int, rng: np.random.Generator) -> Components:
    """Four candidates; the best one (gain 2) is found by the numbers feature, not by the noisy reranker."""
    ids = [f"q{index}-p{j}" for j in range(4)]
    gains = {ids[0]: 2.0, ids[1]: 0.0, ids[2]: 0.0, ids[3]: 1.0}
    features = np.zeros((4, len(COMPONENTS)))
    features[:, 0] = rng.normal(size=4)  # reranker: noise
    features[:, COMPONENTS.index("numbers")] = [1.0, -1.0, -1.0, 0.0]
    return Components(f"query {index}", ids, gains, features)


def test_fit_learns_an_informative_feature():
    rng = np.random.default_rng(0)
    data = [_query(i, rng) for i in range(60)]
    weights, combined, alone = fit(data)
    assert weights["reranker"] == 1.0
    assert weights["numbers"] > 0
    assert combined > alone
    assert combined == mean_ndcg(data, np.array([weights[name] for name in COMPONENTS]))
    # Fit on one half, measured on the other: the feature generalizes here, so the estimate beats the reranker.
    assert cross_validate(data) > alone


def test_fit_keeps_reranker_alone_when_nothing_helps():
    ids = ["a", "b"]
    features = np.zeros((2, len(COMPONENTS)))
    features[:, 0] = [2.0, 1.0]
    data = [Components("q", ids, {"a": 1.0, "b": 0.0}, features)]
    weights, combined, alone = fit(data)
    assert combined == alone == 1.0
    assert all(value == 0.0 for name, value in weights.items() if name != "reranker")
