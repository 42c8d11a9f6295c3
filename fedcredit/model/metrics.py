"""Evaluation metrics for binary credit models: AUC, KS, log loss, accuracy, confusion.

Every function takes ``y`` (labels, 0 = good, 1 = default) and ``p`` (scores where a
higher value means riskier: a probability of default or a logit) as 1-D arrays of the
same length. Only numpy is used, so the lender can evaluate a model inside the
federation without scikit-learn; the tests check every figure against scikit-learn.

AUC and KS come with 95% confidence intervals (DeLong's for AUC, a stratified bootstrap
for KS): a test set of a few thousand rows with a hundred-odd defaults cannot tell an
AUC of 0.79 from 0.83, and a report should say so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedcredit.errors import DataError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_LOG_LOSS_EPS = 1e-15
# The 0.975 quantile of the standard normal, for two-sided 95% intervals (scipy is not a
# runtime dependency).
_Z_95 = 1.959964
KS_RESAMPLES = 1000
KS_SEED = 0
# Cells (resamples x rows) the bootstrap holds at once: about 8 MB per array, so memory
# stays flat however many rows or resamples are asked for.
_BOOTSTRAP_BLOCK_CELLS = 1 << 20


def _check(
    y: npt.ArrayLike, p: npt.ArrayLike, *, both_classes: bool
) -> tuple[IntArray, FloatArray]:
    """Validate labels and scores and return them as int64 and float64 arrays."""
    y_arr = np.asarray(y)
    p_arr = np.asarray(p, dtype=np.float64)
    if y_arr.ndim != 1 or p_arr.ndim != 1:
        raise DataError(
            f"labels and scores must be 1-D, got shapes {y_arr.shape} and {p_arr.shape}"
        )
    if y_arr.shape != p_arr.shape:
        raise DataError(f"labels and scores differ in length: {y_arr.shape[0]} != {p_arr.shape[0]}")
    if y_arr.size == 0:
        raise DataError("no rows to evaluate")
    if not np.all(np.isin(y_arr, (0, 1))):
        raise DataError("labels must be 0 or 1")
    if not np.all(np.isfinite(p_arr)):
        raise DataError("scores contain NaN or infinity")
    y_int = y_arr.astype(np.int64)
    if both_classes and (y_int.min() == y_int.max()):
        raise DataError("labels hold a single class; AUC and KS need both")
    return y_int, p_arr


def auc(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Area under the ROC curve by the Mann-Whitney rank statistic; tied scores count one half."""
    y_int, p_arr = _check(y, p, both_classes=True)
    ranks = _average_ranks(p_arr)
    n_pos = int(y_int.sum())
    n_neg = y_int.size - n_pos
    rank_sum = float(ranks[y_int == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks of ``values`` where tied values share the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start of each run of equal values, and the run each sorted position belongs to.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], sorted_values.size]
    run_rank = (starts + 1 + ends) / 2.0
    run_of = np.repeat(np.arange(starts.size), ends - starts)
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = run_rank[run_of]
    return ranks


