"""Gains, calibration and grade tables of held-out scores: what a credit committee reads.

Every function takes ``y`` (labels, 0 = good, 1 = default) and ``p`` (probabilities of
default) as 1-D arrays of the same length and returns plain JSON-ready rows. They are
aggregates over bands of about a tenth of the rows each, coarser than the ROC curve
(one point per distinct score) the same evaluation already draws.

Bands are cut on the rows sorted riskiest first; rows with the same probability always
share a band (a band boundary never splits a tie), so a band can hold more than its share
of rows, and fewer bands than asked for are returned when ties are large.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fedcredit.errors import DataError
from fedcredit.model.metrics import _check
from fedcredit.model.scorecard import Scorecard

BANDS = 10

Row = dict[str, float | int | str | None]


def _bands(
    p: npt.NDArray[np.float64], bands: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Rows in riskiest-first order and the band of each sorted position."""
    if bands < 1:
        raise DataError(f"a table needs at least one band, got {bands}")
    order = np.argsort(-p, kind="mergesort").astype(np.int64)
    ordered = p[order]
    n = ordered.size
    position = np.arange(n)
    # Every row takes the band of the first row of its run of equal scores.
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    first_of_run = np.maximum.accumulate(np.where(starts, position, 0))
    band = (first_of_run * bands) // n
    return order, band.astype(np.int64)


def gains_table(
    y: npt.ArrayLike, p: npt.ArrayLike, scorecard: Scorecard, bands: int = BANDS
) -> list[Row]:
    """Gains by score band, riskiest band first (band 1 holds the lowest scores).

    Each row: ``band``, ``score_min``, ``score_max`` (the scorecard's points, rounded to
    one decimal), ``rows``, ``defaults``, ``bad_rate``, ``cum_rows_share`` (share of rows
    in this band and the riskier ones) and ``cum_defaults_share`` (share of all defaults
    caught by declining this band and every riskier one).
    """
    y_int, p_arr = _check(y, p, both_classes=False)
    order, band = _bands(p_arr, bands)
    y_sorted = y_int[order]
    scores = scorecard.score(p_arr[order])
    total_defaults = int(y_int.sum())
    rows: list[Row] = []
    caught = seen = 0
    for number, index in enumerate(np.unique(band), start=1):
        members = band == index
        count = int(members.sum())
        defaults = int(y_sorted[members].sum())
        caught += defaults
        seen += count
        rows.append(
            {
                "band": number,
                "score_min": round(float(scores[members].min()), 1),
                "score_max": round(float(scores[members].max()), 1),
                "rows": count,
                "defaults": defaults,
                "bad_rate": defaults / count,
                "cum_rows_share": seen / y_int.size,
                "cum_defaults_share": caught / total_defaults if total_defaults else 0.0,
            }
        )
    return rows


def calibration_table(y: npt.ArrayLike, p: npt.ArrayLike, bands: int = BANDS) -> list[Row]:
    """Predicted against observed default rate by band of predicted risk, riskiest first.

    Each row: ``band``, ``rows``, ``defaults``, ``predicted`` (mean probability of default
    in the band) and ``observed`` (its share of defaults). A well-calibrated model has the
    two close in every band.
    """
    y_int, p_arr = _check(y, p, both_classes=False)
    if np.any((p_arr < 0.0) | (p_arr > 1.0)):
        raise DataError("calibration needs probabilities in [0, 1]")
    order, band = _bands(p_arr, bands)
    y_sorted, p_sorted = y_int[order], p_arr[order]
    rows: list[Row] = []
    for number, index in enumerate(np.unique(band), start=1):
        members = band == index
        count = int(members.sum())
        defaults = int(y_sorted[members].sum())
        rows.append(
            {
                "band": number,
                "rows": count,
                "defaults": defaults,
                "predicted": float(p_sorted[members].mean()),
                "observed": defaults / count,
            }
        )
    return rows


def grade_table(y: npt.ArrayLike, p: npt.ArrayLike, scorecard: Scorecard) -> list[Row]:
    """Rows, defaults and bad rate per grade of ``scorecard``, best grade first.

    Every grade is listed; an empty one has zero rows and ``bad_rate`` ``None``. ``score_from``
    is the grade's lowest score, ``None`` for the last grade (no lower bound).
    """
    y_int, p_arr = _check(y, p, both_classes=False)
    grades = scorecard.grade(scorecard.score(p_arr))
    rows: list[Row] = []
    for name, low in scorecard.grades:
        members = grades == name
        count = int(members.sum())
        defaults = int(y_int[members].sum())
        rows.append(
            {
                "grade": name,
                "score_from": low if np.isfinite(low) else None,
                "rows": count,
                "defaults": defaults,
                "bad_rate": defaults / count if count else None,
            }
        )
    return rows
