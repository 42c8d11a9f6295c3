"""The Scoring service of a data party's node (scoring.proto)."""

from __future__ import annotations

import grpc

from fedcredit.errors import ProtocolError
from fedcredit.node.scoring import DebtCheck, score_applicants
from fedcredit.node.serde import common, scoring
from fedcredit.node.services.errors import rpc
from fedcredit.node.state import PartyNode
from fedcredit.node.transport.identity import caller_party
from fedcredit.proto.v1 import common_pb2, scoring_pb2, scoring_pb2_grpc


class ScoringServicer(scoring_pb2_grpc.ScoringServicer):
    """``debt``: a lender of a loan-stacking consortium, whose scores carry the two aggregates."""

    def __init__(self, node: PartyNode, debt: DebtCheck | None = None) -> None:
        self.node = node
        self.debt = debt

    @rpc
    def PartialScore(
        self, request: scoring_pb2.ScoreIds, context: grpc.ServicerContext
    ) -> common_pb2.CipherMessage:
        caller = caller_party(context)
        peers = self.node.scoring_peers()
        vector = self.node.partial_score(caller, list(request.ids), peers, request.env.job_id)
        return common.cipher_message(request.env, "score", vector)

    @rpc
    def Score(
        self, request: scoring_pb2.ScoreRequest, context: grpc.ServicerContext
    ) -> scoring_pb2.ScoreReply:
        caller = caller_party(context)
        if caller != self.node.name:
            raise ProtocolError(f"scores go only to the lender's own operator, not {caller!r}")
        return scoring.score_reply(score_applicants(self.node, list(request.ids), debt=self.debt))
