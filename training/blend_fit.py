"""Fitting the learned personalization blend (orchestrator/personalization/blend.py) from a feature dataset.

A dataset is a list of QueryGroups: one search of one user, each candidate's features and its gain.
Users are split deterministically (60/20/20 by a hash of the id), so no user's history crosses splits. Two
candidates are fit on train users: LightGBM lambdarank (a small grid, early stopping on dev) and a logistic
regression on standardized features. LightGBM is kept only if its dev nDCG@10 beats the linear model's with a
paired bootstrap interval that excludes zero; test is measured once for both and for the baselines (relevance,
popularity, the user's purchase count with ties by popularity) and decides nothing.

Every LightGBM tree may split on one feature only (interaction constraints): each feature's contribution is then
a function of that feature alone, exactly computable within the serving budget, and the blend's group weights
scale parts the model really keeps apart.

Training is a peer of serving and imports none of it: both read the features, their groups and the linear transform
from core/personal_blend.py, and the files written here are the contract BlendModel reads.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from core.errors import DataError
from core.metrics import ndcg_by_score
from core.personal_blend import BLEND_FEATURES, FEATURE_GROUPS, linear_input
from core.splits import split_by_hash
from core.stats import Interval, paired_bootstrap

SPLITS = {"train": 0.6, "dev": 0.2, "test": 0.2}
LIGHTGBM_PARAMS = {
    "objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "learning_rate": 0.05,
    "feature_pre_filter": False, "deterministic": True, "force_row_wise": True, "verbose": -1,
}
LIGHTGBM_GRID = [{"num_leaves": leaves, "min_data_in_leaf": min_data}
                 for leaves in (7, 15, 31) for min_data in (20, 100)]
MAX_ROUNDS = 500
EARLY_STOPPING_ROUNDS = 100  # dev nDCG of one-feature trees dips for a while before rising again
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
# Counts and durations are skewed: the linear model reads them as log1p.
LOG1P = ("user_purchases", "user_clicks_carts", "days_since_purchase", "purchase_interval", "due_ratio")
# For these, NaN means "never bought": filled with the largest train value rather than the median.
NEVER = ("days_since_purchase", "due_ratio")
BASELINES = ("relevance", "popularity", "purchase_count")
_COLUMN = {name: index for index, name in enumerate(BLEND_FEATURES)}
MODEL_FILES = {"lightgbm": "blend_lightgbm.txt", "linear": "blend_linear.json"}


@dataclass
class QueryGroup:
    """One search of one user: the candidates' features (n, len(BLEND_FEATURES)) and gains (n,)."""

    query_id: str
    user_id: str
    features: np.ndarray
    labels: np.ndarray


def blend_data_digest(groups: Sequence[QueryGroup]) -> str:
    """SHA-256 of the searches' ids, features and labels, in order."""
    digest = hashlib.sha256()
    for group in groups:
        for text in (group.query_id, group.user_id):
            encoded = text.encode("utf-8")
            digest.update(len(encoded).to_bytes(8, "big") + encoded)
        features = np.ascontiguousarray(group.features, dtype=np.float32)
        digest.update(np.array(features.shape, dtype=np.int64).tobytes() + features.tobytes())
        digest.update(np.ascontiguousarray(group.labels, dtype=np.float32).tobytes())
    return digest.hexdigest()


def save_blend_data(path: Path, groups: Sequence[QueryGroup]) -> str:
    """Writes the searches and their feature names to one .npz file; returns blend_data_digest of them."""
    _check_shapes(groups, len(BLEND_FEATURES))
    digest = blend_data_digest(groups)
    sizes = [len(group.labels) for group in groups]
    no_rows = np.zeros((0, len(BLEND_FEATURES)))  # what a file without searches holds
    with open(path, "wb") as file:
        np.savez(
            file,
            features=np.concatenate([g.features for g in groups] + [no_rows]).astype(np.float32),
            labels=np.concatenate([g.labels for g in groups] + [np.zeros(0)]).astype(np.float32),
            offsets=np.cumsum([0] + sizes).astype(np.int64),
            query_ids=np.array([g.query_id for g in groups], dtype=str),
            user_ids=np.array([g.user_id for g in groups], dtype=str),
            feature_names=np.array(list(BLEND_FEATURES), dtype=str),
            digest=np.array(digest),
        )
    return digest


