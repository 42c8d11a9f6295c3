"""The decision policy computed plainly, straight from docs/DECISIONS.md, to check
``fedcredit.decision`` and everything built on it against (no fedcredit code is used)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULTS: dict[str, Any] = {
    "approve_score": 600.0,
    "refer_score": 560.0,
    "best_offer_score": 680.0,
    "limit_min": 5000,
    "limit_max": 50000,
    "limit_step": 100,
    "apr_min": 0.073,
    "apr_max": 0.24,
    "instalments": [3, 6, 9, 12],
    "max_other_lenders": 3,
    "max_total_outstanding": 200000.0,
}
UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Plain:
    decision: str
    limit: int | None
    apr: float | None
    instalments: tuple[int, ...]
    reasons: tuple[str, ...]


def plain_decision(
    table: Mapping[str, Any],
    score: float,
    reasons: Sequence[str],
    debt: tuple[int, int | None] | str | None = None,
) -> Plain:
    """``debt``: None (no check), ``UNAVAILABLE``, or (other lenders, total cents or None)."""
    p = DEFAULTS | dict(table)
    band = (
        "approve"
        if score >= p["approve_score"]
        else "refer"
        if score >= p["refer_score"]
        else "decline"
    )
    fired = []
    if isinstance(debt, tuple):
        if debt[0] > p["max_other_lenders"]:
            fired.append("too many other lenders")
        if debt[1] is not None and debt[1] > p["max_total_outstanding"] * 100:
            fired.append("total outstanding too high")
    codes = list(fired)
    if debt == UNAVAILABLE:
        codes.append("debt check unavailable")
    if band != "approve":
        codes += list(reasons) or ["score below cut-off"]
    if fired:
        decision = "decline"
    elif band == "approve" and debt == UNAVAILABLE:
        decision = "refer"
    else:
        decision = band
    if decision != "approve":
        return Plain(decision, None, None, (), tuple(dict.fromkeys(codes)))
    t = min(max((score - p["approve_score"]) / (p["best_offer_score"] - p["approve_score"]), 0), 1)
    raw = p["limit_min"] + t * (p["limit_max"] - p["limit_min"])
    limit = min(max(math.floor(raw / p["limit_step"]) * p["limit_step"], p["limit_min"]),
                p["limit_max"])  # fmt: skip
    low, high = math.ceil(p["apr_min"] * 1000 - 1e-9), math.floor(p["apr_max"] * 1000 + 1e-9)
    apr = min(max(round(high - t * (high - low)), low), high) / 1000
    return Plain("approve", int(limit), apr, tuple(p["instalments"]), ())
