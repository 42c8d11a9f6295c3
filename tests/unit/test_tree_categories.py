"""Categorical columns in trees: category maps, and splits by category groups against brute force."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from fedcredit.model import trees as T
from fedcredit.model.tree_categories import bin_categories, fit_categories, group_order
from fedcredit.protocol.categories import category_code
from fedcredit.protocol.trees.store import tree_from_dict, tree_to_dict


def test_rare_categories_merge_into_other_until_it_reaches_the_floor() -> None:
    a, b, c, d = (category_code(s) for s in "abcd")
    values = np.array([a] * 20 + [b] * 12 + [c] * 3 + [d] * 1 + [0.0] * 4 + [np.nan])
    assert fit_categories(values).tolist() == [a, b, c, d]  # most frequent first
    # c and d are rare; "other" would hold 4 rows < 10, so b (the least frequent kept) joins it.
    assert fit_categories(values, min_rows=10).tolist() == [a]
    assert fit_categories(values, min_rows=3).tolist() == [a, b]  # d alone: 1 < 3, c joins
    assert fit_categories(values[:35], min_rows=3).tolist() == [a, b, c]  # nothing to merge


def test_an_unseen_category_goes_to_other_and_an_empty_cell_is_missing() -> None:
    kept = np.array([category_code("x"), category_code("y")])
    got = bin_categories(
        np.array([category_code("y"), category_code("z"), 0.0, np.nan, category_code("x")]), kept
    )
    assert got.tolist() == [1, 2, 3, 3, 0]


def _data(seed: int) -> tuple[np.ndarray, list[int], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 160
    cat = rng.integers(0, 6, size=n)  # bins 0..5 regular, 6 = "other" (empty), no missing
    num = rng.normal(size=n)
    num[rng.random(n) < 0.1] = np.nan
    effect = np.array([0.9, -1.2, 0.4, 1.5, -0.3, -0.8])[cat]
    margin = rng.normal(scale=0.5, size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(effect + np.nan_to_num(num))))).astype(np.float64)
    g, h = T.gradients(y, margin)
    edges = T.fit_edges(num, 5)
    bins = np.stack([cat, T.bin_column(num, edges)], axis=1).astype(np.int64)
    return bins, [7, len(edges) + 1], g, h


def _brute_predictions(
    bins: np.ndarray, n_regular: list[int], g: np.ndarray, h: np.ndarray, p: T.TreeParams
) -> np.ndarray:
    """Every row's leaf value from a search of every subset of the categorical column's bins
    (and every threshold of the numeric one), gains straight from the definition."""
    out = np.zeros(len(g))

    def gain(rows: np.ndarray, left: np.ndarray) -> float:
        def score(r: np.ndarray) -> float:
            return float(g[r].sum() ** 2 / (h[r].sum() + p.l2))

        lr, rr = rows[left], rows[~left]
        if min(len(lr), len(rr)) < 1:
            return -np.inf
        return score(lr) + score(rr) - score(rows)

    def grow(rows: np.ndarray, level: int) -> None:
        best: tuple[float, np.ndarray] | None = None
        if level < p.depth:
            splits: list[np.ndarray] = []
            b = bins[rows, 0]
            for size in range(1, n_regular[0] + 1):
                for subset in combinations(range(n_regular[0]), size):
                    splits.append(np.isin(b, subset))
            b = bins[rows, 1]
            for t in range(n_regular[1]):
                for dl in (False, True):
                    splits.append(np.where(b >= n_regular[1], dl, b <= t))
            for left in splits:
                value = gain(rows, left)
                if value > T.MIN_GAIN and (best is None or value > best[0] + 1e-12):
                    best = (value, left)
        if best is None:
            out[rows] = T.leaf_value(float(g[rows].sum()), float(h[rows].sum()), p)
            return
        grow(rows[best[1]], level + 1)
        grow(rows[~best[1]], level + 1)

    grow(np.arange(len(g)), 0)
    return out


def test_group_splits_find_the_best_category_groups_of_a_brute_force_search() -> None:
    params = T.TreeParams(depth=2, l2=0.0, min_child_weight=0.0, learning_rate=1.0, cat_smooth=0.0)
    grouped = 0
    for seed in range(4):
        bins, n_regular, g, h = _data(seed)
        tree = T.grow_tree(bins, n_regular, g, h, params, groups={0})
        expected = _brute_predictions(bins, n_regular, g, h, params)
        assert np.allclose(tree.predict(bins, n_regular), expected, rtol=0, atol=1e-9)
        grouped += len(tree.left_set)
        for j, members in tree.left_set.items():
            assert tree.feature[j] == 0 and len(members) >= 1
    assert grouped >= 2  # the category groups were used, not only the numeric column


def test_group_splits_beat_cuts_of_the_code_order_on_a_non_monotone_category() -> None:
    bins, n_regular, g, h = _data(7)
    params = T.TreeParams(depth=1, l2=1.0, min_child_weight=0.0, learning_rate=1.0)
    ordered = T.best_gain_split(bins, n_regular, g, h, (g.sum(), h.sum(), len(g)), params, [0])
    groups = T.best_gain_split(
        bins, n_regular, g, h, (g.sum(), h.sum(), len(g)), params, [0], groups={0}
    )
    assert ordered is not None and groups is not None
    assert groups[0] > ordered[0]
    members = groups[1][3]
    assert members is not None
    order = group_order(*_sums(bins[:, 0], g, h), 7, params.cat_smooth)
    assert set(members.tolist()) == set(order[: len(members)].tolist())


def _sums(b: np.ndarray, g: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, ...]:
    s = T.histogram(b, g, h, 8)
    return s.g, s.h, s.n


def test_a_left_set_survives_storing_and_scores_by_membership() -> None:
    bins, n_regular, g, h = _data(1)
    tree = T.grow_tree(bins, n_regular, g, h, T.TreeParams(depth=2), groups={0})
    assert tree.left_set
    back = tree_from_dict(tree_to_dict(tree))
    assert {j: m.tolist() for j, m in back.left_set.items()} == {
        j: m.tolist() for j, m in tree.left_set.items()
    }
    assert np.array_equal(back.leaf_of(bins, n_regular), tree.leaf_of(bins, n_regular))
    j, members = next(iter(tree.left_set.items()))
    rows = np.flatnonzero(tree.leaf_of(bins, n_regular) >= 0)
    left = T.split_left(bins[rows, 0], n_regular[0], 0, bool(tree.default_left[j]), members)
    assert np.array_equal(left, np.isin(bins[rows, 0], members))