def load_blend_data(path: Path) -> list[QueryGroup]:
    """Reads searches written by save_blend_data; DataError when the file is unreadable, altered or has other
    features than BLEND_FEATURES."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        names, offsets = tuple(arrays["feature_names"].tolist()), arrays["offsets"]
        groups = [QueryGroup(str(query_id), str(user_id), arrays["features"][start:end], arrays["labels"][start:end])
                  for query_id, user_id, start, end
                  in zip(arrays["query_ids"], arrays["user_ids"], offsets[:-1], offsets[1:])]
        stored = str(arrays["digest"])
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"{path}: not a blend feature dataset ({error})") from error
    if names != BLEND_FEATURES:
        raise DataError(f"{path}: built with features {list(names)}, not {list(BLEND_FEATURES)}; collect it again")
    if blend_data_digest(groups) != stored:
        raise DataError(f"{path}: content does not match its digest")
    return groups


def split_of_user(user_id: str) -> str:
    """'train', 'dev' or 'test' for a user (60/20/20), by SHA-256 of the id."""
    return split_by_hash(user_id, SPLITS)


def ndcg_at_10(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """nDCG@10 of the order by descending score (ties: candidate order); None without a positive label."""
    return ndcg_by_score(scores, labels, 10)


def baseline_scores(name: str, X: np.ndarray) -> np.ndarray:
    """A baseline's scores: the relevance feature, popularity, or purchase count with ties by popularity."""
    if name == "purchase_count":
        order = np.lexsort((-X[:, _COLUMN["popularity"]], -X[:, _COLUMN["user_purchases"]]))
        scores = np.empty(len(X))
        scores[order] = -np.arange(len(X), dtype=np.float64)
        return scores
    return X[:, _COLUMN[name]].astype(np.float64)


def fit(groups: Sequence[QueryGroup], out_dir: Path, seed: int = 0, log: Callable[[str], None] = print, *,
        threads: int = 2) -> dict:
    """Fits both candidates, keeps one, writes its model file and manifest.json to out_dir; returns the manifest.

    `threads` are LightGBM's; on a host whose cores are busy, more threads than free cores slow it many-fold.
    """
    _check_shapes(groups, len(BLEND_FEATURES))
    splits: dict[str, list[QueryGroup]] = {name: [] for name in SPLITS}
    counts = {name: {"users": set(), "queries": 0, "skipped_no_relevant": 0} for name in SPLITS}
    for group in groups:
        name = split_of_user(group.user_id)
        counts[name]["users"].add(group.user_id)
        if np.any(group.labels > 0):
            splits[name].append(group)
            counts[name]["queries"] += 1
        else:
            counts[name]["skipped_no_relevant"] += 1
    split_counts = {name: {**count, "users": len(count["users"])} for name, count in counts.items()}
    log(f"blend data: {split_counts}")
    for name in ("train", "dev"):
        if not splits[name]:
            raise DataError(f"no {name} query with a relevant product: cannot fit the blend")

    booster, lightgbm_params, lightgbm_grid = _fit_lightgbm(splits["train"], splits["dev"], seed, threads, log)
    linear, linear_scores, linear_grid = _fit_linear(splits["train"], splits["dev"], log)
    scorers = {"lightgbm": lambda X: booster.predict(X, num_iteration=booster.best_iteration, raw_score=True),
               "linear": linear_scores}
    scorers.update({name: lambda X, name=name: baseline_scores(name, X) for name in BASELINES})
    per_query = {split: {name: _per_query(splits[split], scorer) for name, scorer in scorers.items()}
                 for split in ("dev", "test") if splits[split]}
    comparison = {split: {
        f"{a} - {b}": paired_bootstrap(by_name[a], by_name[b], seed=seed)
        for a, b in (("lightgbm", "linear"), ("lightgbm", "purchase_count"), ("linear", "purchase_count"))
    } for split, by_name in per_query.items()}
    dev_gain = comparison["dev"]["lightgbm - linear"]
    kind = "lightgbm" if dev_gain.low > 0 else "linear"
    reason = (f"dev nDCG@10 lightgbm - linear {dev_gain.text()}: "
              + ("lightgbm kept" if kind == "lightgbm" else "no clear gain, the simpler linear model kept"))
    log(reason)
    metrics = {split: {name: round(float(np.mean(values)), 4) for name, values in by_name.items()}
               for split, by_name in per_query.items()}
    for split, by_name in metrics.items():
        log(f"{split} nDCG@10: " + ", ".join(f"{name} {value}" for name, value in by_name.items()))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_file = MODEL_FILES[kind]
    if kind == "lightgbm":
        booster.save_model(str(out_dir / model_file), num_iteration=booster.best_iteration)
    else:
        _write_json(out_dir / model_file, linear)
    gains = booster.feature_importance("gain", iteration=booster.best_iteration)
    manifest = {
        "kind": kind,
        "version": _previous_version(out_dir) + 1,
        "model_file": model_file,
        "features": list(BLEND_FEATURES),
        "groups": {name: FEATURE_GROUPS[name] for name in BLEND_FEATURES},
        "data_sha256": blend_data_digest(groups),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "split": split_counts,
        "metrics": {"ndcg@10": metrics},
        "comparison": {split: {name: _interval_json(interval) for name, interval in by_name.items()}
                       for split, by_name in comparison.items()},
        "chosen_because": reason,
        "importance": {
            "lightgbm_gain": {name: round(float(gain / max(gains.sum(), 1e-12)), 4)
                              for name, gain in zip(BLEND_FEATURES, gains)},
            "linear_weights": {name: round(weight, 4) for name, weight in linear["weights"].items()},
        },
        "hyperparameters": {
            "lightgbm": {**lightgbm_params, "num_boost_round": booster.best_iteration, "grid": lightgbm_grid},
            "linear": {"l2": linear["l2"], "grid": linear_grid},
        },
    }
    if kind == "linear":
        manifest["transform"] = {key: linear[key] for key in ("fill", "log1p", "mean", "std")}
    _write_json(out_dir / "manifest.json", manifest)
    log(f"blend model v{manifest['version']} ({kind}) written to {out_dir}")
    return manifest


