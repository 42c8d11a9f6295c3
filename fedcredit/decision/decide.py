"""Decisions for scored applicants: approve, refer or decline, an offer, and reason codes.

Order of the rules (docs/DECISIONS.md):

1. the score's band: at or above ``approve_score`` approve, at or above ``refer_score`` refer,
   below it decline;
2. a debt rule that fires (more other lenders than ``max_other_lenders``, more owed to them than
   ``max_total_outstanding``) declines, whatever the score;
3. a debt check that failed, or an applicant whose partner part is known to be missing, turns
   an approval into a referral: a bank does not lend on a check it could not make;
4. an approved applicant gets an offer that follows the score (``offers``); nobody else does.

Every refer and decline carries reason codes: the debt rules that fired, then
``debt check unavailable`` and ``partner data missing`` when they apply, then, when the score
itself fell short, the scorecard's adverse reasons (``NO_ADVERSE_FACTOR`` when it gave none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from fedcredit.decision.policy import APR_UNIT, Policy
from fedcredit.errors import DataError

APPROVE: Final = "approve"
REFER: Final = "refer"
DECLINE: Final = "decline"
DECISIONS: Final = (APPROVE, REFER, DECLINE)

TOO_MANY_OTHER_LENDERS: Final = "too many other lenders"
TOTAL_OUTSTANDING_TOO_HIGH: Final = "total outstanding too high"
DEBT_CHECK_UNAVAILABLE: Final = "debt check unavailable"
PARTNER_DATA_MISSING: Final = "partner data missing"
#: The code of a score below a cut-off when the scorecard named no adverse factor.
NO_ADVERSE_FACTOR: Final = "score below cut-off"

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class Debt(Protocol):
    """What the loan-stacking check answered for one applicant (``fedcredit.debt.DebtResult``
    has this shape). ``total_outstanding_cents`` is None when the consortium withheld it
    (fewer other lenders than its threshold for a total): then only the count rule applies."""

    @property
    def other_lenders(self) -> int: ...

    @property
    def total_outstanding_cents(self) -> int | None: ...


@dataclass(frozen=True)
class DebtFacts:
    """A debt answer as plain values, for callers that hold no ``DebtResult`` (a reply)."""

    other_lenders: int
    total_outstanding_cents: int | None = None


@dataclass(frozen=True)
class DebtUnavailable:
    """The debt check was asked and failed (timeout, refusal); ``detail`` is for the log."""

    detail: str = ""


DebtAnswer = Debt | DebtUnavailable | None
"""None: no debt check for this lender (no loans book or no consortium): no debt rule applies."""


@dataclass(frozen=True)
class Applicant:
    """One scored applicant, as ``decide_many`` takes them.

    ``reasons`` are the scorecard's adverse reasons, worst first. ``partner_missing`` is set
    only where the lender may know it (docs/THREAT-MODEL.md): with the default
    ``unknown_ids = "sample"`` a partner's answer for a stranger cannot be told apart.
    """

    applicant_id: str
    score: float
    grade: str
    reasons: tuple[str, ...] = ()
    debt: DebtAnswer = None
    partner_missing: bool = False


@dataclass(frozen=True)
class Offer:
    """A credit line: the limit in currency units, the annual rate, the instalment choices."""

    limit: int
    apr: float
    instalments: tuple[int, ...]


@dataclass(frozen=True)
class Decision:
    """The decision for one applicant; ``offer`` is set exactly when it is an approval.

    ``score`` is None only for an applicant that could not be scored (``unscored``).
    """

    applicant_id: str
    score: float | None
    grade: str
    decision: str
    offer: Offer | None
    reasons: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise DataError(f"decision must be one of {', '.join(DECISIONS)}: {self.decision!r}")
        if (self.offer is not None) != (self.decision == APPROVE):
            raise DataError("an offer goes with an approval, and only with one")
        if self.decision != APPROVE and not self.reasons:
            raise DataError(f"a {self.decision} must carry at least one reason code")

    @property
    def limit(self) -> int | None:
        return None if self.offer is None else self.offer.limit

    @property
    def apr(self) -> float | None:
        return None if self.offer is None else self.offer.apr

    @property
    def instalments(self) -> tuple[int, ...]:
        return () if self.offer is None else self.offer.instalments

    def to_dict(self) -> dict[str, Any]:
        """The decision as JSON-ready values, keyed like the CSV columns."""
        return {
            "id": self.applicant_id,
            "score": self.score,
            "grade": self.grade,
            "decision": self.decision,
            "limit": self.limit,
            "apr": self.apr,
            "instalments": list(self.instalments),
            "reasons": list(self.reasons),
        }


def offers(policy: Policy, scores: npt.ArrayLike) -> tuple[IntArray, FloatArray]:
    """The limit and annual rate each score would be offered if approved.

    With ``t = clip((score - approve_score) / (best_offer_score - approve_score), 0, 1)`` the
    limit is ``limit_min + t * (limit_max - limit_min)`` rounded down to ``limit_step`` (and
    kept within ``[limit_min, limit_max]``), and the rate ``apr_max - t * (apr_max - apr_min)``
    rounded to 0.1 % (and kept within the grid points inside ``[apr_min, apr_max]``, so never
    above the cap). Every step is monotone, so a higher score never gets a lower limit or a
    higher rate.
    """
    s = _finite_scores(scores)
    span = policy.best_offer_score - policy.approve_score
    t = np.clip((s - policy.approve_score) / span, 0.0, 1.0)
    raw_limit = policy.limit_min + t * float(policy.limit_max - policy.limit_min)
    stepped = np.floor(raw_limit / policy.limit_step) * policy.limit_step
    limits = np.clip(stepped, policy.limit_min, policy.limit_max).astype(np.int64)
    low, high = policy.apr_range_tenths
    tenths = np.rint(high - t * float(high - low))
    # Dividing the whole tenths gives the float nearest to each rate (73 -> 0.073 exactly as
    # written), which multiplying by APR_UNIT would not.
    aprs = np.clip(tenths, low, high) / round(1.0 / APR_UNIT)
    return limits, aprs


def bands(policy: Policy, scores: npt.ArrayLike) -> npt.NDArray[np.str_]:
    """The decision each score alone earns (approve, refer, decline), before any rule."""
    s = _finite_scores(scores)
    result: npt.NDArray[np.str_] = np.where(
        s >= policy.approve_score, APPROVE, np.where(s >= policy.refer_score, REFER, DECLINE)
    )
    return result


def debt_rules(policy: Policy, debt: DebtAnswer) -> tuple[str, ...]:
    """The debt rules ``debt`` breaks: none without an answer (no check, or a failed one)."""
    if debt is None or isinstance(debt, DebtUnavailable):
        return ()
    fired = []
    if debt.other_lenders > policy.max_other_lenders:
        fired.append(TOO_MANY_OTHER_LENDERS)
    cents = debt.total_outstanding_cents
    if cents is not None and cents > policy.max_total_outstanding * 100.0:
        fired.append(TOTAL_OUTSTANDING_TOO_HIGH)
    return tuple(fired)


def decide_many(policy: Policy, applicants: Sequence[Applicant]) -> list[Decision]:
    """The decision for each applicant, in the order given (see the module docstring).

    Offers and score bands are computed for the whole batch at once. Raises ``DataError`` for a
    score that is not a finite number.
    """
    if not applicants:
        return []
    scores = np.asarray([a.score for a in applicants], dtype=np.float64)
    limits, aprs = offers(policy, scores)
    score_bands = bands(policy, scores)
    return [
        _decision(policy, applicant, str(band), Offer(int(limit), float(apr), policy.instalments))
        for applicant, band, limit, apr in zip(applicants, score_bands, limits, aprs, strict=True)
    ]


def decide(
    policy: Policy,
    score: float,
    grade: str,
    reasons: Sequence[str],
    debt: DebtAnswer,
    *,
    applicant_id: str = "",
    partner_missing: bool = False,
) -> Decision:
    """The decision for one applicant: ``decide_many`` of one, so both always agree."""
    applicant = Applicant(applicant_id, score, grade, tuple(reasons), debt, partner_missing)
    return decide_many(policy, [applicant])[0]


def decision_mix(
    policy: Policy, scores: npt.ArrayLike, grades: Sequence[str], order: Sequence[str] = ()
) -> dict[str, dict[str, int]]:
    """How many of the scored applicants ``decide_many`` approves, refers and declines, per
    grade: grade -> decision -> count, every decision listed (0 included).

    No debt answer and no missing partner part (the held-out rows of a job have no loans-book
    check): the score's band alone decides, by the same code as ``fedcredit decide``. Grades in
    ``order`` come first, each listed even when empty; any other grade follows as first seen.
    """
    s = _finite_scores(scores)
    if s.shape != (len(grades),):
        raise DataError(f"{s.size} scores for {len(grades)} grades")
    mix = {str(g): dict.fromkeys(DECISIONS, 0) for g in order}
    applicants = [Applicant("", float(v), str(g)) for v, g in zip(s.tolist(), grades, strict=True)]
    for decision in decide_many(policy, applicants):
        mix.setdefault(decision.grade, dict.fromkeys(DECISIONS, 0))[decision.decision] += 1
    return mix


def unscored(applicant_id: str, reason: str) -> Decision:
    """A referral for an applicant that could not be scored (e.g. not in the lender's data):
    a person looks at it, as for any check that could not be made."""
    return Decision(applicant_id, None, "", REFER, None, (reason,))


def _decision(policy: Policy, applicant: Applicant, band: str, offer: Offer) -> Decision:
    fired = debt_rules(policy, applicant.debt)
    codes = list(fired)
    unchecked = isinstance(applicant.debt, DebtUnavailable)
    if unchecked:
        codes.append(DEBT_CHECK_UNAVAILABLE)
    if applicant.partner_missing:
        codes.append(PARTNER_DATA_MISSING)
    if band != APPROVE:
        codes.extend(applicant.reasons or (NO_ADVERSE_FACTOR,))
    if fired:
        decision = DECLINE
    elif band == APPROVE and (unchecked or applicant.partner_missing):
        decision = REFER
    else:
        decision = band
    if decision == APPROVE:
        return Decision(
            applicant.applicant_id, applicant.score, applicant.grade, APPROVE, offer, ()
        )
    unique = tuple(dict.fromkeys(codes))  # a scorecard reason may repeat a code: keep the first
    return Decision(
        applicant.applicant_id, applicant.score, applicant.grade, decision, None, unique
    )


def _finite_scores(scores: npt.ArrayLike) -> FloatArray:
    s = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        bad = next(float(x) for x in s.ravel() if not math.isfinite(float(x)))
        raise DataError(f"scores must be finite numbers, got {bad}")
    return s


__all__ = [
    "APPROVE",
    "DEBT_CHECK_UNAVAILABLE",
    "DECISIONS",
    "DECLINE",
    "NO_ADVERSE_FACTOR",
    "PARTNER_DATA_MISSING",
    "REFER",
    "TOO_MANY_OTHER_LENDERS",
    "TOTAL_OUTSTANDING_TOO_HIGH",
    "Applicant",
    "Debt",
    "DebtAnswer",
    "DebtFacts",
    "DebtUnavailable",
    "Decision",
    "Offer",
    "bands",
    "debt_rules",
    "decide",
    "decide_many",
    "decision_mix",
    "offers",
    "unscored",
]
