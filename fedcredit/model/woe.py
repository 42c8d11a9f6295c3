"""Weight of evidence, information value, feature selection and bin coding.

WOE convention (FATE's): events are label 1 (defaults), and for bin ``k``::

    woe_k = ln( (e_k + s) / sum_j (e_j + s)  /  (g_k + s) / sum_j (g_j + s) )
    iv    = sum_k ( (e_k + s) / sum_j (e_j + s) - (g_k + s) / sum_j (g_j + s) ) * woe_k

where ``e_k`` are the events and ``g_k = rows_k - e_k`` the non-events of bin ``k`` and
``s`` the smoothing added to every non-empty bin (sums run over non-empty bins). A
positive WOE marks a bin riskier than average. An empty bin gets WOE 0 (neutral) and adds
nothing to the IV, so a missing bin with no rows at fit time scores as average.
Everything here needs per-bin counts only, which the lender can learn federatedly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from fedcredit.errors import ConfigError, DataError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def woe_iv(
    bin_counts: npt.ArrayLike, bin_events: npt.ArrayLike, smoothing: float = 0.5
) -> tuple[FloatArray, float]:
    """WOE of every bin and the column's information value, from rows and events per bin."""
    counts = np.asarray(bin_counts, dtype=np.float64)
    events = np.asarray(bin_events, dtype=np.float64)
    if counts.ndim != 1 or counts.shape != events.shape or counts.size == 0:
        raise DataError("bin counts and events must be 1-D, non-empty and of the same length")
    if np.any(counts < 0) or np.any(events < 0) or np.any(events > counts):
        raise DataError("bin counts must satisfy 0 <= events <= rows in every bin")
    if not math.isfinite(smoothing) or smoothing < 0:
        raise ConfigError(f"smoothing must be >= 0, got {smoothing}")
    goods = counts - events
    if events.sum() == 0 or goods.sum() == 0:
        raise DataError("WOE needs both events and non-events among the rows")
    used = counts > 0
    event_share = np.where(used, events + smoothing, 0.0)
    good_share = np.where(used, goods + smoothing, 0.0)
    event_share /= event_share.sum()
    good_share /= good_share.sum()
    woe = np.zeros_like(counts)
    with np.errstate(divide="ignore"):
        woe[used] = np.log(event_share[used]) - np.log(good_share[used])
    if not np.all(np.isfinite(woe)):
        raise DataError("a bin holds only events or only non-events; use smoothing > 0")
    iv = float(np.sum((event_share - good_share) * woe))
    return woe, iv


def apply_woe(bin_index: npt.ArrayLike, woe: npt.ArrayLike) -> FloatArray:
    """Replace every bin index by its bin's WOE."""
    index = _check_index(bin_index, np.asarray(woe).size)
    return np.asarray(woe, dtype=np.float64)[index]


def one_hot(bin_index: npt.ArrayLike, n_bins: int) -> FloatArray:
    """``(rows, n_bins)`` indicator matrix of the bin indices (float64)."""
    index = _check_index(bin_index, n_bins)
    out = np.zeros((index.size, n_bins), dtype=np.float64)
    out[np.arange(index.size), index] = 1.0
    return out


def _check_index(bin_index: npt.ArrayLike, n_bins: int) -> IntArray:
    index = np.asarray(bin_index)
    if index.ndim != 1 or (index.size and index.dtype.kind not in "iu"):
        raise DataError("bin indices must be a 1-D array of integers")
    if n_bins < 1:
        raise ConfigError(f"n_bins must be >= 1, got {n_bins}")
    if index.size and (index.min() < 0 or index.max() >= n_bins):
        raise DataError(f"bin indices must be in 0..{n_bins - 1}")
    return index.astype(np.int64)


def select_by_iv(iv: Mapping[str, float], threshold: float = 0.02) -> list[str]:
    """Columns whose IV reaches ``threshold``, highest IV first (name order on ties).

    The usual reading: below 0.02 useless, 0.02-0.1 weak, 0.1-0.3 medium, above 0.3 strong.
    """
    kept = [name for name, value in iv.items() if value >= threshold]
    return sorted(kept, key=lambda name: (-iv[name], name))


def select_by_correlation(
    x: npt.ArrayLike, names: Sequence[str], iv: Mapping[str, float], max_corr: float = 0.9
) -> list[str]:
    """Drop the weaker of every pair of columns correlated beyond ``max_corr``.

    Columns are visited by falling IV; one is kept when its absolute Pearson
    correlation with every column kept so far is at most ``max_corr``. A constant
    column counts as uncorrelated. Each party runs this on its own columns (WOE-coded,
    say): correlations across parties would need both parties' rows. Returns the kept
    names, highest IV first.
    """
    matrix = np.asarray(x, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(names):
        raise DataError(f"X must have one column per name ({len(names)}), got {matrix.shape}")
    if not 0.0 <= max_corr <= 1.0:
        raise ConfigError(f"max_corr must be in [0, 1], got {max_corr}")
    missing = [name for name in names if name not in iv]
    if missing:
        raise DataError(f"no IV for columns {missing}")
    centered = matrix - matrix.mean(axis=0)
    norms = np.sqrt(np.sum(centered * centered, axis=0))
    safe = np.where(norms > 0, norms, 1.0)
    corr = np.abs((centered.T @ centered) / np.outer(safe, safe))
    corr[:, norms == 0] = 0.0
    corr[norms == 0, :] = 0.0
    position = {name: i for i, name in enumerate(names)}
    kept: list[str] = []
    for name in sorted(names, key=lambda n: (-iv[n], n)):
        i = position[name]
        if all(corr[i, position[other]] <= max_corr for other in kept):
            kept.append(name)
    return kept
