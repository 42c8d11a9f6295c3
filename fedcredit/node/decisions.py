"""The lender's scores as credit decisions: ``ApplicantScore`` mapped to ``fedcredit.decision``.

The ``Decide`` RPC scores applicants exactly as ``Score`` does (the same batcher, partners'
round, decryption and debt check) and hands each answer to ``fedcredit.decision.decide_many``
with the federation file's ``[policy]``. Mapping, per applicant:

- not scored (``error``, e.g. not in the lender's data): ``unscored``, referred with that
  error as its reason;
- the scorecard's reasons (``;``-joined) become the reason tuple, worst first;
- the debt check: counted (``other_lenders`` set) becomes ``DebtFacts`` with the total in
  cents when the consortium revealed it; a check that ran and failed (only a
  ``debt_reason``) becomes ``DebtUnavailable``; no check at all (no loans book) is None.

``partner_missing`` stays False: with ``unknown_ids = "sample"`` or ``"mean"`` the lender cannot
tell, and with ``"refuse"`` a missing applicant fails the whole request (docs/THREAT-MODEL.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from fedcredit.decision import (
    Applicant,
    DebtFacts,
    DebtUnavailable,
    Decision,
    Policy,
    decide_many,
    unscored,
)
from fedcredit.decision.decide import DebtAnswer
from fedcredit.errors import ConfigError, ProtocolError
from fedcredit.node.results import ApplicantScore


def require_policy(policy: Policy | None, node: str) -> Policy:
    """The lender's policy, or a ``ConfigError`` saying the federation file has none."""
    if policy is None:
        raise ConfigError(
            f"party {node!r} has no decision policy: the federation file needs a [policy] "
            "table (an empty one takes the defaults, parties/README.md)"
        )
    return policy


def debt_answer(item: ApplicantScore) -> DebtAnswer:
    """What the loan-stacking check answered for one scored applicant, as a decision input."""
    if item.other_lenders is not None:
        return DebtFacts(item.other_lenders, _cents(item.total_outstanding))
    if item.debt_reason:
        return DebtUnavailable(item.debt_reason)
    return None


def decisions_for(policy: Policy, scored: Sequence[ApplicantScore]) -> list[Decision]:
    """One decision per scored applicant, in the order given."""
    applicants = [
        Applicant(
            item.id,
            item.score,
            item.grade,
            tuple(r for r in item.reasons.split(";") if r),
            debt_answer(item),
        )
        for item in scored
        if not item.error
    ]
    decided = iter(decide_many(policy, applicants))
    return [unscored(item.id, item.error) if item.error else next(decided) for item in scored]


def _cents(total: str | None) -> int | None:
    """``"1234.56"`` (the exact total, two decimals) as 123456 cents; None when withheld."""
    if total is None or total == "":
        return None
    try:
        return int(Decimal(total) * 100)
    except InvalidOperation as exc:
        raise ProtocolError(f"debt check total {total!r} is not an amount") from exc


__all__ = ["debt_answer", "decisions_for", "require_policy"]
