"""The plaintext tree maths against a brute-force reference and against XGBoost."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedcredit.model import trees as T


def _data(n: int = 300, seed: int = 3) -> tuple[np.ndarray, list[int], np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    x[rng.random((n, 4)) < 0.08] = np.nan
    z = np.nan_to_num(x[:, 0]) - 0.8 * np.nan_to_num(x[:, 2]) + 0.5 * np.isnan(x[:, 1])
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.float64)
    edges = [T.fit_edges(x[:, j], 6) for j in range(4)]
    return T.bin_matrix(x, edges), [len(e) + 1 for e in edges], y


def _brute_tree(
    bins: np.ndarray, n_regular: list[int], g: np.ndarray, h: np.ndarray, p: T.TreeParams
) -> dict[int, tuple[Any, ...]]:
    """Every split by row masks, straight from the definitions (no histograms, no prefix sums)."""
    out: dict[int, tuple[Any, ...]] = {}

    def grow(node: int, rows: np.ndarray, level: int) -> None:
        G, H = g[rows].sum(), h[rows].sum()
        best = None
        if level < p.depth:
            for f in range(bins.shape[1]):
                for t in range(n_regular[f]):
                    for dl in (False, True):
                        b = bins[rows, f]
                        left = np.where(b >= n_regular[f], dl, b <= t)
                        lr, rr = rows[left], rows[~left]
                        if min(len(lr), len(rr)) < max(p.min_rows, 1):
                            continue
                        gl, hl, gr, hr = g[lr].sum(), h[lr].sum(), g[rr].sum(), h[rr].sum()
                        if hl < p.min_child_weight or hr < p.min_child_weight:
                            continue
                        gain = gl**2 / (hl + p.l2) + gr**2 / (hr + p.l2) - G**2 / (H + p.l2)
                        if gain > T.MIN_GAIN and (best is None or gain > best[0] + 1e-12):
                            best = (gain, f, lr, rr, frozenset(lr.tolist()))
        if best is None:
            out[node] = ("leaf", -p.learning_rate * G / (H + p.l2))
            return
        out[node] = ("split", best[1], best[4])
        grow(2 * node + 1, best[2], level + 1)
        grow(2 * node + 2, best[3], level + 1)

    grow(0, np.arange(len(bins)), 0)
    return out


def test_a_tree_has_the_brute_force_splits_and_leaf_values() -> None:
    bins, n_regular, y = _data()
    params = T.TreeParams(depth=3, min_rows=5)
    g, h = T.gradients(y, np.full(len(y), T.base_margin(y)))
    tree = T.grow_tree(bins, n_regular, g, h, params)
    reference = _brute_tree(bins, n_regular, g, h, params)
    leaves = tree.leaf_of(bins, n_regular)
    for node, entry in reference.items():
        if entry[0] == "leaf":
            assert tree.is_leaf(node)
            assert abs(tree.value[node] - entry[1]) < 1e-9
        else:
            assert tree.feature[node] == entry[1]
            went_left = {i for i in range(len(bins)) if _descends(leaves[i], 2 * node + 1)}
            assert went_left == set(entry[2])


def _descends(leaf: int, node: int) -> bool:
    while leaf > node:
        leaf = (leaf - 1) // 2
    return leaf == node


def test_the_first_best_candidate_wins_and_twins_are_dropped() -> None:
    sums = T.Sums(
        np.array([1.0, 0.0, 2.0, 0.5]), np.array([1.0, 0.0, 1.0, 0.5]), np.array([3, 0, 4, 0])
    )
    c = T.candidates(sums, 3)
    # bin 1 is empty (t = 1 repeats t = 0) and there are no missing rows (no default_left twins)
    assert c.threshold.tolist() == [0, 2]
    assert not c.default_left.any()


def test_boosting_matches_xgboost_hist_on_the_same_bins() -> None:
    xgb = pytest.importorskip("xgboost")
    bins, n_regular, y = _data(800, 5)
    params = T.TreeParams(depth=3, l2=1.0, min_child_weight=1.0, learning_rate=0.3)
    booster = T.fit(
        bins, n_regular, y, np.arange(len(y)), np.arange(0), params, T.BoostPlan(trees=8)
    )
    x = np.where(bins >= np.array(n_regular), np.nan, bins).astype(np.float64)
    reference = xgb.train(
        {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 3, "eta": 0.3,
         "reg_lambda": 1.0, "min_child_weight": 1.0, "max_bin": 64, "nthread": 1,
         "base_score": float(y.mean())},
        xgb.DMatrix(x, label=y),
        8,
    )  # fmt: skip
    theirs = reference.predict(xgb.DMatrix(x), output_margin=True)
    assert np.abs(booster.margin(bins, n_regular) - theirs).max() < 1e-5


def test_early_stopping_keeps_the_trees_of_the_lowest_validation_loss() -> None:
    bins, n_regular, y = _data(400, 9)
    rows = np.arange(len(y))
    params = T.TreeParams(depth=3, learning_rate=1.0)
    booster = T.fit(
        bins,
        n_regular,
        y,
        rows[:200],
        rows[200:],
        params,
        T.BoostPlan(trees=40, early_stopping_rounds=3),
    )
    assert booster.kept == int(np.argmin(booster.validation_loss)) + 1
    assert len(booster.trees) < 40


def test_every_bin_holds_the_floor_of_rows() -> None:
    values = np.concatenate([np.zeros(50), np.arange(1, 11, dtype=float), np.full(40, 20.0)])
    edges = T.fit_edges(values, 16, min_rows=15)
    counts = np.bincount(T.bin_column(values, edges))
    assert counts.min() >= 15
