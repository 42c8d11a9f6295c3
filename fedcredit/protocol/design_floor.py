"""How few rows a one-hot design column may hold (issue 12, F3).

A party's gradient component for a 0/1 design column over a mini-batch is four times the sum of
the residuals ``d_t = sigma(z_t) - y_t`` of the batch rows in that column, and the party sees it
in the clear. Were one row of the batch alone in the column, that component would be the row's
residual, whose sign is its label. Every one-hot encoder (binning's partner encoder, plain
mode's text columns) therefore gives a level (a merged bin, a category) a design column of its
own only when the level holds

- at least ``total_floor``: ``ceil(min_share x training rows)`` rows, at least
  ``MIN_BATCH_ROWS``, among the training rows (the missing bin and ``other`` included), and
- at least ``batch_floor`` rows in **every mini-batch of every epoch** of the job: half the
  level's share of the smallest batch, at least ``MIN_BATCH_ROWS``. The batches are public
  (every party derives them from the job seed), so a party that chose its rows to put one row
  of a level in one batch is caught here, on its actual rows.

Levels that fail score like the reference (no design column). The levels without a column
together must also meet the batch floor, else the column gets no design column at all: the sum
of a column's design columns is one minus the indicator of those levels, so with another column
covering a whole batch it would isolate them.

What this does not stop: a party can combine design columns. Two columns whose levels differ by
one row of a batch (a near-duplicate column the party made, or two highly correlated honest
ones) give that row's residual as a difference; a party that deviates from the code can compute
``X.T @ [[4d]]`` for any ``X`` it likes. Only noise on the residuals or gradients that no party
sees in the clear close that (docs/BINNING.md, "What each side learns").
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import numpy as np
import numpy.typing as npt

from fedcredit.protocol.split import batch_count, batch_of_rows, smallest_batch

IntArray = npt.NDArray[np.int64]

#: No design column holds fewer rows than this, in all or in any mini-batch.
MIN_BATCH_ROWS = 5


def total_floor(min_share: float, train_rows: int) -> int:
    """Training rows a level needs for a design column of its own."""
    return max(MIN_BATCH_ROWS, math.ceil(min_share * train_rows))


def batch_floor(min_share: float, train_rows: int, batch_size: int) -> int:
    """Rows of every mini-batch a level needs for a design column of its own."""
    return max(MIN_BATCH_ROWS, math.ceil(min_share * smallest_batch(train_rows, batch_size) / 2))


def batch_counts(levels: npt.ArrayLike, n_levels: int, settings: Any) -> IntArray:
    """Rows of every level (columns) in every mini-batch of every epoch of the job (rows).

    ``levels`` holds the level of every training row in the shared training order;
    ``settings`` is the job's training settings (``epochs``, ``batch_size``, ``seed``).
    """
    index = np.asarray(levels, dtype=np.int64)
    rows, size = len(index), int(settings.batch_size)
    count = batch_count(rows, size)
    out = []
    for epoch in range(max(1, int(settings.epochs))):
        batch = batch_of_rows(rows, size, int(settings.seed), epoch)
        cells = np.bincount(batch * n_levels + index, minlength=count * n_levels)
        out.append(cells.reshape(count, n_levels))
    return np.vstack(out).astype(np.int64)


def columned_levels(
    levels: npt.ArrayLike,
    n_levels: int,
    reference: int,
    *,
    min_share: float,
    settings: Any,
    exclude: Collection[int] = (),
) -> tuple[int, ...]:
    """The levels that get a design column: not ``reference``, not in ``exclude``, and at or
    above both floors; ``()`` when the levels left without a column miss the batch floor."""
    index = np.asarray(levels, dtype=np.int64)
    if len(index) == 0:
        return ()
    totals = np.bincount(index, minlength=n_levels)
    per_batch = batch_counts(index, n_levels, settings)
    need_total = total_floor(min_share, len(index))
    need_batch = batch_floor(min_share, len(index), int(settings.batch_size))
    active = [
        k
        for k in range(n_levels)
        if k != reference
        and k not in exclude
        and totals[k] >= need_total
        and int(per_batch[:, k].min()) >= need_batch
    ]
    rest = np.delete(per_batch, active, axis=1).sum(axis=1)
    if not active or int(rest.min()) < need_batch:
        return ()
    return tuple(active)
