"""The Scoring service of a data party's node (scoring.proto).

At the lender, ``Score`` and ``Decide`` are its own operator's; concurrent calls share partner
rounds and decryptions through one ``MicroBatcher`` (the federation file's [scoring]
``batch_wait_ms`` and ``batch_max_applicants``). At a partner, ``PartialScore`` and
``DeliverInvitations`` answer the lender only; ``Stability`` answers the lender at every party
(at the lender's own node, its operator).
"""

from __future__ import annotations

import grpc

from fedcredit.decision import Policy
from fedcredit.errors import ProtocolError
from fedcredit.node.batching import MicroBatcher
from fedcredit.node.decisions import decisions_for, require_policy
from fedcredit.node.errors import CallerRefused, InvalidRequest
from fedcredit.node.invitations import store_invitations
from fedcredit.node.results import ApplicantScore
from fedcredit.node.scoring import DebtCheck, common_customers, score_applicants
from fedcredit.node.serde import scoring
from fedcredit.node.services.errors import rpc
from fedcredit.node.state import PartyNode
from fedcredit.node.transport.identity import caller_party
from fedcredit.proto.v1 import common_pb2, scoring_pb2, scoring_pb2_grpc

COMMON_CHUNK = 2000
"""Common customers are decided this many at a time (the partners' deadlines stay short)."""


class ScoringServicer(scoring_pb2_grpc.ScoringServicer):
    """``debt``: a lender of a loan-stacking consortium, whose scores carry the two aggregates;
    ``policy``: the lender's [policy] (None: ``Decide`` is refused, naming the table)."""

    def __init__(
        self, node: PartyNode, debt: DebtCheck | None = None, policy: Policy | None = None
    ) -> None:
        self.node = node
        self.debt = debt
        self.policy = policy
        settings = node.partner.settings
        self.batcher: MicroBatcher[str, ApplicantScore] = MicroBatcher(
            lambda ids: score_applicants(self.node, ids, debt=self.debt),
            max_wait_s=settings.batch_wait_ms / 1000.0,
            max_items=settings.batch_max_applicants,
        )

    @rpc
    def PartialScore(
        self, request: scoring_pb2.ScoreIds, context: grpc.ServicerContext
    ) -> common_pb2.CipherMessage:
        caller = caller_party(context)
        peers = self.node.scoring_peers()
        vector = self.node.partial_score(caller, list(request.ids), peers, request.env.job_id)
        return scoring.partial_reply(request.env, vector)

    @rpc
    def Score(
        self, request: scoring_pb2.ScoreRequest, context: grpc.ServicerContext
    ) -> scoring_pb2.ScoreReply:
        self._own_operator(context, "scores")
        return scoring.score_reply(self.batcher.submit(list(request.ids)))

    @rpc
    def Decide(
        self, request: scoring_pb2.DecideRequest, context: grpc.ServicerContext
    ) -> scoring_pb2.DecideReply:
        self._own_operator(context, "decisions")
        policy = require_policy(self.policy, self.node.name)
        if not request.common_customers:
            ids = list(request.ids)
            return scoring.decide_reply(decisions_for(policy, self.batcher.submit(ids)))
        if request.ids:
            raise InvalidRequest("Decide: give ids or common_customers, not both")
        ids = common_customers(self.node)
        decided = []
        for start in range(0, len(ids), COMMON_CHUNK):
            chunk = ids[start : start + COMMON_CHUNK]
            decided += decisions_for(policy, self.batcher.submit(chunk))
        return scoring.decide_reply(decided)

    @rpc
    def DeliverInvitations(
        self, request: scoring_pb2.Invitations, context: grpc.ServicerContext
    ) -> scoring_pb2.InvitationsReceipt:
        lender = self.node.scoring_peers().lender
        if self.node.name == lender:
            raise CallerRefused("the lender's own node takes no invitations")
        path, count = store_invitations(
            self.node.home, caller_party(context), lender, list(request.ids)
        )
        return scoring_pb2.InvitationsReceipt(received=count, file=path.name)

    @rpc
    def Stability(
        self, request: scoring_pb2.StabilityRequest, context: grpc.ServicerContext
    ) -> scoring_pb2.StabilityReply:
        caller = caller_party(context)
        features = self.node.stability(caller, list(request.ids), request.env.job_id)
        return scoring.stability_reply(features)

    def _own_operator(self, context: grpc.ServicerContext, what: str) -> None:
        caller = caller_party(context)
        if caller != self.node.name:
            raise ProtocolError(f"{what} go only to the lender's own operator, not {caller!r}")
