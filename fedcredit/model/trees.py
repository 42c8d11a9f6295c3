"""Second-order gradient boosting for the logistic loss on binned columns (XGBoost's maths).

Plain numpy, for the lender's own trees, for the federated trees' split finding
(``fedcredit.protocol.trees``) and as the reference they are tested against.

- Per row ``g = p - y`` and ``h = p (1 - p)`` with ``p = sigmoid(margin)``; the first margin is
  the base score ``logit(label rate)`` of the training rows.
- Columns are binned: quantile edges per column (``fit_edges``), bins right-closed as in
  ``fedcredit.model.binning``; a missing value gets the bin ``n_regular`` of its column.
- A split candidate of a column is ``(t, default_left)``: bins ``0..t`` go left, missing values go
  left when ``default_left``. Its gain is XGBoost's ``loss_chg``:
  ``GL^2/(HL+l2) + GR^2/(HR+l2) - G^2/(H+l2)``; it is admissible when both children have a hessian
  sum of at least ``min_child_weight`` and at least ``max(min_rows, 1)`` rows, and a node splits
  on its first best admissible candidate with a gain above ``MIN_GAIN`` (columns in order, ``t``
  ascending, ``default_left`` False first).
- A categorical column of the lender's own (``groups``) splits by category groups: its candidates
  are the prefixes of its non-empty bins sorted by ``G / (H + cat_smooth)`` (LightGBM's method,
  ``fedcredit.model.tree_categories``), ``(t, default_left)`` meaning the first ``t + 1`` bins of
  that order go left; the node keeps the left set (``Tree.left_set``), and a bin outside it goes
  right. The other columns' bins (a partner's categories included) are cut in their order.
- A leaf's value is ``-learning_rate * G / (H + l2)``; trees grow level by level to ``depth``.
- With ``gh_scale_bits`` the gradients are rounded to multiples of ``2**-bits`` first: the
  federated encoding, so that a federated tree and this one see the very same sums.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fedcredit.errors import DataError
from fedcredit.model.logistic import sigmoid
from fedcredit.model.tree_categories import group_order

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: A node splits only on a gain above this (XGBoost's ``kRtEps``).
MIN_GAIN = 1e-6
#: The label rate behind the base score is kept inside this distance from 0 and 1.
RATE_CLIP = 1e-6


@dataclass(frozen=True)
class TreeParams:
    """What one tree's growth needs (a subset of ``TreeSettings``)."""

    depth: int = 3
    l2: float = 1.0
    min_child_weight: float = 1.0
    min_rows: int = 0
    learning_rate: float = 0.3
    gh_scale_bits: int | None = None
    #: Added to a category's hessian sum when category groups are ordered (LightGBM's default).
    cat_smooth: float = 10.0


