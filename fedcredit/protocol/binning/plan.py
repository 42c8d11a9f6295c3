"""The lender's decisions from per-bin counts: monotonic merges, WOE, IV and column selection.

Plain arithmetic on counts the lender holds (its own columns) or decrypted (a partner's); the
plan it derives (``ColumnPlan``) is all a partner learns of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedcredit.model.binning import bin_counts, group_counts, merge_monotonic
from fedcredit.model.woe import woe_iv
from fedcredit.protocol.binning.bins import FineColumn, bin_matrix
from fedcredit.protocol.binning.messages import ColumnPlan

IntArray = npt.NDArray[np.int64]

#: Among the lender's own columns, the weaker of a pair correlated beyond this is dropped.
MAX_CORRELATION = 0.9


@dataclass(frozen=True)
class ColumnStats:
    """Rows and events per fine bin of one column (missing bin last), as the lender sees them."""

    party: str
    name: str
    rows: IntArray
    events: IntArray


def plain_stats(
    party: str, raw: np.ndarray, y: np.ndarray, columns: Sequence[FineColumn]
) -> list[ColumnStats]:
    """The lender's own columns: counts straight from its rows and labels."""
    index = bin_matrix(raw, columns)
    out = []
    for j, column in enumerate(columns):
        rows, events = bin_counts(index[:, j], y, column.binning.n_bins)
        out.append(ColumnStats(party, column.name, rows, events))
    return out


@dataclass(frozen=True)
class ColumnReport:
    """One row of the IV report (aggregates only)."""

    party: str
    column: str
    iv: float
    iv_fine: float
    fine_bins: int
    bins: int
    kept: bool
    woe: tuple[float, ...]


def merge_column(
    stats: ColumnStats, categorical: bool
) -> tuple[tuple[tuple[int, ...], ...], IntArray, IntArray]:
    """Monotonic groups of the regular bins (categories are not ordered: left alone)."""
    regular_rows, regular_events = stats.rows[:-1], stats.events[:-1]
    if categorical or regular_rows.sum() == 0:
        groups = [[k] for k in range(len(regular_rows))]
    else:
        groups = merge_monotonic(regular_rows, regular_events)
    rows = np.append(group_counts(regular_rows, groups), stats.rows[-1])
    events = np.append(group_counts(regular_events, groups), stats.events[-1])
    return tuple(tuple(g) for g in groups), rows, events


def _iv(rows: IntArray, events: IntArray) -> tuple[np.ndarray, float]:
    if events.sum() == 0 or events.sum() == rows.sum():
        return np.zeros(len(rows)), 0.0
    return woe_iv(rows, events)


def plan_columns(
    stats: Sequence[ColumnStats],
    categorical: Collection[str],
    threshold: float,
    min_rows: int = 0,
) -> tuple[list[ColumnPlan], list[ColumnReport]]:
    """Merge, WOE and IV of every column of one party; keep the columns at or above
    ``threshold`` (the best one always, so no party is left without a column). Merged bins
    (missing and ``other`` included) with fewer than ``min_rows`` rows are folded."""
    plans, reports = [], []
    for s in stats:
        groups, rows, events = merge_column(s, s.name in categorical)
        woe, iv = _iv(rows, events)
        _, iv_fine = _iv(s.rows, s.events)
        fold = tuple(k for k, r in enumerate(rows.tolist()) if r < min_rows)
        plans.append(ColumnPlan(s.name, iv >= threshold, groups, fold))
        reports.append(
            ColumnReport(
                s.party,
                s.name,
                iv,
                iv_fine,
                len(s.rows),
                len(rows),
                iv >= threshold,
                tuple(woe.tolist()),
            )
        )
    if reports and not any(r.kept for r in reports):
        best = max(range(len(reports)), key=lambda i: reports[i].iv)
        plans[best] = dataclasses.replace(plans[best], keep=True)
        reports[best] = replace_kept(reports[best], True)
    return plans, reports


def replace_kept(report: ColumnReport, kept: bool) -> ColumnReport:
    return ColumnReport(
        report.party,
        report.column,
        report.iv,
        report.iv_fine,
        report.fine_bins,
        report.bins,
        kept,
        report.woe,
    )
