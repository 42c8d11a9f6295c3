"""Feature importance of a trees model, each party for its own columns only (docs/TREES.md).

- The lender: per column of its own, the splits on it and their total gain (XGBoost's
  ``loss_chg``, ``GL^2/(HL+l2) + GR^2/(HR+l2) - G^2/(H+l2)`` over the training rows' g and h,
  as the split was chosen); per partner, one line for all its columns together (it never learns
  which of a partner's columns a split uses). Over the kept trees.
- A partner: per column of its own, what it already knows. Mix: the splits of its own trees
  (it is told which of its candidates won; every tree it built, since it is not told which trees
  early stopping kept). Joint: the picks the lender asked sides for, real and decoy alike (it
  cannot tell them apart, by design). **No gain**: a gain is a function of the label sums of
  the node's children, which a partner is never sent; nothing new crosses the wire for this.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedcredit.model.trees import FloatArray, IntArray
from fedcredit.protocol.trees.scoring import LenderTree

#: The column name of the lender's one line per partner.
ALL_COLUMNS = "*"


def split_gains(
    record: LenderTree, node: IntArray, g: FloatArray, h: FloatArray, l2: float
) -> FloatArray:
    """Each split node's gain (0 elsewhere), from the training rows' leaves ``node`` and their
    ``g``, ``h`` (zero for rows out of the tree's sample)."""
    size = len(record.split_by)
    sum_g = np.bincount(node, weights=g, minlength=size)[:size].astype(np.float64)
    sum_h = np.bincount(node, weights=h, minlength=size)[:size].astype(np.float64)
    out = np.zeros(size)
    for j in range(size - 1, -1, -1):
        if not record.split_by[j]:
            continue
        a, b = 2 * j + 1, 2 * j + 2
        sum_g[j], sum_h[j] = sum_g[a] + sum_g[b], sum_h[a] + sum_h[b]
        out[j] = (
            sum_g[a] ** 2 / (sum_h[a] + l2)
            + sum_g[b] ** 2 / (sum_h[b] + l2)
            - sum_g[j] ** 2 / (sum_h[j] + l2)
        )
    return out


def lender_importance(
    model: Sequence[LenderTree], name: str, feature_names: Sequence[str], partners: Sequence[str]
) -> list[tuple[str, str, int, float]]:
    """``(party, column, splits, gain)``: the lender's columns, then one line per partner."""
    splits = {(name, c): 0 for c in feature_names} | {(p, ALL_COLUMNS): 0 for p in partners}
    gain = dict.fromkeys(splits, 0.0)
    for record in model:
        for j, by in enumerate(record.split_by):
            if not by:
                continue
            own = by == name and not (record.owner and record.owner != name)
            key = (name, feature_names[int(record.own.feature[j])]) if own else (by, ALL_COLUMNS)
            splits[key] = splits.get(key, 0) + 1
            gain[key] = gain.get(key, 0.0) + (0.0 if record.gain is None else float(record.gain[j]))
    return [(p, c, n, gain[(p, c)]) for (p, c), n in splits.items()]


def partner_importance(partner: Any) -> tuple[str, dict[str, int]]:
    """``("splits" | "picks", count per column)`` of a ``TreesPartner`` (module docstring)."""
    names = list(partner.feature_names)
    counts = dict.fromkeys(names, 0)
    if str(partner.settings.mode) == "joint":
        for _, split in partner.tokens.values():
            counts[names[split.feature]] += 1
        return "picks", counts
    for tree in partner.trees.values():
        for j in np.flatnonzero(tree.exists).tolist():
            if 2 * j + 2 < len(tree.exists) and tree.exists[2 * j + 1]:
                counts[names[int(tree.feature[j])]] += 1
    return "splits", counts


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def lender_csv(rows: Sequence[tuple[str, str, int, float]]) -> str:
    return _csv(("party", "column", "splits", "gain"), [(p, c, n, repr(g)) for p, c, n, g in rows])


def partner_csv(kind: str, counts: dict[str, int]) -> str:
    return _csv(("column", kind), list(counts.items()))


__all__ = [
    "ALL_COLUMNS",
    "lender_csv",
    "lender_importance",
    "partner_csv",
    "partner_importance",
    "split_gains",
]
