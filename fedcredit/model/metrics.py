"""Evaluation metrics for binary credit models: AUC, KS, log loss, accuracy, confusion.

Every function takes ``y`` (labels, 0 = good, 1 = default) and ``p`` (scores where a
higher value means riskier: a probability of default or a logit) as 1-D arrays of the
same length. Only numpy is used, so the lender can evaluate a model inside the
federation without scikit-learn; the tests check every figure against scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fedcredit.errors import DataError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_LOG_LOSS_EPS = 1e-15


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


def evaluate(y: npt.ArrayLike, p: npt.ArrayLike, threshold: float = 0.5) -> dict[str, Any]:
    """All figures for a model report, as plain JSON-ready values.

    ``p`` must be probabilities of default. Keys: ``auc``, ``ks``, ``ks_threshold``,
    ``accuracy``, ``log_loss``, ``confusion`` (``tp``, ``fp``, ``tn``, ``fn``),
    ``positives`` (number of defaults), ``rows`` and ``threshold``.
    """
    y_int, p_arr = _check(y, p, both_classes=True)
    ks_value, ks_threshold = ks(y_int, p_arr)
    return {
        "auc": auc(y_int, p_arr),
        "ks": ks_value,
        "ks_threshold": ks_threshold,
        "accuracy": accuracy(y_int, p_arr, threshold),
        "log_loss": log_loss(y_int, p_arr),
        "confusion": confusion(y_int, p_arr, threshold),
        "positives": int(y_int.sum()),
        "rows": int(y_int.size),
        "threshold": float(threshold),
    }
