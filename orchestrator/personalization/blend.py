"""The learned blend: per-feature contributions of a trained model, reweighted by group at request time.

final = Σ over features of weight[group(feature)] · contribution[feature] + bias; with every weight 1 it is the
model's own score. Features, groups and the linear transform are core/personal_blend.py's. A model directory holds
manifest.json (written by training/blend_fit.py) and the model file it names, of one of two kinds:
- "lightgbm": a LightGBM text model. LightGBM's exact contributions (pred_contrib, TreeSHAP) cost 3 ms for 100
  candidates with 70 trees of 7 leaves and over 200 ms with 300 of 31, one or two threads alike, against a 5 ms
  budget; so training constrains every tree to one feature. A feature's contribution is then the sum of its
  trees minus their expected values, a step function of that feature alone, precomputed at load: a binary
  search per feature, equal to TreeSHAP's values. A model with trees over several features still loads and
  falls back to pred_contrib.
- "linear": weights over transformed features (NaN filled, optional log1p, standardized).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from core.errors import ConfigError, InvalidRequest
from core.personal_blend import BLEND_FEATURES, FEATURE_GROUPS, GROUP_NAMES, linear_input

KINDS = ("lightgbm", "linear")


@dataclass(frozen=True)
class _StepFunction:
    """One feature's total contribution: values[k] on (thresholds[k-1], thresholds[k]], `missing` for NaN."""

    thresholds: np.ndarray
    values: np.ndarray
    missing: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(x), self.missing, self.values[np.searchsorted(self.thresholds, x)])


