"""Categorical columns for trees: one bin per category, and LightGBM's category-group order.

A categorical column holds category codes (``fedcredit.protocol.categories``: an exact float per
category, 0 for an empty cell). For trees it is binned by a category map instead of edges:

- ``fit_categories``: the categories of the column's training rows, most frequent first (ties
  by code), one regular bin each; a category with fewer than ``min_rows`` training rows joins
  the "other" bin, the last regular bin (index ``len(categories)``). While "other" holds some
  rows but fewer than ``min_rows``, the least frequent kept category joins it too, so that no
  bin holds fewer rows than the privacy floor (as numeric bins). The column's ``n_regular`` is
  ``len(categories) + 1``.
- ``bin_categories``: a code's bin; a category absent from the map (rare in training, or unseen
  at scoring) goes to "other"; a missing cell (NaN or code 0) to the missing bin
  ``n_regular``, which has a learned default direction as for numeric columns.
- ``group_order``: for a split by category groups at one node, the node's non-empty regular bins
  sorted by ``G / (H + cat_smooth)`` (LightGBM's method); the candidates are the prefixes of
  that order (``fedcredit.model.trees.group_candidates``). A bin empty at the node is in no
  prefix: its rows (at scoring) go right.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: The category code of an empty cell (``fedcredit.protocol.categories.MISSING_CODE``).
MISSING_CODE = 0.0


def is_missing(values: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Missing category cells: NaN or the empty cell's code."""
    v = np.asarray(values, dtype=np.float64)
    out: npt.NDArray[np.bool_] = np.isnan(v) | (v == MISSING_CODE)
    return out


def fit_categories(values: npt.ArrayLike, min_rows: int = 0, other_rows: int = 0) -> FloatArray:
    """The kept categories of a column's training values, in bin order (most frequent first).

    ``other_rows``: rows the caller puts in "other" besides the rare categories (missing cells
    folded in because they are fewer than the floor)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~is_missing(v) & np.isfinite(v)]
    cats, counts = np.unique(v, return_counts=True)
    order = np.lexsort((cats, -counts))
    cats, counts = cats[order], counts[order]
    floor = max(int(min_rows), 1)
    keep = counts >= floor
    kept, kept_counts = cats[keep], counts[keep]
    other = int(counts[~keep].sum()) + int(other_rows)
    while 0 < other < floor and len(kept):
        other += int(kept_counts[-1])
        kept, kept_counts = kept[:-1], kept_counts[:-1]
    return np.asarray(kept, dtype=np.float64)


def bin_categories(values: npt.ArrayLike, categories: FloatArray) -> IntArray:
    """The bin of every code: its category's, "other" (``len(categories)``) for a category not
    kept, the missing bin (``len(categories) + 1``) for a missing cell."""
    v = np.asarray(values, dtype=np.float64)
    n = len(categories)
    index = np.full(v.shape, n, dtype=np.int64)
    if n:
        order = np.argsort(categories, kind="stable")
        ranked = categories[order]
        pos = np.clip(np.searchsorted(ranked, v), 0, n - 1)
        found = ranked[pos] == v
        index = np.where(found, order[pos], n)
    return np.where(is_missing(v), n + 1, index).astype(np.int64)


def group_order(
    g: FloatArray, h: FloatArray, n: IntArray, n_regular: int, cat_smooth: float
) -> IntArray:
    """The node's non-empty regular bins by ``g / (h + cat_smooth)`` ascending (ties by bin)."""
    nonempty = np.flatnonzero(np.asarray(n[:n_regular]) > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = g[nonempty] / (h[nonempty] + cat_smooth)
    out: IntArray = nonempty[np.argsort(ratio, kind="stable")].astype(np.int64)
    return out


__all__ = ["MISSING_CODE", "bin_categories", "fit_categories", "group_order", "is_missing"]