# -- bins -------------------------------------------------------------------------------------
def fit_edges(values: npt.ArrayLike, bins: int, min_rows: int = 0) -> FloatArray:
    """Inner quantile edges of a column's finite values (at most ``bins`` bins), merged so that
    every regular bin holds at least ``min_rows`` of the rows fitted on."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0 or bins < 2:
        return np.zeros(0)
    edges = np.unique(np.quantile(v, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="lower"))
    edges = edges[edges < v.max()]
    if min_rows > 1:
        edges = _merge_small(v, edges, min_rows)
    return edges


def _merge_small(v: FloatArray, edges: FloatArray, min_rows: int) -> FloatArray:
    kept: list[float] = []
    sorted_v = np.sort(v)
    low = 0
    for e in edges.tolist():
        # Rows in the bin closing at e: values in (previous kept edge, e].
        upto = int(np.searchsorted(sorted_v, e, side="right"))
        if upto - low >= min_rows and len(v) - upto >= min_rows:
            kept.append(e)
            low = upto
    return np.asarray(kept, dtype=np.float64)


def bin_column(values: npt.ArrayLike, edges: FloatArray) -> IntArray:
    """Bin index of every value; missing (NaN) gets ``len(edges) + 1``, the column's
    ``n_regular``."""
    v = np.asarray(values, dtype=np.float64)
    index = np.searchsorted(edges, v, side="left")
    return np.where(np.isnan(v), len(edges) + 1, index).astype(np.int64)


def bin_matrix(raw: npt.ArrayLike, edges: Sequence[FloatArray]) -> IntArray:
    """Every column of ``raw`` binned with its edges (rows x columns)."""
    x = np.asarray(raw, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(edges):
        raise DataError(f"{x.shape} values for {len(edges)} columns of edges")
    if x.shape[1] == 0:
        return np.zeros((x.shape[0], 0), dtype=np.int64)
    return np.stack([bin_column(x[:, j], e) for j, e in enumerate(edges)], axis=1)


# -- gradients, sums, gains --------------------------------------------------------------------
def base_margin(y: npt.ArrayLike) -> float:
    """``logit`` of the label rate: the margin every row starts from."""
    rate = float(np.clip(np.mean(np.asarray(y, dtype=np.float64)), RATE_CLIP, 1 - RATE_CLIP))
    return float(np.log(rate / (1.0 - rate)))


def gradients(
    y: npt.ArrayLike, margin: npt.ArrayLike, scale_bits: int | None = None
) -> tuple[FloatArray, FloatArray]:
    """``g = p - y`` and ``h = p (1 - p)``, rounded to ``2**-scale_bits`` when given."""
    p = sigmoid(margin)
    g = p - np.asarray(y, dtype=np.float64)
    h = p * (1.0 - p)
    if scale_bits is not None:
        unit = float(2**scale_bits)
        g, h = np.round(g * unit) / unit, np.round(h * unit) / unit
    return g, h


@dataclass(frozen=True)
class Sums:
    """Per bin of one column (missing bin last): gradient, hessian and row sums."""

    g: FloatArray
    h: FloatArray
    n: IntArray


def histogram(bins: IntArray, g: FloatArray, h: FloatArray, n_bins: int) -> Sums:
    """Sums of ``g``, ``h`` and rows per bin of one column over the rows given."""
    return Sums(
        np.bincount(bins, weights=g, minlength=n_bins).astype(np.float64),
        np.bincount(bins, weights=h, minlength=n_bins).astype(np.float64),
        np.bincount(bins, minlength=n_bins).astype(np.int64),
    )


@dataclass(frozen=True)
class Candidates:
    """Split candidates of one column over one node: left sums, in the canonical order."""

    threshold: IntArray
    default_left: BoolArray
    g: FloatArray
    h: FloatArray
    n: IntArray


def candidates(sums: Sums, n_regular: int, *, dedupe: bool = True) -> Candidates:
    """Every ``(t, default_left)`` of one column, ``t`` in ``0..n_regular-1``, with its left sums.

    ``dedupe`` drops a candidate whose left side equals an earlier one's in this node (an empty
    bin ``t``, or no missing rows for the ``default_left`` twin): what a party that knows the
    node's rows can drop before offering it; it never changes which candidate wins.
    """
    cg, ch = np.cumsum(sums.g[:n_regular]), np.cumsum(sums.h[:n_regular])
    cn = np.cumsum(sums.n[:n_regular])
    mg, mh, mn = sums.g[n_regular], sums.h[n_regular], int(sums.n[n_regular])
    t = np.repeat(np.arange(n_regular, dtype=np.int64), 2)
    dl = np.tile(np.array([False, True]), n_regular)
    out = Candidates(
        t, dl, np.repeat(cg, 2) + dl * mg, np.repeat(ch, 2) + dl * mh, np.repeat(cn, 2) + dl * mn
    )
    if not dedupe:
        return out
    keep = ~((t > 0) & (sums.n[t] == 0)) & ~(dl & (mn == 0))
    return select(out, keep)


def group_candidates(sums: Sums, n_regular: int, cat_smooth: float) -> tuple[IntArray, Candidates]:
    """A categorical column's group candidates over one node: the order of its non-empty bins
    (``group_order``) and ``candidates`` of the bins taken in that order (``t``: the first
    ``t + 1`` of the order go left)."""
    order = group_order(sums.g, sums.h, sums.n, n_regular, cat_smooth)
    at = np.append(order, n_regular)
    return order, candidates(Sums(sums.g[at], sums.h[at], sums.n[at]), len(order))


def split_left(
    b: IntArray, n_regular: int, t: int, dl: bool, left_set: IntArray | None = None
) -> BoolArray:
    """Whether rows of bins ``b`` of one column go left at ``(t, dl)``, or, for a group split,
    at the bins of ``left_set`` (missing: ``dl`` either way)."""
    inside = b <= t if left_set is None else np.isin(b, left_set)
    out: BoolArray = np.where(b >= n_regular, dl, inside)
    return out


def select(c: Candidates, keep: npt.NDArray[np.bool_] | IntArray) -> Candidates:
    """The candidates at ``keep`` (a mask or indices)."""
    return Candidates(c.threshold[keep], c.default_left[keep], c.g[keep], c.h[keep], c.n[keep])


def gains(
    left_g: FloatArray,
    left_h: FloatArray,
    left_n: IntArray | None,
    total: tuple[float, float, int],
    params: TreeParams,
) -> FloatArray:
    """The gain of each candidate (``-inf`` where it is not admissible); ``left_n = None``: the
    row floors were checked by whoever offered the candidates."""
    g, h, n = total
    rg, rh = g - left_g, h - left_h
    lam = params.l2
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = left_g**2 / (left_h + lam) + rg**2 / (rh + lam) - g**2 / (h + lam)
    floor = max(params.min_rows, 1)
    ok = (left_h >= params.min_child_weight) & (rh >= params.min_child_weight)
    if left_n is not None:
        ok &= (left_n >= floor) & (n - left_n >= floor)
    return np.where(ok, gain, -np.inf)


def best_index(gain: FloatArray) -> int | None:
    """The first candidate of the largest gain, if it is above ``MIN_GAIN``."""
    if len(gain) == 0:
        return None
    k = int(np.argmax(gain))
    return k if gain[k] > MIN_GAIN else None


def leaf_value(g: float, h: float, params: TreeParams) -> float:
    """``-learning_rate * G / (H + l2)``."""
    return float(-params.learning_rate * g / (h + params.l2))


# -- one tree ------------------------------------------------------------------------------------
def node_count(depth: int) -> int:
    """Nodes of a full binary tree of ``depth`` levels of splits, heap-ordered (children of j are
    ``2j + 1`` left and ``2j + 2`` right)."""
    return int(2 ** (depth + 1) - 1)


@dataclass
class Tree:
    """One tree, heap-ordered: ``feature[j] = -1`` for a leaf or a node that does not exist.

    ``exists[j]`` is whether node j is in the tree; ``value`` holds the leaves' values;
    ``left_set[j]`` the bins that go left at a split by category groups (else ``threshold``).
    """

    feature: IntArray
    threshold: IntArray
    default_left: BoolArray
    value: FloatArray
    exists: BoolArray
    left_set: dict[int, IntArray] = field(default_factory=dict)

    @classmethod
    def empty(cls, depth: int) -> Tree:
        size = node_count(depth)
        exists = np.zeros(size, dtype=bool)
        exists[0] = True
        return cls(
            np.full(size, -1, dtype=np.int64),
            np.zeros(size, dtype=np.int64),
            np.zeros(size, dtype=bool),
            np.zeros(size),
            exists,
        )

    @property
    def depth(self) -> int:
        return int(np.log2(len(self.feature) + 1)) - 1

    def is_leaf(self, j: int) -> bool:
        return bool(self.exists[j] and self.feature[j] < 0)

    def leaf_of(self, bins: IntArray, n_regular: Sequence[int]) -> IntArray:
        """The leaf each row of ``bins`` (rows x columns) reaches."""
        node = np.zeros(len(bins), dtype=np.int64)
        for _ in range(self.depth):
            f = self.feature[node]
            inner = f >= 0
            if not inner.any():
                break
            rows = np.flatnonzero(inner)
            fs = f[rows]
            b = bins[rows, fs]
            regular = np.asarray(n_regular, dtype=np.int64)[fs]
            left = np.where(
                b >= regular, self.default_left[node[rows]], b <= self.threshold[node[rows]]
            )
            for j, members in self.left_set.items():
                at = node[rows] == j
                left[at] = np.where(b[at] >= regular[at], left[at], np.isin(b[at], members))
            node[rows] = 2 * node[rows] + np.where(left, 1, 2)
        return node

    def predict(self, bins: IntArray, n_regular: Sequence[int]) -> FloatArray:
        return self.value[self.leaf_of(bins, n_regular)]


def grow_tree(
    bins: IntArray,
    n_regular: Sequence[int],
    g: FloatArray,
    h: FloatArray,
    params: TreeParams,
    features: Sequence[int] | None = None,
    groups: Collection[int] = (),
) -> Tree:
    """One tree on the rows given (``bins``, ``g``, ``h`` aligned), using ``features`` only;
    the columns in ``groups`` split by category groups."""
    tree = Tree.empty(params.depth)
    cols = list(range(bins.shape[1])) if features is None else list(features)
    node = np.zeros(len(bins), dtype=np.int64)
    for level in range(params.depth + 1):
        for j in range(2**level - 1, 2 ** (level + 1) - 1):
            if not tree.exists[j]:
                continue
            rows = np.flatnonzero(node == j)
            total = (float(g[rows].sum()), float(h[rows].sum()), len(rows))
            split = (
                None
                if level == params.depth
                else best_split(bins, n_regular, g, h, rows, total, params, cols, groups)
            )
            if split is None:
                tree.value[j] = leaf_value(total[0], total[1], params)
                continue
            f, t, dl, members = split
            tree.feature[j], tree.threshold[j], tree.default_left[j] = f, t, dl
            if members is not None:
                tree.left_set[j] = members
            tree.exists[2 * j + 1] = tree.exists[2 * j + 2] = True
            left = split_left(bins[rows, f], n_regular[f], t, dl, members)
            node[rows] = 2 * j + np.where(left, 1, 2)
    return tree


def best_split(
    bins: IntArray,
    n_regular: Sequence[int],
    g: FloatArray,
    h: FloatArray,
    rows: IntArray,
    total: tuple[float, float, int],
    params: TreeParams,
    cols: Sequence[int],
    groups: Collection[int] = (),
) -> Split | None:
    """The best split of node ``rows`` over ``cols``: ``(feature, t, default_left, left set)``
    (the set for a column of ``groups``, else None)."""
    best = best_gain_split(bins[rows], n_regular, g[rows], h[rows], total, params, cols, groups)
    return None if best is None else best[1]


#: A chosen split: feature, threshold, default_left and the left set of a group split.
Split = tuple[int, int, bool, IntArray | None]


def best_gain_split(
    bins: IntArray,
    n_regular: Sequence[int],
    g: FloatArray,
    h: FloatArray,
    total: tuple[float, float, int],
    params: TreeParams,
    cols: Sequence[int],
    groups: Collection[int] = (),
) -> tuple[float, Split] | None:
    """``best_split`` over all rows given (bins, g, h of the node's rows), with its gain."""
    best: tuple[float, Split] | None = None
    for f in cols:
        sums = histogram(bins[:, f], g, h, n_regular[f] + 1)
        order: IntArray | None = None
        if f in groups:
            order, c = group_candidates(sums, n_regular[f], params.cat_smooth)
        else:
            c = candidates(sums, n_regular[f])
        gain = gains(c.g, c.h, c.n, total, params)
        k = best_index(gain)
        if k is not None and (best is None or gain[k] > best[0]):
            t = int(c.threshold[k])
            members = None if order is None else np.sort(order[: t + 1])
            best = (float(gain[k]), (f, t, bool(c.default_left[k]), members))
    return best


# -- boosting ------------------------------------------------------------------------------------
@dataclass
class Booster:
    """A base margin and trees; ``kept`` of them are used (early stopping)."""

    base: float
    trees: list[Tree] = field(default_factory=list)
    kept: int = 0
    validation_loss: list[float] = field(default_factory=list)

    def margin(self, bins: IntArray, n_regular: Sequence[int]) -> FloatArray:
        out = np.full(len(bins), self.base)
        for tree in self.trees[: self.kept]:
            out += tree.predict(bins, n_regular)
        return out


@dataclass(frozen=True)
class BoostPlan:
    """Boosting beyond one tree: how many, early stopping, which columns and rows per tree."""

    trees: int = 30
    early_stopping_rounds: int = 0
    features: Callable[[int], Sequence[int] | None] = lambda _: None
    sample: Callable[[int], BoolArray | None] = lambda _: None
    groups: frozenset[int] = frozenset()  # columns split by category groups


def log_loss(y: FloatArray, margin: FloatArray) -> float:
    """Mean logistic loss from margins, computed without overflow."""
    return float(np.mean(np.logaddexp(0.0, margin) - y * margin))


def fit(
    bins: IntArray,
    n_regular: Sequence[int],
    y: npt.ArrayLike,
    train: IntArray,
    validation: IntArray,
    params: TreeParams,
    plan: BoostPlan,
) -> Booster:
    """Boosted trees on the ``train`` rows; with ``validation`` rows and early stopping rounds,
    ``kept`` is the count of trees of the lowest validation log-loss.

    ``plan.sample(t)`` (a mask over the training rows) zeroes the gradients of the rows left out
    of tree ``t``; they still count as rows of their nodes, as in the federated protocol.
    """
    labels = np.asarray(y, dtype=np.float64)
    booster = Booster(base_margin(labels[train]))
    margin = np.full(len(bins), booster.base)
    best, since = np.inf, 0
    for t in range(plan.trees):
        g, h = gradients(labels[train], margin[train], params.gh_scale_bits)
        mask = plan.sample(t)
        if mask is not None:
            g, h = np.where(mask, g, 0.0), np.where(mask, h, 0.0)
        tree = grow_tree(bins[train], n_regular, g, h, params, plan.features(t), plan.groups)
        booster.trees.append(tree)
        margin += tree.predict(bins, n_regular)
        booster.kept = len(booster.trees)
        if len(validation) and plan.early_stopping_rounds:
            loss = log_loss(labels[validation], margin[validation])
            booster.validation_loss.append(loss)
            if loss < best:
                best, since = loss, 0
            else:
                since += 1
                if since >= plan.early_stopping_rounds:
                    break
    if booster.validation_loss:
        booster.kept = int(np.argmin(booster.validation_loss)) + 1
    return booster


__all__ = [
    "MIN_GAIN",
    "BoostPlan",
    "Booster",
    "Candidates",
    "Split",
    "Sums",
    "Tree",
    "TreeParams",
    "base_margin",
    "best_gain_split",
    "best_index",
    "best_split",
    "bin_column",
    "bin_matrix",
    "candidates",
    "fit",
    "fit_edges",
    "gains",
    "gradients",
    "group_candidates",
    "grow_tree",
    "histogram",
    "leaf_value",
    "log_loss",
    "node_count",
    "select",
    "split_left",
]
