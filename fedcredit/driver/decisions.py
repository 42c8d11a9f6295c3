"""Decisions and invitations as the lender's operator: the lender's Decide RPC, and the
invitation list delivered to one partner's node (ids only).

``decide_chunk`` and ``decide_common`` call ``Decide`` on the lender's node (score, debt check
and the federation file's [policy] there, the same scoring path as ``Score``);
``deliver_invitations`` calls ``DeliverInvitations`` on a partner with the lender's own
certificate: the request holds the invited ids and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from fedcredit.decision import APPROVE, Decision
from fedcredit.driver.scoring import SCORE_TIMEOUT_S, ScoringSession
from fedcredit.errors import ConfigError
from fedcredit.node.serde.scoring import decisions_of
from fedcredit.node.transport.client import call
from fedcredit.proto.v1 import scoring_pb2

DELIVER_TIMEOUT_S: Final = 120.0


def decide_chunk(session: ScoringSession, ids: Sequence[str]) -> list[Decision]:
    """The lender's decisions for ``ids``, in order (one per id)."""
    request = scoring_pb2.DecideRequest(ids=list(ids))
    reply = call(
        session.stub.scoring.Decide, request, party=session.lender, timeout_s=SCORE_TIMEOUT_S
    )
    return decisions_of(reply)


def decide_common(session: ScoringSession) -> list[Decision]:
    """The lender's decisions for the customers its aligned job has in common with every
    partner (``scoring_session(align=True)``), in the shared order."""
    request = scoring_pb2.DecideRequest(common_customers=True)
    reply = call(
        session.stub.scoring.Decide, request, party=session.lender, timeout_s=SCORE_TIMEOUT_S
    )
    return decisions_of(reply)


def approved(decisions: Sequence[Decision]) -> list[Decision]:
    """The approvals, each with its offer, in the order given."""
    return [d for d in decisions if d.decision == APPROVE]


def deliver_invitations(
    session: ScoringSession, partner: str, ids: Sequence[str]
) -> scoring_pb2.InvitationsReceipt:
    """Send ``partner``'s node the invited ids (nothing else), as the lender; its receipt."""
    if partner == session.lender or partner not in session.addresses:
        others = ", ".join(n for n in session.addresses if n not in (session.lender, "coordinator"))
        raise ConfigError(f"--deliver-to {partner!r}: not a partner of the federation ({others})")
    reply: scoring_pb2.InvitationsReceipt = session.call_as_lender(
        partner,
        lambda s: s.scoring.DeliverInvitations,
        scoring_pb2.Invitations(ids=list(ids)),
        timeout_s=DELIVER_TIMEOUT_S,
        idempotent=True,  # the same list lands in the same file
    )
    return reply


__all__ = ["approved", "decide_chunk", "decide_common", "deliver_invitations"]