def _check_shapes(groups: Sequence[QueryGroup], width: int) -> None:
    """ValueError naming the first group whose arrays are not (n, width) and (n,)."""
    for group in groups:
        if group.features.ndim != 2 or group.features.shape[1] != width or group.labels.shape != (len(group.features),):
            raise ValueError(f"group {group.query_id!r}: features {group.features.shape}, labels "
                             f"{group.labels.shape}; expected (n, {width}) and (n,)")


def _stack(groups: Sequence[QueryGroup]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """All rows of the groups, their labels, and each group's size."""
    return (np.concatenate([group.features for group in groups]).astype(np.float32),
            np.concatenate([group.labels for group in groups]).astype(np.float64),
            [len(group.labels) for group in groups])


def _per_query(groups: Sequence[QueryGroup], scorer: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """nDCG@10 of each group (all have a relevant product) ordered by scorer(X)."""
    X, labels, sizes = _stack(groups)
    scores = scorer(X)
    bounds = np.cumsum([0] + sizes)
    return np.array([ndcg_at_10(scores[start:end], labels[start:end]) for start, end in zip(bounds[:-1], bounds[1:])])


def _fit_lightgbm(train: Sequence[QueryGroup], dev: Sequence[QueryGroup], seed: int, threads: int,
                  log: Callable[[str], None]) -> tuple[object, dict, list[dict]]:
    """The grid's best lambdarank booster on dev nDCG@10, its parameters, and every grid point's result."""
    import lightgbm

    X, y, sizes = _stack(train)
    X_dev, y_dev, sizes_dev = _stack(dev)
    if np.any(y < 0) or np.any(y != np.round(y)) or np.any(y_dev != np.round(y_dev)):
        raise DataError("lambdarank needs non-negative integer gains")
    params = {**LIGHTGBM_PARAMS, "seed": seed, "num_threads": threads,
              "label_gain": list(range(int(max(y.max(), y_dev.max())) + 1)),  # linear gains, as nDCG here
              "interaction_constraints": [[column] for column in range(len(BLEND_FEATURES))]}
    data = lightgbm.Dataset(X, y.astype(np.int32), group=sizes, feature_name=list(BLEND_FEATURES),
                            params={"feature_pre_filter": False})
    dev_data = lightgbm.Dataset(X_dev, y_dev.astype(np.int32), group=sizes_dev, reference=data)
    best, best_params, results = None, {}, []
    for point in LIGHTGBM_GRID:
        booster = lightgbm.train({**params, **point}, data, MAX_ROUNDS, valid_sets=[dev_data], valid_names=["dev"],
                                 callbacks=[lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)])
        score = booster.best_score["dev"]["ndcg@10"]
        results.append({**point, "rounds": booster.best_iteration, "dev_ndcg@10": round(score, 4)})
        log(f"lightgbm {point}: {booster.best_iteration} rounds, dev nDCG@10 {score:.4f}")
        if best is None or score > best.best_score["dev"]["ndcg@10"]:
            best, best_params = booster, {**params, **point}
    best_params["interaction_constraints"] = "one feature per tree"
    return best, best_params, results


def _fit_linear(train: Sequence[QueryGroup], dev: Sequence[QueryGroup], log: Callable[[str], None]
                ) -> tuple[dict, Callable[[np.ndarray], np.ndarray], dict[str, float]]:
    """The L2 grid's best logistic regression on dev nDCG@10: its model file content, its scorer, the grid."""
    from scipy.optimize import minimize
    from scipy.special import expit

    X, y, _ = _stack(train)
    y = (y > 0).astype(np.float64)
    finite = [X[~np.isnan(X[:, column]), column] for column in range(len(BLEND_FEATURES))]
    fill = np.array([(values.max() if name in NEVER else np.median(values)) if len(values) else 0.0
                     for name, values in zip(BLEND_FEATURES, finite)], dtype=np.float64)
    log1p = np.array([name in LOG1P for name in BLEND_FEATURES])
    transformed = linear_input(X, fill, log1p, 0.0, 1.0)
    mean, std = transformed.mean(axis=0), transformed.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    Z = (transformed - mean) / std

    def loss(theta: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
        weights, bias = theta[:-1], theta[-1]
        margin = Z @ weights + bias
        error = expit(margin) - y
        value = np.mean(np.logaddexp(0.0, margin) - y * margin) + 0.5 * l2 * weights @ weights
        return value, np.append(Z.T @ error / len(y) + l2 * weights, error.mean())

    def scorer(theta: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        return lambda X: linear_input(X, fill, log1p, mean, std) @ theta[:-1] + theta[-1]

    best, results = None, {}
    for l2 in L2_GRID:
        theta = minimize(loss, np.zeros(len(BLEND_FEATURES) + 1), args=(l2,), jac=True, method="L-BFGS-B").x
        score = float(np.mean(_per_query(dev, scorer(theta))))
        results[str(l2)] = round(score, 4)
        log(f"linear l2={l2}: dev nDCG@10 {score:.4f}")
        if best is None or score > best[0]:
            best = (score, l2, theta)
    _, l2, theta = best
    spec = {"kind": "linear", "weights": dict(zip(BLEND_FEATURES, theta[:-1].tolist())), "bias": float(theta[-1]),
            "l2": l2, "fill": dict(zip(BLEND_FEATURES, fill.tolist())),
            "log1p": [name for name, flag in zip(BLEND_FEATURES, log1p) if flag],
            "mean": dict(zip(BLEND_FEATURES, mean.tolist())), "std": dict(zip(BLEND_FEATURES, std.tolist()))}
    return spec, scorer(theta), results


def _interval_json(interval: Interval) -> dict:
    """An interval as the manifest shows it."""
    return {"text": interval.text(), "mean_difference": round(interval.mean_difference, 4),
            "low": round(interval.low, 4), "high": round(interval.high, 4), "n": interval.n,
            "excludes_zero": interval.excludes_zero}


def _previous_version(out_dir: Path) -> int:
    """The version of the manifest already in out_dir; 0 when there is none."""
    try:
        return int(json.loads((out_dir / "manifest.json").read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _write_json(path: Path, value: dict) -> None:
    """Writes JSON atomically, so a reader never sees half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(partial, path)
