"""training.blend_fit: fitting the personalization blend on synthetic searches, and what serving reads of it."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from core.errors import DataError
from core.personal_blend import BLEND_FEATURES, FEATURE_GROUPS
from orchestrator.personalization.blend import BlendModel
from training.blend_fit import (
    QueryGroup, baseline_scores, blend_data_digest, fit, load_blend_data, ndcg_at_10, save_blend_data, split_of_user,
)

F = len(BLEND_FEATURES)
COLUMN = {name: index for index, name in enumerate(BLEND_FEATURES)}


def searches(label_of, users: int = 150, per_user: int = 2, size: int = 25, seed: int = 0) -> list[QueryGroup]:
    """Random candidates, in relevance order, labelled by label_of(X, rng)."""
    rng = np.random.default_rng(seed)
    groups = []
    for user in range(users):
        for search in range(per_user):
            X = rng.random((size, F)).astype(np.float32)
            X[:, COLUMN["relevance"]] = np.sort(rng.random(size))[::-1]
            X[:, COLUMN["relevance_rank"]] = 1 / np.log2(1 + np.arange(1, size + 1))
            X[:, COLUMN["user_purchases"]] = rng.poisson(0.4, size)
            X[:, COLUMN["popularity"]] = rng.random(size) * 5
            X[X[:, COLUMN["user_purchases"]] == 0, COLUMN["days_since_purchase"]] = np.nan
            X[:, COLUMN["due_ratio"]] = rng.random(size) * 3
            groups.append(QueryGroup(f"u{user}:{search}", f"u{user}", X, label_of(X, rng).astype(np.float32)))
    return groups


def bought_and_relevant(X, rng):
    logit = 2.5 * X[:, COLUMN["user_purchases"]] + 3 * X[:, COLUMN["relevance"]] - 4.5
    return rng.random(len(X)) < 1 / (1 + np.exp(-logit))


def mean_ndcg(groups, scorer) -> float:
    return float(np.mean([ndcg_at_10(scorer(group.features), group.labels) for group in groups
                          if group.labels.any()]))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    groups = searches(bought_and_relevant)
    out = tmp_path_factory.mktemp("blend")
    messages = []
    # threads=1 throughout: two LightGBM threads on a 2-core host busy with other work made these fits 100x slower.
    manifest = fit(groups, out, log=messages.append, threads=1)
    return groups, out, manifest, messages


def test_fit_writes_what_serving_loads(fitted):
    groups, out, manifest, messages = fitted
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["version"] == 1 and manifest["features"] == list(BLEND_FEATURES)
    assert manifest["groups"] == FEATURE_GROUPS
    assert manifest["data_sha256"] == blend_data_digest(groups)
    assert (out / manifest["model_file"]).is_file()
    assert sum(split["users"] for split in manifest["split"].values()) == 150
    for split in ("dev", "test"):
        assert set(manifest["metrics"]["ndcg@10"][split]) == {"lightgbm", "linear", "relevance", "popularity",
                                                              "purchase_count"}
        assert set(manifest["comparison"][split]) == {"lightgbm - linear", "lightgbm - purchase_count",
                                                      "linear - purchase_count"}
    assert "over" in manifest["comparison"]["dev"]["lightgbm - linear"]["text"]
    assert any("lightgbm {" in message for message in messages) and any("linear l2" in message for message in messages)
    model = BlendModel.load(out)
    assert model.kind == manifest["kind"] and model.version == 1


def test_served_scores_reproduce_the_manifest_metrics(fitted):
    groups, out, manifest, _ = fitted
    model = BlendModel.load(out)
    for split in ("dev", "test"):
        held = [group for group in groups if split_of_user(group.user_id) == split]
        served = mean_ndcg(held, lambda X: model.score(X)[0])
        assert served == pytest.approx(manifest["metrics"]["ndcg@10"][split][model.kind], abs=6e-5)


def test_blend_ranks_held_out_users_better_than_relevance_alone(fitted):
    groups, out, _, _ = fitted
    model = BlendModel.load(out)
    test = [group for group in groups if split_of_user(group.user_id) == "test"]
    blended = mean_ndcg(test, lambda X: model.score(X)[0])
    relevance = mean_ndcg(test, lambda X: X[:, COLUMN["relevance"]])
    assert blended > relevance + 0.1
    # Without the preference group, the user's purchases cannot help: the blend falls back near relevance.
    without = mean_ndcg(test, lambda X: model.score(X, {"preference": 0.0})[0])
    assert without < blended - 0.1
    X = test[0].features
    final, contributions = model.score(X)
    np.testing.assert_allclose(contributions.sum(axis=1), final, atol=1e-9)
    more = X.copy()
    more[:, COLUMN["user_purchases"]] += 3
    np.testing.assert_allclose(model.score(more, {"preference": 0.0})[0], model.score(X, {"preference": 0.0})[0])


def test_linear_kept_without_a_clear_gain_and_version_counts_up(fitted, tmp_path):
    _, out, _, _ = fitted
    # Relevance alone decides: both candidates rank perfectly, so the simpler one stays.
    groups = searches(lambda X, rng: X[:, COLUMN["relevance"]] > 0.8, users=80, seed=1)
    target = tmp_path / "blend"
    target.mkdir()
    (target / "manifest.json").write_text((out / "manifest.json").read_text())
    manifest = fit(groups, target, log=lambda message: None, threads=1)
    assert manifest["kind"] == "linear" and manifest["version"] == 2
    assert manifest["model_file"] == "blend_linear.json"
    assert set(manifest["transform"]) == {"fill", "log1p", "mean", "std"}
    assert not manifest["comparison"]["dev"]["lightgbm - linear"]["excludes_zero"]
    model = BlendModel.load(target)
    dev = [group for group in groups if split_of_user(group.user_id) == "dev"]
    assert mean_ndcg(dev, lambda X: model.score(X)[0]) == pytest.approx(1.0)
    assert manifest["metrics"]["ndcg@10"]["dev"]["linear"] == pytest.approx(1.0)


def test_lightgbm_kept_when_it_clearly_wins(tmp_path):
    # A purchase is due around its usual interval: not monotone, so no linear model can rank it.
    groups = searches(lambda X, rng: np.abs(X[:, COLUMN["due_ratio"]] - 1.0) < 0.25, users=80, seed=2)
    manifest = fit(groups, tmp_path, log=lambda message: None, threads=1)
    assert manifest["kind"] == "lightgbm" and manifest["comparison"]["dev"]["lightgbm - linear"]["low"] > 0
    assert manifest["importance"]["lightgbm_gain"]["due_ratio"] > 0.5
    assert BlendModel.load(tmp_path)._steps is not None  # one feature per tree: the fast exact route


def test_save_and_load_blend_data(tmp_path):
    groups = searches(bought_and_relevant, users=5)
    path = tmp_path / "groups.npz"
    assert save_blend_data(path, groups) == blend_data_digest(groups)
    loaded = load_blend_data(path)
    assert blend_data_digest(loaded) == blend_data_digest(groups)
    assert [(g.query_id, g.user_id) for g in loaded] == [(g.query_id, g.user_id) for g in groups]
    np.testing.assert_array_equal(loaded[3].features, groups[3].features)
    with np.load(path) as saved:
        arrays = {key: saved[key] for key in saved.files}
    # Collected with other features (an older schema): the names no longer match.
    with open(path, "wb") as file:
        np.savez(file, **{**arrays, "feature_names": arrays["feature_names"][::-1]})
    with pytest.raises(DataError, match="collect it again"):
        load_blend_data(path)
    arrays["features"][50, 0] += 1  # altered after saving: the stored digest no longer matches
    with open(path, "wb") as file:
        np.savez(file, **arrays)
    with pytest.raises(DataError, match="digest"):
        load_blend_data(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a blend feature dataset"):
        load_blend_data(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="expected"):
        save_blend_data(path, [QueryGroup("q", "u", np.zeros((3, F - 1)), np.zeros(3))])


def test_users_split_60_20_20_deterministically():
    counts = Counter(split_of_user(f"user-{number}") for number in range(20_000))
    assert counts["train"] / 20_000 == pytest.approx(0.6, abs=0.015)
    assert counts["dev"] / 20_000 == pytest.approx(0.2, abs=0.015)
    assert counts["test"] / 20_000 == pytest.approx(0.2, abs=0.015)
    assert split_of_user("user-7") == split_of_user("user-7")


def test_ndcg_at_10():
    labels = np.array([0, 1, 0, 1], dtype=np.float32)
    assert ndcg_at_10(np.array([4.0, 3, 2, 1]), labels) == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    assert ndcg_at_10(np.array([0.0, 1, 0, 1]), labels) == pytest.approx(1.0)
    assert ndcg_at_10(np.zeros(4), labels) == ndcg_at_10(np.array([4.0, 3, 2, 1]), labels)  # ties: given order
    assert ndcg_at_10(np.arange(4.0), np.zeros(4)) is None
    # Only the first 10 count.
    many = np.zeros(12, dtype=np.float32)
    many[11] = 1
    assert ndcg_at_10(-np.arange(12.0), many) == 0.0


def test_purchase_count_baseline_breaks_ties_by_popularity():
    X = np.zeros((4, F), dtype=np.float32)
    X[:, COLUMN["user_purchases"]] = [1, 0, 2, 1]
    X[:, COLUMN["popularity"]] = [1.0, 9.0, 0.0, 3.0]
    assert np.argsort(-baseline_scores("purchase_count", X)).tolist() == [2, 3, 0, 1]
    assert np.argsort(-baseline_scores("popularity", X)).tolist() == [1, 3, 0, 2]


def test_fit_refusals(tmp_path):
    groups = searches(bought_and_relevant, users=10)
    with pytest.raises(ValueError, match="expected"):
        fit([QueryGroup("q", "u", np.zeros((3, F - 1)), np.ones(3))], tmp_path, threads=1)
    for group in groups:
        group.labels[:] = 0
    with pytest.raises(DataError, match="no train query"):
        fit(groups, tmp_path, log=lambda message: None, threads=1)
