"""Path-dependent TreeSHAP (Lundberg, Erion and Lee 2018, algorithm 2), vectorized over rows.

A tree is given in heap order (node ``j``'s children are ``2j+1`` and ``2j+2``): ``feature[j]``
the feature node ``j`` splits on (``-1``: a leaf or no node), ``value[j]`` a leaf's value,
``cover[j]`` the training rows that reached node ``j``, and ``left[r, j]`` whether row ``r``
goes left at node ``j``. That last one is all the algorithm needs of a row: which child is hot
(the row's) and which is cold, so a feature may be anything that sends a row one way at a node,
a lender's column or a partner's whole set of splits alike.

The attribution ``phi[r, i]`` is the Shapley value of feature ``i`` for the value function
``v(S) = E[f(x) | x_S]`` taken over the tree's own cover: at a split on a feature of ``S`` the
row's child, at any other split both children weighted by their share of the node's cover. So
``expected + phi[r].sum() == f(x_r)`` (local accuracy), with ``expected`` the cover-weighted mean
of the leaves. A node without cover (none of the rows reached it) splits its weight evenly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class _Step:
    """One element of the path: its feature, zero and one fractions and weight (per row)."""

    feature: int
    zero: float
    one: FloatArray
    weight: FloatArray


def _extend(path: list[_Step], zero: float, one: FloatArray, feature: int) -> list[_Step]:
    path = [_Step(s.feature, s.zero, s.one, s.weight.copy()) for s in path]
    depth = len(path)
    first = np.ones_like(one) if depth == 0 else np.zeros_like(one)
    path.append(_Step(feature, zero, one, first))
    for i in range(depth - 1, -1, -1):
        path[i + 1].weight = path[i + 1].weight + one * path[i].weight * (i + 1) / (depth + 1)
        path[i].weight = zero * path[i].weight * (depth - i) / (depth + 1)
    return path


def _unwound_sum(path: list[_Step], i: int) -> FloatArray:
    """The sum of the weights of ``path`` with element ``i`` taken out (per row)."""
    depth = len(path) - 1
    one, zero = path[i].one, path[i].zero
    hot = one != 0
    safe_one = np.where(hot, one, 1.0)
    total = np.zeros_like(one)
    after = path[depth].weight.copy()
    for j in range(depth - 1, -1, -1):
        taken = after * (depth + 1) / ((j + 1) * safe_one)
        cold = (
            path[j].weight * (depth + 1) / (zero * (depth - j)) if zero != 0 else np.zeros_like(one)
        )
        total = total + np.where(hot, taken, cold)
        after = np.where(hot, path[j].weight - taken * zero * (depth - j) / (depth + 1), after)
    return total


def _unwind(path: list[_Step], i: int) -> list[_Step]:
    """``path`` with element ``i`` taken out (a feature met again further down)."""
    depth = len(path) - 1
    path = [_Step(s.feature, s.zero, s.one, s.weight.copy()) for s in path]
    one, zero = path[i].one, path[i].zero
    hot = one != 0
    safe_one = np.where(hot, one, 1.0)
    after = path[depth].weight.copy()
    for j in range(depth - 1, -1, -1):
        kept = path[j].weight
        taken = after * (depth + 1) / ((j + 1) * safe_one)
        cold = kept * (depth + 1) / (zero * (depth - j)) if zero != 0 else np.zeros_like(one)
        path[j].weight = np.where(hot, taken, cold)
        after = np.where(hot, kept - taken * zero * (depth - j) / (depth + 1), after)
    for j in range(i, depth):
        path[j].feature, path[j].zero, path[j].one = (
            path[j + 1].feature,
            path[j + 1].zero,
            path[j + 1].one,
        )
    return path[:depth]


def tree_shap(
    feature: IntArray,
    value: FloatArray,
    cover: FloatArray,
    left: BoolArray,
    n_features: int,
) -> tuple[FloatArray, float]:
    """``(phi, expected)`` of every row of ``left`` for one tree (module docstring)."""
    rows = left.shape[0]
    phi = np.zeros((rows, n_features))
    size = len(feature)

    def share(child: int, j: int) -> float:
        total = float(cover[j])
        return float(cover[child]) / total if total > 0 else 0.5

    def walk(j: int, path: list[_Step], zero: float, one: FloatArray, feature_in: int) -> None:
        path = _extend(path, zero, one, feature_in)
        d = int(feature[j])
        if d < 0 or 2 * j + 2 >= size:
            for i in range(1, len(path)):
                w = _unwound_sum(path, i)
                phi[:, path[i].feature] += w * (path[i].one - path[i].zero) * value[j]
            return
        incoming_zero, incoming_one = 1.0, np.ones(rows)
        k = next((i for i in range(1, len(path)) if path[i].feature == d), None)
        if k is not None:
            incoming_zero, incoming_one = path[k].zero, path[k].one
            path = _unwind(path, k)
        goes = left[:, j].astype(np.float64)
        walk(2 * j + 1, path, incoming_zero * share(2 * j + 1, j), incoming_one * goes, d)
        walk(2 * j + 2, path, incoming_zero * share(2 * j + 2, j), incoming_one * (1 - goes), d)

    walk(0, [], 1.0, np.ones(rows), -1)
    return phi, expected_value(feature, value, cover)


def expected_value(feature: IntArray, value: FloatArray, cover: FloatArray) -> float:
    """The cover-weighted mean of the tree's leaves (``E[f]`` over the training rows)."""
    size = len(feature)

    def mean(j: int) -> float:
        if feature[j] < 0 or 2 * j + 2 >= size:
            return float(value[j])
        total = float(cover[j])
        a = float(cover[2 * j + 1]) / total if total > 0 else 0.5
        b = float(cover[2 * j + 2]) / total if total > 0 else 0.5
        return a * mean(2 * j + 1) + b * mean(2 * j + 2)

    return mean(0)


def even_cover(exists: BoolArray) -> FloatArray:
    """A stand-in cover for a tree stored without one: every split sends half each way."""
    out = np.zeros(len(exists))
    for j in range(len(exists)):
        if exists[j]:
            out[j] = 0.5 ** int(np.floor(np.log2(j + 1)))
    return out


def node_cover(node: IntArray, exists: BoolArray) -> FloatArray:
    """Rows per node from each row's leaf: a leaf its rows, a split the sum of its children."""
    size = len(exists)
    out = np.bincount(np.asarray(node, dtype=np.int64), minlength=size)[:size].astype(np.float64)
    for j in range(size - 1, -1, -1):
        if 2 * j + 2 < size and exists[2 * j + 1]:
            out[j] = out[2 * j + 1] + out[2 * j + 2]
    return out


__all__ = ["even_cover", "expected_value", "node_cover", "tree_shap"]
