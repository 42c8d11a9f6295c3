"""The Psi service of a data party's node (psi.proto): its part of the PSI ring."""

from __future__ import annotations

import grpc

from fedcredit.node.serde import common, psi
from fedcredit.node.services.errors import rpc
from fedcredit.node.services.steps import DriverSteps
from fedcredit.node.transport.identity import caller_party
from fedcredit.proto.v1 import common_pb2, psi_pb2, psi_pb2_grpc


class PsiServicer(psi_pb2_grpc.PsiServicer):
    def __init__(self, steps: DriverSteps) -> None:
        self.steps = steps
        self.node = steps.node

    @rpc
    def PsiBlind(
        self, request: psi_pb2.PsiRequest, context: grpc.ServicerContext
    ) -> psi_pb2.PsiPoints:
        points = self.steps.run(context, "PsiBlind", request.env, lambda _: self.node.psi_blind())
        return psi.points_message(request.env, self.node.name, points, suite=True)

    @rpc
    def PsiApply(
        self, request: psi_pb2.PsiPoints, context: grpc.ServicerContext
    ) -> psi_pb2.PsiPoints:
        owner = request.owner
        points = self.steps.run(
            context,
            f"PsiApply:{owner}",
            request.env,
            lambda _: self.node.psi_apply(owner, psi.points_of(request)),
        )
        return psi.points_message(request.env, owner, points)

    @rpc
    def PsiCommit(
        self, request: psi_pb2.PsiCommitment, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        # From a peer party, never from the driver: the ledger checks the caller's place.
        caller = caller_party(context)
        self.steps.guard.check_job(common.header_of(request.env))
        self.node.psi_commit(caller, psi.commitment_of(request))
        return common.ack(request.env)

    @rpc
    def PsiFinish(
        self, request: psi_pb2.PsiPoints, context: grpc.ServicerContext
    ) -> psi_pb2.PsiPoints:
        points = self.steps.run(
            context,
            "PsiFinish",
            request.env,
            lambda _: self.node.psi_finish(psi.points_of(request)),
        )
        return psi.points_message(request.env, self.node.name, points)

    @rpc
    def PsiAlign(
        self, request: psi_pb2.PsiPoints, context: grpc.ServicerContext
    ) -> psi_pb2.AlignReply:
        alignment = self.steps.run(
            context, "PsiAlign", request.env, lambda _: self.node.psi_align(psi.points_of(request))
        )
        return psi.align_reply(request.env, alignment)
