"""A party's own gradient must not single out one row's residual (security review F10).

Every party learns its own gradient ``X_b' d / B`` in the clear, for each training batch ``b``.
That is ``f`` linear combinations of the batch's ``B`` residuals, and ``batch_size > f`` keeps
the party from solving for all of them. It is not enough: when the party's columns single out
one row (a column that takes an unusual value on that row alone in the batch, or two columns
that differ only there) one combination is that row's residual ``d_t``. For the lender ``d_t``
holds the partners' partial score of the row, for a partner the row's label.

Whether a combination isolates row ``t`` is its *leverage* in the batch's design (with a
constant column, which the lender has and a partner may build): ``h_t = 1`` exactly when
``e_t`` lies in the span of the columns, i.e. the party can compute ``d_t``. Below 1 the
gradient still estimates ``d_t`` with an error of about ``sqrt((1 - h_t) / h_t)`` times the
residuals' spread. A party refuses to compute a gradient over a batch in which some row's
leverage is above ``MAX_LEVERAGE`` (the estimate would be within a tenth of that spread) and
names the column that contributes most. That stops crafted columns (an indicator of one
customer, two columns that differ on one row) and natural ones that single out a row (a flag
set on one customer of the batch). Ordinary columns stay below it: in this project's synthetic
data the largest leverage of any row is under 0.35 in batches of 400 rows and reaches 0.97 in
batches of 64 (a rare count, such as six linked cards, among 64 rows). Between those values
the gradient tells a party part of a row's residual: small batches leak, which is one more
reason for batches in the thousands (docs/THREAT-MODEL.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedcredit.errors import DataError

#: The largest leverage a batch row may have in a party's own design (see the module text).
MAX_LEVERAGE = 0.99


def leverages(x: np.ndarray) -> np.ndarray:
    """Each row's leverage in the column span of ``[x, 1]`` (rank-deficient spans allowed)."""
    design = np.hstack([np.asarray(x, dtype=np.float64), np.ones((len(x), 1))])
    scale = np.abs(design).max(axis=0)
    design = design / np.where(scale > 0, scale, 1.0)
    values, vectors = np.linalg.eigh(design.T @ design)
    keep = values > values.max(initial=0.0) * 1e-10
    basis = design @ (vectors[:, keep] / np.sqrt(values[keep]))
    h: np.ndarray = np.einsum("ij,ij->i", basis, basis)
    return h


def check_batch(party: str, names: Sequence[str], x: np.ndarray, epoch: int, batch: int) -> None:
    """DataError naming the column when a row of this batch is singled out by ``x``."""
    h = leverages(x)
    row = int(np.argmax(h)) if len(h) else 0
    if not len(h) or h[row] <= MAX_LEVERAGE:
        return
    # The column whose removal lowers that row's leverage most is the one to drop or merge.
    without = [leverages(np.delete(x, j, axis=1))[row] for j in range(x.shape[1])]
    column = int(np.argmin(without))
    name = names[column] if column < len(names) else "intercept"
    raise DataError(
        f"party {party!r}: column {name!r} singles out one row of training batch {batch} "
        f"(epoch {epoch}): the party's own gradient would reveal that row's residual, and "
        f"with it the partners' partial score or the label (leverage {h[row]:.2f}, at most "
        f"{MAX_LEVERAGE} allowed); drop the column or merge its rare values"
    )