class BlendModel:
    """A loaded blend model; load() it from a directory."""

    def __init__(self, kind: str, version: int, manifest: dict[str, Any]) -> None:
        self.kind = kind
        self.version = version
        self.manifest = manifest
        self.features = tuple(manifest["features"])
        self._group_of_column = [FEATURE_GROUPS[name] for name in self.features]
        self._booster: Any = None
        self._steps: list[_StepFunction] | None = None
        self._bias = 0.0
        self._linear: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, directory: Path) -> BlendModel:
        """Reads manifest.json and the model file it names; ConfigError when either cannot be used."""
        directory = Path(directory)
        manifest = _read_json(directory / "manifest.json", "blend manifest")
        kind = manifest.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"{directory / 'manifest.json'}: kind {kind!r} is not one of {', '.join(KINDS)}")
        if tuple(manifest.get("features", ())) != BLEND_FEATURES:
            raise ConfigError(f"{directory / 'manifest.json'}: features {manifest.get('features')} do not match "
                              f"this version's {list(BLEND_FEATURES)}; retrain the blend")
        if manifest.get("groups", FEATURE_GROUPS) != FEATURE_GROUPS:
            raise ConfigError(f"{directory / 'manifest.json'}: feature groups {manifest['groups']} do not match "
                              f"this version's {FEATURE_GROUPS}; retrain the blend")
        if not isinstance(manifest.get("model_file"), str):
            raise ConfigError(f"{directory / 'manifest.json'}: no model_file")
        model = cls(kind, int(manifest.get("version", 0)), manifest)
        path = directory / manifest["model_file"]
        if kind == "lightgbm":
            model._load_lightgbm(path)
        else:
            model._load_linear(path)
        return model

    def _load_lightgbm(self, path: Path) -> None:
        import lightgbm

        if not path.is_file():
            raise ConfigError(f"blend model file {path} is missing")
        try:
            self._booster = lightgbm.Booster(model_file=str(path))
        except lightgbm.basic.LightGBMError as error:
            raise ConfigError(f"blend model file {path} cannot be read: {error}") from error
        if tuple(self._booster.feature_name()) != BLEND_FEATURES:
            raise ConfigError(f"blend model file {path}: features {self._booster.feature_name()} do not match "
                              f"{list(BLEND_FEATURES)}")
        self._steps, self._bias = _step_functions(self._booster.dump_model())

    def _load_linear(self, path: Path) -> None:
        spec = _read_json(path, "linear blend model")
        try:
            for key in ("weights", "fill", "mean", "std"):
                self._linear[key] = np.array([float(spec[key][name]) for name in BLEND_FEATURES])
            self._linear["log1p"] = np.array([name in spec["log1p"] for name in BLEND_FEATURES])
            self._bias = float(spec["bias"])
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"linear blend model {path} is malformed: {error!r}") from error
        numbers = [self._linear[key] for key in ("weights", "fill", "mean", "std")] + [np.array([self._bias])]
        if not all(np.isfinite(values).all() for values in numbers) or np.any(self._linear["std"] <= 0):
            raise ConfigError(f"linear blend model {path} holds non-finite values or a non-positive std")

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """(n, F + 1): each feature's contribution to the model's score, then the bias; rows sum to the score."""
        X = self._check(X)
        out = np.empty((len(X), len(BLEND_FEATURES) + 1))
        out[:, -1] = self._bias
        if self.kind == "linear":
            out[:, :-1] = self._linear["weights"] * self._transform(X)
        elif self._steps is not None:
            values = X.astype(np.float64)
            for column, step in enumerate(self._steps):
                out[:, column] = step(values[:, column])
        elif len(X):
            out[:] = self._booster.predict(X, pred_contrib=True, num_threads=1)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The model's own score, computed without contributions."""
        X = self._check(X)
        if self.kind == "linear":
            return self._transform(X) @ self._linear["weights"] + self._bias
        if not len(X):
            return np.zeros(0)
        return self._booster.predict(X, raw_score=True, num_threads=1)

    def score(self, X: np.ndarray, weights: Mapping[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(final scores, contributions): each contribution reweighted by its group's weight (missing ones 1), so
        that every row of contributions, bias included, sums to its final score."""
        column_weights = self._column_weights(weights)
        contributions = self.contributions(X)
        contributions[:, :-1] *= column_weights
        return contributions.sum(axis=1), contributions

    def _column_weights(self, weights: Mapping[str, float] | None) -> np.ndarray:
        weights = dict(weights or {})
        check_weights(weights)
        return np.array([float(weights.get(group, 1.0)) for group in self._group_of_column])

    def _transform(self, X: np.ndarray) -> np.ndarray:
        linear = self._linear
        return linear_input(X, linear["fill"], linear["log1p"], linear["mean"], linear["std"])

    @staticmethod
    def _check(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != len(BLEND_FEATURES):
            raise ValueError(f"expected an (n, {len(BLEND_FEATURES)}) feature matrix, got shape {X.shape}")
        return X


def check_weights(weights: Mapping[str, float]) -> None:
    """Raise InvalidRequest unless every key is a blend group and every weight a finite number."""
    unknown = sorted(set(weights) - set(GROUP_NAMES))
    if unknown:
        raise InvalidRequest(f"unknown blend weight(s) {unknown}; known: {', '.join(GROUP_NAMES)}")
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidRequest(f"blend weight {name!r} must be a finite number, not {value!r}")


def _read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from a file, or ConfigError naming the file."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{what} {path} cannot be read: {error}") from error
    if not isinstance(value, dict):
        raise ConfigError(f"{what} {path} is not a JSON object")
    return value


def _step_functions(dump: dict[str, Any]) -> tuple[list[_StepFunction] | None, float]:
    """Per-feature step functions and the bias of a model whose trees each split on one feature.

    (None, 0.0) when the fast route does not apply: a tree over several features, a categorical split, zero
    treated as missing, averaged (random forest) output, or more than one tree per iteration.
    """
    trees = [tree["tree_structure"] for tree in dump["tree_info"]]
    if dump.get("average_output") or dump.get("num_tree_per_iteration", 1) != 1:
        return None, 0.0
    by_feature: dict[int, list[tuple[dict[str, Any], float, list[dict[str, Any]]]]] = {}
    bias = 0.0
    for tree in trees:
        splits = list(_splits(tree))
        if any(node["decision_type"] != "<=" or node["missing_type"] == "Zero" for node in splits):
            return None, 0.0
        features = {node["split_feature"] for node in splits}
        if len(features) > 1:
            return None, 0.0
        expected = _expected_value(tree)
        bias += expected
        if features:
            by_feature.setdefault(features.pop(), []).append((tree, expected, splits))
    steps = []
    for column in range(len(BLEND_FEATURES)):
        members = by_feature.get(column, [])
        thresholds = np.unique([node["threshold"] for _, _, splits in members for node in splits])
        # Interval k is (thresholds[k-1], thresholds[k]]: its right end stands for it; +inf for the last one.
        points = np.append(thresholds, np.inf)
        values = np.zeros(len(points))
        missing = 0.0
        for tree, expected, _ in members:
            values += _evaluate(tree, points) - expected
            missing += _evaluate(tree, np.array([np.nan]))[0] - expected
        steps.append(_StepFunction(thresholds, values, missing))
    return steps, bias


def _splits(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The split nodes of a dumped tree."""
    if "split_feature" in node:
        yield node
        yield from _splits(node["left_child"])
        yield from _splits(node["right_child"])


def _expected_value(tree: dict[str, Any]) -> float:
    """The tree's mean output over its training rows, as LightGBM's TreeSHAP takes it."""
    if "split_feature" not in tree:
        return float(tree["leaf_value"])
    leaves = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            stack += [node["left_child"], node["right_child"]]
        else:
            leaves.append((node["leaf_count"], node["leaf_value"]))
    return sum(count * value for count, value in leaves) / tree["internal_count"]


def _evaluate(node: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """A dumped tree's output at each value of its one feature, with LightGBM's missing-value rules."""
    if "split_feature" not in node:
        return np.full(len(x), float(node["leaf_value"]))
    nan = np.isnan(x)
    if node["missing_type"] == "NaN":
        left = np.where(nan, node["default_left"], x <= node["threshold"])
    else:  # "None": LightGBM reads NaN as 0
        left = np.where(nan, 0.0 <= node["threshold"], x <= node["threshold"])
    out = np.empty(len(x))
    out[left] = _evaluate(node["left_child"], x[left])
    out[~left] = _evaluate(node["right_child"], x[~left])
    return out
