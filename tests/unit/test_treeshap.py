"""Path-dependent TreeSHAP against the exact Shapley values of the cover-weighted conditional
expectation, on small random trees (features repeated along paths, uneven covers, pruned nodes)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fedcredit.model.treeshap import (
    even_cover,
    expected_value,
    node_cover,
    tree_shap,
)


def random_tree(rng: np.random.Generator, depth: int, n_features: int) -> tuple[np.ndarray, ...]:
    size = 2 ** (depth + 1) - 1
    feature = np.full(size, -1, dtype=np.int64)
    exists = np.zeros(size, dtype=bool)
    exists[0] = True
    for j in range(2**depth - 1):
        if exists[j] and (j == 0 or rng.random() < 0.8):
            feature[j] = int(rng.integers(n_features))
            exists[2 * j + 1] = exists[2 * j + 2] = True
    value = np.where(exists & (feature < 0), rng.normal(size=size), 0.0)
    node = rng.choice(np.flatnonzero(exists & (feature < 0)), size=200)
    return feature, value, node_cover(node, exists), exists


def conditional(feature, value, cover, row_left, subset, j=0) -> float:  # type: ignore[no-untyped-def]
    """E[f | x_S] over the tree's cover, by its definition."""
    if feature[j] < 0:
        return float(value[j])
    a, b = 2 * j + 1, 2 * j + 2
    if feature[j] in subset:
        return conditional(feature, value, cover, row_left, subset, a if row_left[j] else b)
    share = cover[a] / cover[j] if cover[j] > 0 else 0.5
    return share * conditional(feature, value, cover, row_left, subset, a) + (
        1 - share
    ) * conditional(feature, value, cover, row_left, subset, b)


def brute_force(feature, value, cover, row_left, n_features) -> np.ndarray:  # type: ignore[no-untyped-def]
    phi = np.zeros(n_features)
    others = list(range(n_features))
    for i in range(n_features):
        rest = [k for k in others if k != i]
        for size in range(len(rest) + 1):
            weight = math.factorial(size) * math.factorial(n_features - size - 1)
            weight /= math.factorial(n_features)
            for s in itertools.combinations(rest, size):
                with_i = conditional(feature, value, cover, row_left, {*s, i})
                without = conditional(feature, value, cover, row_left, set(s))
                phi[i] += weight * (with_i - without)
    return phi


@pytest.mark.parametrize("seed", range(12))
def test_tree_shap_equals_the_exact_shapley_values(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_features = 4
    feature, value, cover, _ = random_tree(rng, int(rng.integers(1, 5)), n_features)
    left = rng.random((7, len(feature))) < 0.5

    phi, expected = tree_shap(feature, value, cover, left, n_features)

    for r in range(len(left)):
        exact = brute_force(feature, value, cover, left[r], n_features)
        np.testing.assert_allclose(phi[r], exact, rtol=0, atol=1e-9)
        margin = conditional(feature, value, cover, left[r], set(range(n_features)))
        assert expected + phi[r].sum() == pytest.approx(margin, abs=1e-9)
    assert expected == pytest.approx(conditional(feature, value, cover, left[0], set()), abs=1e-12)


def test_a_feature_the_tree_never_splits_on_gets_nothing() -> None:
    rng = np.random.default_rng(5)
    feature, value, cover, _ = random_tree(rng, 3, 2)
    phi, _ = tree_shap(feature, value, cover, rng.random((5, len(feature))) < 0.5, 4)
    assert np.all(phi[:, 2:] == 0.0)
    assert np.any(phi[:, :2] != 0.0)


def test_cover_counts_rows_up_the_tree_and_the_expected_value_weights_by_it() -> None:
    exists = np.array([True, True, True, False, False, True, True])
    feature = np.array([0, -1, 1, -1, -1, -1, -1])
    value = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 2.0, 4.0])
    cover = node_cover(np.array([1, 1, 1, 5, 6, 6]), exists)
    assert cover.tolist() == [6.0, 3.0, 3.0, 0.0, 0.0, 1.0, 2.0]
    assert expected_value(feature, value, cover) == pytest.approx(0.5 * 1 + 0.5 * (2 + 8) / 3)
    assert even_cover(exists).tolist() == [1.0, 0.5, 0.5, 0.0, 0.0, 0.25, 0.25]
