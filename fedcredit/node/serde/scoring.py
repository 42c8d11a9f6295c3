"""Scoring messages (scoring.proto): the lender's Score and Decide replies, partners'
PartialScore, every party's Stability answer."""

from __future__ import annotations

from collections.abc import Sequence

from fedcredit.crypto import EncryptedVector, PublicKey, packed_count
from fedcredit.decision import Decision, Offer
from fedcredit.decision.stability import FeatureStability, stability_status
from fedcredit.errors import CryptoError, DataError, ProtocolError
from fedcredit.node.errors import InvalidRequest
from fedcredit.node.results import ApplicantScore
from fedcredit.node.serde import common
from fedcredit.proto.v1 import common_pb2, scoring_pb2
from fedcredit.protocol.fixedpoint import Z_SCALE_BITS, score_value_bits

PACKED_PARTIALS = "score-packed"
"""The phase of a partner's ``PartialScore`` reply: partial scores packed before encryption."""


def partial_reply(env: common_pb2.Envelope, vector: EncryptedVector) -> common_pb2.CipherMessage:
    """A partner's packed partial scores (``FeatureParty.partial_for_ids``) for the lender."""
    return common.cipher_message(env, PACKED_PARTIALS, vector)


def packed_partials(
    party: str, reply: common_pb2.CipherMessage, key: PublicKey, applicants: int
) -> EncryptedVector:
    """A partner's packed partial scores of ``applicants``, validated: the phase, the key,
    the score scale and the one count of ciphertexts the key and the applicants give."""
    if reply.phase != PACKED_PARTIALS:
        raise ProtocolError(
            f"party {party!r} answered partial scores as {reply.phase!r}, not "
            f"{PACKED_PARTIALS!r} (a node of another fedcredit version?)"
        )
    count = packed_count(applicants, key.bits, score_value_bits())
    try:
        return common.vector_from_proto(reply.vector, key, scale_bits=Z_SCALE_BITS, count=count)
    except CryptoError as exc:
        raise CryptoError(f"party {party!r}'s partial scores: {exc}") from exc


def score_ids(env: common_pb2.Envelope, ids: Sequence[str]) -> scoring_pb2.ScoreIds:
    return scoring_pb2.ScoreIds(env=env, ids=list(ids))


def score_reply(applicants: Sequence[ApplicantScore]) -> scoring_pb2.ScoreReply:
    reply = scoring_pb2.ScoreReply()
    for a in applicants:
        item = reply.applicants.add(id=a.id)
        if a.error:
            item.error = a.error
        else:
            item.probability = a.probability
            item.score = a.score
            item.grade = a.grade
            item.reasons = a.reasons
        if a.other_lenders is not None:
            item.other_lenders = a.other_lenders
        if a.total_outstanding is not None:
            item.total_outstanding = a.total_outstanding
        if a.debt_reason:
            item.debt_reason = a.debt_reason
    return reply


def decide_reply(decisions: Sequence[Decision]) -> scoring_pb2.DecideReply:
    """The lender's decisions as a reply; the offer fields only for an approval."""
    reply = scoring_pb2.DecideReply()
    for d in decisions:
        item = reply.decisions.add(
            id=d.applicant_id, grade=d.grade, decision=d.decision, reasons=list(d.reasons)
        )
        if d.score is not None:
            item.score = d.score
        if d.offer is not None:
            item.limit = d.offer.limit
            item.apr = d.offer.apr
            item.instalments.extend(d.offer.instalments)
    return reply


def decisions_of(reply: scoring_pb2.DecideReply) -> list[Decision]:
    """The decisions of a ``Decide`` reply (``Decision`` checks that each is consistent)."""
    decisions = []
    for item in reply.decisions:
        offer = (
            Offer(int(item.limit), float(item.apr), tuple(int(n) for n in item.instalments))
            if item.HasField("limit")
            else None
        )
        decisions.append(
            Decision(
                item.id,
                float(item.score) if item.HasField("score") else None,
                item.grade,
                item.decision,
                offer,
                tuple(item.reasons),
            )
        )
    return decisions


def stability_request(env: common_pb2.Envelope, ids: Sequence[str]) -> scoring_pb2.StabilityRequest:
    return scoring_pb2.StabilityRequest(env=env, ids=list(ids))


def stability_reply(features: Sequence[FeatureStability]) -> scoring_pb2.StabilityReply:
    """Each column's name and index: nothing else leaves the party."""
    reply = scoring_pb2.StabilityReply()
    for f in features:
        reply.columns.add(feature=f.feature, csi=f.csi)
    return reply


def stabilities_of(party: str, reply: scoring_pb2.StabilityReply) -> list[FeatureStability]:
    """``party``'s answer as ``FeatureStability`` values (the status from each index);
    ``InvalidRequest`` for an index that is not a finite number of at least 0."""
    features = []
    for item in reply.columns:
        try:
            status = stability_status(float(item.csi))
        except DataError as exc:
            raise InvalidRequest(f"party {party!r} answered a bad index: {exc}") from exc
        features.append(FeatureStability(party, item.feature, float(item.csi), status))
    return features