def roc_curve(y: npt.ArrayLike, p: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """ROC curve at every distinct score: ``(fpr, tpr, thresholds)``.

    Point ``i`` counts rows with ``p >= thresholds[i]`` as predicted defaults. The first
    point is ``(0, 0)`` with threshold ``+inf``; thresholds decrease. This equals
    scikit-learn's ``roc_curve(..., drop_intermediate=False)``.
    """
    y_int, p_arr = _check(y, p, both_classes=True)
    order = np.argsort(-p_arr, kind="mergesort")
    p_sorted = p_arr[order]
    y_sorted = y_int[order]
    last_of_run = np.r_[np.flatnonzero(p_sorted[1:] != p_sorted[:-1]), p_sorted.size - 1]
    tps = np.cumsum(y_sorted)[last_of_run]
    fps = (last_of_run + 1) - tps
    n_pos = tps[-1]
    n_neg = fps[-1]
    tpr = np.r_[0.0, tps / n_pos].astype(np.float64)
    fpr = np.r_[0.0, fps / n_neg].astype(np.float64)
    thresholds = np.r_[np.inf, p_sorted[last_of_run]].astype(np.float64)
    return fpr, tpr, thresholds


def ks_curve(y: npt.ArrayLike, p: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Kolmogorov-Smirnov curve: ``(thresholds, tpr, fpr)``, thresholds decreasing.

    ``tpr`` is the cumulative share of defaults and ``fpr`` of goods with ``p >= threshold``;
    the KS statistic is the largest gap ``tpr - fpr``.
    """
    fpr, tpr, thresholds = roc_curve(y, p)
    return thresholds, tpr, fpr


def ks(y: npt.ArrayLike, p: npt.ArrayLike) -> tuple[float, float]:
    """KS statistic ``max(tpr - fpr)`` and the score threshold where it is reached.

    Rows with ``p >= threshold`` are the predicted defaults at the KS point. When the
    maximum is reached at several thresholds the highest one is returned.
    """
    thresholds, tpr, fpr = ks_curve(y, p)
    gap = tpr - fpr
    best = int(np.argmax(gap))
    return float(gap[best]), float(thresholds[best])


def log_loss(y: npt.ArrayLike, p: npt.ArrayLike, eps: float = _LOG_LOSS_EPS) -> float:
    """Mean binary cross-entropy; probabilities are clipped to ``[eps, 1 - eps]``."""
    y_int, p_arr = _check(y, p, both_classes=False)
    if np.any((p_arr < 0.0) | (p_arr > 1.0)):
        raise DataError("log loss needs probabilities in [0, 1]")
    q = np.clip(p_arr, eps, 1.0 - eps)
    return float(-np.mean(y_int * np.log(q) + (1 - y_int) * np.log1p(-q)))


def confusion(y: npt.ArrayLike, p: npt.ArrayLike, threshold: float = 0.5) -> dict[str, int]:
    """Confusion counts ``{tp, fp, tn, fn}`` predicting default when ``p >= threshold``."""
    y_int, p_arr = _check(y, p, both_classes=False)
    predicted = p_arr >= threshold
    actual = y_int == 1
    return {
        "tp": int(np.sum(predicted & actual)),
        "fp": int(np.sum(predicted & ~actual)),
        "tn": int(np.sum(~predicted & ~actual)),
        "fn": int(np.sum(~predicted & actual)),
    }


def accuracy(y: npt.ArrayLike, p: npt.ArrayLike, threshold: float = 0.5) -> float:
    """Share of rows where ``p >= threshold`` agrees with the label."""
    counts = confusion(y, p, threshold)
    return (counts["tp"] + counts["tn"]) / sum(counts.values())


@dataclass(frozen=True)
class AUCInterval:
    """An AUC with DeLong's standard error and 95% interval ``[lo, hi]`` (clipped to [0, 1]).

    ``rows`` and ``events`` (defaults) are the counts the estimate rests on.
    """

    auc: float
    se: float
    lo: float
    hi: float
    rows: int
    events: int


@dataclass(frozen=True)
class KSInterval:
    """A KS statistic with the 2.5th and 97.5th percentiles of its stratified bootstrap."""

    ks: float
    lo: float
    hi: float
    resamples: int
    seed: int


def auc_delong(y: npt.ArrayLike, p: npt.ArrayLike) -> AUCInterval:
    """AUC with DeLong's variance, by the O(n log n) midrank algorithm of Sun & Xu (2014).

    Needs at least two defaults and two goods (the variance of each class's structural
    components is a sample variance). The interval is the normal one, ``auc +- 1.96 se``.
    """
    y_int, p_arr = _check(y, p, both_classes=True)
    positives = p_arr[y_int == 1]
    negatives = p_arr[y_int == 0]
    m, n = positives.size, negatives.size
    if m < 2 or n < 2:
        raise DataError(f"DeLong's variance needs two defaults and two goods, got {m} and {n}")
    # A positive's midrank among all rows minus its midrank among the positives counts the
    # negatives below it (ties one half): its structural component V10 is that share of
    # the negatives. Likewise V01 of a negative is the share of positives above it.
    all_ranks = _average_ranks(np.concatenate([positives, negatives]))
    v10 = (all_ranks[:m] - _average_ranks(positives)) / n
    v01 = 1.0 - (all_ranks[m:] - _average_ranks(negatives)) / m
    auc_value = float(v10.mean())
    variance = float(v10.var(ddof=1)) / m + float(v01.var(ddof=1)) / n
    se = math.sqrt(variance)
    return AUCInterval(
        auc=auc_value,
        se=se,
        lo=max(0.0, auc_value - _Z_95 * se),
        hi=min(1.0, auc_value + _Z_95 * se),
        rows=m + n,
        events=m,
    )


def ks_bootstrap(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    resamples: int = KS_RESAMPLES,
    seed: int = KS_SEED,
) -> KSInterval:
    """KS statistic with a 95% percentile interval from a stratified bootstrap.

    Each resample draws the defaults and the goods separately with replacement, so every
    resample keeps the test set's default rate. The fixed ``seed`` makes the interval
    reproducible run to run. The maximum of a noisy curve is biased upwards, so the
    interval tends to sit a little above the point estimate; it is a guide to the
    uncertainty, not an exact coverage guarantee.
    """
    y_int, p_arr = _check(y, p, both_classes=True)
    if resamples < 1:
        raise DataError(f"the bootstrap needs at least one resample, got {resamples}")
    rng = np.random.default_rng(seed)
    m = int(y_int.sum())
    n = y_int.size - m
    block = max(1, _BOOTSTRAP_BLOCK_CELLS // y_int.size)
    values = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, block):
        count = min(block, resamples - start)
        pos_draws = rng.integers(0, m, size=(count, m))
        neg_draws = rng.integers(0, n, size=(count, n))
        values[start : start + count] = _resampled_ks(y_int, p_arr, pos_draws, neg_draws)
    lo, hi = np.quantile(values, [0.025, 0.975])
    return KSInterval(
        ks=ks(y_int, p_arr)[0], lo=float(lo), hi=float(hi), resamples=resamples, seed=seed
    )


def _resampled_ks(
    y: IntArray, p: FloatArray, pos_draws: IntArray, neg_draws: IntArray
) -> FloatArray:
    """KS of each resample: row ``b`` of ``pos_draws`` (``neg_draws``) holds the indices,
    among the defaults (goods) in row order, that resample ``b`` drew.

    Every resample is a weighting of the same sorted scores (a default drawn ``k`` times
    weighs ``k / m``, a good ``-k / n``), so one cumulative sum per resample gives its
    whole ``tpr - fpr`` curve, read where each run of tied scores ends.
    """
    count, m = pos_draws.shape
    n = neg_draws.shape[1]
    order = np.argsort(-p, kind="mergesort")
    position = np.empty(p.size, dtype=np.int64)
    position[order] = np.arange(p.size)
    p_sorted = p[order]
    run_ends = np.r_[np.flatnonzero(p_sorted[1:] != p_sorted[:-1]), p.size - 1]
    weight = np.where(y[order] == 1, 1.0 / m, -1.0 / n)
    # Cell b * rows + i counts how often resample b drew the row at sorted position i.
    cells = np.empty((count, m + n), dtype=np.int64)
    cells[:, :m] = position[y == 1][pos_draws]
    cells[:, m:] = position[y == 0][neg_draws]
    cells += (np.arange(count, dtype=np.int64) * p.size)[:, None]
    drawn = np.bincount(cells.ravel(), minlength=count * p.size).reshape(count, p.size)
    gap = drawn * weight
    np.cumsum(gap, axis=1, out=gap)
    # Only the ends of runs of tied scores are points of the curve (reading inside a run
    # would split ties); without ties every position is one, and the copy is skipped.
    points = gap if run_ends.size == p.size else gap[:, run_ends]
    # The curve starts at (0, 0) before the first threshold, so KS is never below 0.
    best: FloatArray = np.maximum(points.max(axis=1), 0.0)
    return best


def format_interval(interval: Sequence[float] | None) -> str:
    """`` (95% CI 0.801-0.859)`` for ``[lo, hi]``, or ``""`` when there is none."""
    if interval is None:
        return ""
    lo, hi = interval
    return f" (95% CI {lo:.3f}-{hi:.3f})"


def summarize(report: Mapping[str, Any]) -> str:
    """One line for people: ``AUC 0.830 (95% CI 0.801-0.859, 2,250 rows, 153 defaults); KS ...``.

    ``report`` is ``evaluate``'s output; an interval it lacks is left out of the text.
    """
    events = report["positives"]
    counts = f"{report['rows']:,} rows, {events:,} default{'' if events == 1 else 's'}"
    auc_ci = report.get("auc_ci95")
    auc_text = (
        f"AUC {report['auc']:.3f} (95% CI {auc_ci[0]:.3f}-{auc_ci[1]:.3f}, {counts})"
        if auc_ci is not None
        else f"AUC {report['auc']:.3f} ({counts})"
    )
    return f"{auc_text}; KS {report['ks']:.3f}{format_interval(report.get('ks_ci95'))}"


def evaluate(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    threshold: float = 0.5,
    *,
    resamples: int = KS_RESAMPLES,
    seed: int = KS_SEED,
) -> dict[str, Any]:
    """All figures for a model report, as plain JSON-ready values.

    ``p`` must be probabilities of default. Keys: ``auc``, ``ks``, ``ks_threshold``,
    ``accuracy``, ``log_loss``, ``confusion`` (``tp``, ``fp``, ``tn``, ``fn``),
    ``positives`` (number of defaults), ``rows`` and ``threshold``; and the uncertainty:
    ``auc_se`` and ``auc_ci95`` (``[lo, hi]``, DeLong; both ``None`` with fewer than two
    defaults or two goods), ``ks_ci95`` (``[lo, hi]``, stratified bootstrap) and
    ``ks_resamples``. ``rows`` and ``positives`` are the counts both intervals rest on.
    """
    y_int, p_arr = _check(y, p, both_classes=True)
    ks_value, ks_threshold = ks(y_int, p_arr)
    n_pos = int(y_int.sum())
    delong = auc_delong(y_int, p_arr) if min(n_pos, y_int.size - n_pos) >= 2 else None
    ks_interval = ks_bootstrap(y_int, p_arr, resamples=resamples, seed=seed)
    return {
        "auc": auc(y_int, p_arr),
        "ks": ks_value,
        "ks_threshold": ks_threshold,
        "accuracy": accuracy(y_int, p_arr, threshold),
        "log_loss": log_loss(y_int, p_arr),
        "confusion": confusion(y_int, p_arr, threshold),
        "positives": n_pos,
        "rows": int(y_int.size),
        "threshold": float(threshold),
        "auc_se": None if delong is None else delong.se,
        "auc_ci95": None if delong is None else [delong.lo, delong.hi],
        "ks_ci95": [ks_interval.lo, ks_interval.hi],
        "ks_resamples": ks_interval.resamples,
    }
