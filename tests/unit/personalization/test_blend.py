"""orchestrator.personalization.blend: loading blend models, exact contributions, group weights, errors."""

from __future__ import annotations

import json
import math

import lightgbm
import numpy as np
import pytest

from core.errors import ConfigError, InvalidRequest
from core.personal_blend import BLEND_FEATURES, FEATURE_GROUPS, FEATURES_BY_GROUP
from orchestrator.personalization.blend import BlendModel

F = len(BLEND_FEATURES)
COLUMN = {name: index for index, name in enumerate(BLEND_FEATURES)}


def synthetic(rows: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, F)).astype(np.float32)
    X[rng.random(X.shape) < 0.2] = np.nan
    X[:, COLUMN["user_purchases"]] = rng.poisson(1.0, rows)
    X[rng.random(rows) < 0.1, COLUMN["popularity"]] = 0.0
    signal = 2 * X[:, COLUMN["user_purchases"]] + np.nan_to_num(X[:, COLUMN["relevance"]]) \
        - np.abs(np.nan_to_num(X[:, COLUMN["due_ratio"]]))
    y = (signal + rng.standard_normal(rows) > 2.5).astype(np.int32)
    return X, y


def write_lightgbm(directory, one_feature_per_tree: bool = True, rounds: int = 60):
    X, y = synthetic()
    params = {"objective": "lambdarank", "num_leaves": 7, "min_data_in_leaf": 10, "verbose": -1, "num_threads": 1,
              "deterministic": True, "seed": 0}
    if one_feature_per_tree:
        params["interaction_constraints"] = [[column] for column in range(F)]
    data = lightgbm.Dataset(X, y, group=[30] * 100, feature_name=list(BLEND_FEATURES))
    booster = lightgbm.train(params, data, rounds)
    booster.save_model(str(directory / "model.txt"))
    write_manifest(directory, kind="lightgbm", model_file="model.txt")
    return booster


def write_manifest(directory, **fields):
    manifest = {"kind": "lightgbm", "version": 3, "model_file": "model.txt", "features": list(BLEND_FEATURES),
                "groups": FEATURE_GROUPS, **fields}
    (directory / "manifest.json").write_text(json.dumps(manifest))


LINEAR = {
    "weights": {name: 0.1 * (index + 1) for index, name in enumerate(BLEND_FEATURES)},
    "bias": -0.5,
    "fill": {name: 2.0 if name == "days_since_purchase" else 0.0 for name in BLEND_FEATURES},
    "mean": {name: 0.5 for name in BLEND_FEATURES},
    "std": {name: 2.0 for name in BLEND_FEATURES},
    "log1p": ["user_purchases", "days_since_purchase"],
}


def write_linear(directory, spec=LINEAR):
    (directory / "linear.json").write_text(json.dumps(spec))
    write_manifest(directory, kind="linear", model_file="linear.json")


@pytest.mark.parametrize("one_feature_per_tree", [True, False])
def test_lightgbm_contributions_equal_treeshap(tmp_path, one_feature_per_tree):
    booster = write_lightgbm(tmp_path, one_feature_per_tree)
    model = BlendModel.load(tmp_path)
    assert model.kind == "lightgbm" and model.version == 3 and model.features == BLEND_FEATURES
    X, _ = synthetic(200, seed=1)
    X[:5] = np.nan  # every feature missing
    X[5:10, COLUMN["popularity"]] = 0.0
    contributions = model.contributions(X)
    assert contributions.shape == (200, F + 1)
    np.testing.assert_allclose(contributions, booster.predict(X, pred_contrib=True), rtol=0, atol=1e-9)
    np.testing.assert_allclose(contributions.sum(axis=1), model.predict(X), rtol=0, atol=1e-9)
    # Values exactly on split thresholds go left (x <= threshold), as in LightGBM.
    on_split = np.zeros((4, F))
    for node in _splits(booster.dump_model()["tree_info"][:4]):
        on_split[:, node["split_feature"]] = node["threshold"]
    np.testing.assert_allclose(model.contributions(on_split), booster.predict(on_split, pred_contrib=True), atol=1e-9)


def _splits(trees):
    stack = [tree["tree_structure"] for tree in trees]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            yield node
            stack += [node["left_child"], node["right_child"]]


def test_one_feature_trees_take_the_fast_route(tmp_path):
    # pred_contrib costs 15+ ms for 100 candidates; the step functions keep the blend within its budget.
    write_lightgbm(tmp_path)
    model = BlendModel.load(tmp_path)
    assert model._steps is not None
    X, _ = synthetic(100, seed=2)
    other = X.copy()
    other[:, COLUMN["relevance"]] += 1.0
    unchanged = [column for column in range(F + 1) if column != COLUMN["relevance"]]
    np.testing.assert_array_equal(model.contributions(X)[:, unchanged], model.contributions(other)[:, unchanged])


