"""The Psi service of a data party's node (psi.proto): its part of the PSI ring.

Lists travel whole or in chunks (``fedcredit.node.psi_lists``): a step runs on the whole list
once its last chunk is in, and an answer above one chunk leaves through ``PsiFetch``. Every
chunk is a step of its own for the sequence guard, so a retried chunk is not added twice.
"""

from __future__ import annotations

import grpc

from fedcredit.node.psi_lists import chunk_points
from fedcredit.node.serde import common, psi
from fedcredit.node.services.errors import rpc
from fedcredit.node.services.steps import DriverSteps
from fedcredit.node.transport.identity import caller_party
from fedcredit.proto.v1 import common_pb2, psi_pb2, psi_pb2_grpc
from fedcredit.psi import PointBuffer

Answer = tuple[bytes, int]
"""A step's reply: its first chunk of points, and the points in the whole answer."""


class PsiServicer(psi_pb2_grpc.PsiServicer):
    def __init__(self, steps: DriverSteps) -> None:
        self.steps = steps
        self.node = steps.node

    def _whole(self, step: str, owner: str, request: psi_pb2.PsiPoints) -> PointBuffer | None:
        """The request's list, or None while chunks of it are still to come."""
        if request.total == 0:  # the whole list in this message
            return psi.points_of(request)
        psi.check_count(request)
        bound = self.node.psi_bound(step, owner)
        lists = self.node.job.lists
        blob = lists.receive(step, owner, request.offset, request.total, request.points, bound)
        return None if blob is None else psi.split(blob)

    def _answer(self, step: str, owner: str, points: PointBuffer, chunk: int) -> Answer:
        blob = points.data  # one buffer already: held as it is (issue 16)
        return self.node.job.lists.hold(step, owner, blob, chunk_points(chunk)), len(points)

    def _reply(self, env: common_pb2.Envelope, owner: str, answer: Answer) -> psi_pb2.PsiPoints:
        return psi.chunk_message(env, owner, answer[0], answer[1])

    @rpc
    def PsiBlind(
        self, request: psi_pb2.PsiRequest, context: grpc.ServicerContext
    ) -> psi_pb2.PsiPoints:
        name = self.node.name
        first, total = self.steps.run(
            context,
            "PsiBlind",
            request.env,
            lambda _: self._answer("PsiBlind", name, self.node.psi_blind(), request.chunk),
        )
        return psi.chunk_message(request.env, name, first, total, suite=True)

    @rpc
    def PsiApply(
        self, request: psi_pb2.PsiPoints, context: grpc.ServicerContext
    ) -> psi_pb2.PsiPoints:
        owner = request.owner

        def step() -> Answer:
            points = self._whole("PsiApply", owner, request)
            if points is None:
                return b"", 0
            return self._answer(
                "PsiApply", owner, self.node.psi_apply(owner, points), request.chunk
            )

        answer = self.steps.run(context, f"PsiApply:{owner}", request.env, lambda _: step())
        return self._reply(request.env, owner, answer)

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
        name = self.node.name

        def step() -> Answer:
            points = self._whole("PsiFinish", name, request)
            if points is None:
                return b"", 0
            return self._answer("PsiFinish", name, self.node.psi_finish(points), request.chunk)

        answer = self.steps.run(context, "PsiFinish", request.env, lambda _: step())
        return self._reply(request.env, name, answer)

    @rpc
    def PsiAlign(
        self, request: psi_pb2.PsiPoints, context: grpc.ServicerContext
    ) -> psi_pb2.AlignReply:
        def step() -> psi_pb2.AlignReply:
            points = self._whole("PsiAlign", self.node.name, request)
            if points is None:
                return psi_pb2.AlignReply(env=request.env)  # more chunks to come
            return psi.align_reply(request.env, self.node.psi_align(points))

        return self.steps.run(context, "PsiAlign", request.env, lambda _: step())

    @rpc
    def PsiFetch(
        self, request: psi_pb2.PsiFetchRequest, context: grpc.ServicerContext
    ) -> psi_pb2.PsiPoints:
        step, owner, offset = request.step, request.owner, request.offset

        def fetch() -> tuple[bytes, int]:
            return self.node.job.lists.fetch(step, owner, offset, chunk_points(request.chunk))

        chunk, total = self.steps.run(
            context, f"PsiFetch:{step}:{owner}", request.env, lambda _: fetch()
        )
        return psi.chunk_message(request.env, owner, chunk, total, offset=offset)
