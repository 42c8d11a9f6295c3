"""Scoring messages (scoring.proto): the lender's Score replies and partners' PartialScore."""

from __future__ import annotations

from collections.abc import Sequence

from fedcredit.node.results import ApplicantScore
from fedcredit.proto.v1 import common_pb2, scoring_pb2


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