def test_linear_contributions_are_weight_times_transformed_feature(tmp_path):
    write_linear(tmp_path)
    model = BlendModel.load(tmp_path)
    X = np.zeros((2, F), dtype=np.float32)
    X[0, COLUMN["user_purchases"]] = 3.0
    X[1, COLUMN["user_purchases"]] = np.nan  # filled with 0
    X[0, COLUMN["days_since_purchase"]] = np.nan  # filled with 2, then log1p
    X[0, COLUMN["relevance"]] = 1.5
    contributions = model.contributions(X)
    weight = LINEAR["weights"]
    assert contributions[0, COLUMN["user_purchases"]] == pytest.approx(weight["user_purchases"]
                                                                       * (math.log1p(3) - 0.5) / 2)
    assert contributions[1, COLUMN["user_purchases"]] == pytest.approx(weight["user_purchases"] * (0 - 0.5) / 2)
    assert contributions[0, COLUMN["days_since_purchase"]] == pytest.approx(weight["days_since_purchase"]
                                                                            * (math.log1p(2) - 0.5) / 2)
    assert contributions[0, COLUMN["relevance"]] == pytest.approx(weight["relevance"] * (1.5 - 0.5) / 2)
    assert (contributions[:, -1] == -0.5).all()
    np.testing.assert_allclose(contributions.sum(axis=1), model.predict(X))


@pytest.mark.parametrize("kind", ["lightgbm", "linear"])
def test_group_weights_scale_their_groups(tmp_path, kind):
    write_lightgbm(tmp_path) if kind == "lightgbm" else write_linear(tmp_path)
    model = BlendModel.load(tmp_path)
    X, _ = synthetic(100, seed=3)
    final, contributions = model.score(X)
    np.testing.assert_allclose(final, model.predict(X), atol=1e-9)
    parts = {group: contributions[:, [COLUMN[name] for name in FEATURES_BY_GROUP[group]]].sum(axis=1)
             for group in ("relevance", "preference", "popularity")}
    weighted, _ = model.score(X, {"relevance": 2.0, "preference": 0.0})
    np.testing.assert_allclose(weighted, 2 * parts["relevance"] + parts["popularity"] + contributions[:, -1])
    # With preference off, the user's purchases no longer move the score.
    other = X.copy()
    other[:, COLUMN["user_purchases"]] += 5
    np.testing.assert_allclose(model.score(other, {"preference": 0})[0], model.score(X, {"preference": 0})[0])
    assert not np.allclose(model.score(other)[0], final)


@pytest.mark.parametrize("weights", [{"style": 1.0}, {"preference": math.nan}, {"relevance": math.inf},
                                     {"popularity": "1"}, {"preference": True}])
def test_bad_weights_are_invalid_requests(tmp_path, weights):
    write_linear(tmp_path)
    with pytest.raises(InvalidRequest):
        BlendModel.load(tmp_path).score(np.zeros((3, F)), weights)


def test_shapes(tmp_path):
    write_lightgbm(tmp_path)
    model = BlendModel.load(tmp_path)
    final, contributions = model.score(np.zeros((0, F), np.float32))
    assert final.shape == (0,) and contributions.shape == (0, F + 1)
    with pytest.raises(ValueError, match="feature matrix"):
        model.score(np.zeros((3, F - 1)))


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="manifest.json is missing"):
        BlendModel.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot be read"):
        BlendModel.load(tmp_path)
    write_manifest(tmp_path, kind="forest")
    with pytest.raises(ConfigError, match="kind 'forest'"):
        BlendModel.load(tmp_path)
    write_manifest(tmp_path, features=list(BLEND_FEATURES[:-1]))
    with pytest.raises(ConfigError, match="do not match"):
        BlendModel.load(tmp_path)
    write_manifest(tmp_path, groups={**FEATURE_GROUPS, "popularity": "preference"})
    with pytest.raises(ConfigError, match="groups"):
        BlendModel.load(tmp_path)
    write_manifest(tmp_path)
    with pytest.raises(ConfigError, match="model.txt is missing"):
        BlendModel.load(tmp_path)
    (tmp_path / "model.txt").write_text("tree\nversion=v4\nnot a model\n")
    with pytest.raises(ConfigError, match="cannot be read"):
        BlendModel.load(tmp_path)


def test_lightgbm_model_with_other_features_is_refused(tmp_path):
    X, y = synthetic(300)
    booster = lightgbm.train({"objective": "binary", "verbose": -1}, lightgbm.Dataset(X, y), 3)
    booster.save_model(str(tmp_path / "model.txt"))  # features Column_0...: trained on something else
    write_manifest(tmp_path)
    with pytest.raises(ConfigError, match="do not match"):
        BlendModel.load(tmp_path)


@pytest.mark.parametrize("damage", [lambda spec: spec.pop("bias"), lambda spec: spec["weights"].pop("popularity"),
                                    lambda spec: spec["std"].update(relevance=0.0),
                                    lambda spec: spec["mean"].update(relevance="x")])
def test_malformed_linear_model_is_refused(tmp_path, damage):
    spec = json.loads(json.dumps(LINEAR))
    damage(spec)
    write_linear(tmp_path, spec)
    with pytest.raises(ConfigError, match="linear blend model"):
        BlendModel.load(tmp_path)
