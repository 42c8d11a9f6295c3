"""The Logistic service of a data party's node (logistic.proto): the training steps."""

from __future__ import annotations

import grpc

from fedcredit.node.serde import common, logistic
from fedcredit.node.services.errors import rpc
from fedcredit.node.services.steps import DriverSteps
from fedcredit.node.transport.identity import caller_party
from fedcredit.proto.v1 import common_pb2, job_pb2, logistic_pb2, logistic_pb2_grpc


class LogisticServicer(logistic_pb2_grpc.LogisticServicer):
    def __init__(self, steps: DriverSteps) -> None:
        self.steps = steps
        self.node = steps.node

    @rpc
    def ComputePartial(
        self, request: job_pb2.StepRequest, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        phase = request.phase
        self.steps.run(
            context, "ComputePartial", request.env, lambda h: self.node.compute_partial(h, phase)
        )
        return common.ack(request.env)

    @rpc
    def PutPartial(
        self, request: common_pb2.CipherMessage, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        caller = caller_party(context)
        incoming = common.incoming_vector(request.vector)
        self.steps.run_for(
            caller,
            "PutPartial",
            request.env,
            lambda h: self.node.put_partial(caller, h, request.phase, incoming),
        )
        return common.ack(request.env)

    @rpc
    def ComputeResidual(
        self, request: job_pb2.StepRequest, context: grpc.ServicerContext
    ) -> logistic_pb2.ResidualReply:
        phase, want_loss = request.phase, request.want_loss
        loss = self.steps.run(
            context,
            "ComputeResidual",
            request.env,
            lambda h: self.node.compute_residual(h, phase, want_loss),
        )
        return logistic.residual_reply(request.env, loss)

    @rpc
    def PutResidual(
        self, request: common_pb2.CipherMessage, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        caller = caller_party(context)
        incoming = common.incoming_vector(request.vector)
        self.steps.run_for(
            caller,
            "PutResidual",
            request.env,
            lambda h: self.node.put_residual(caller, h, incoming),
        )
        return common.ack(request.env)

    @rpc
    def ComputeGradient(
        self, request: job_pb2.StepRequest, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        self.steps.run(context, "ComputeGradient", request.env, self.node.compute_gradient)
        return common.ack(request.env)

    @rpc
    def Evaluate(
        self, request: job_pb2.StepRequest, context: grpc.ServicerContext
    ) -> logistic_pb2.EvaluateReply:
        evaluation = self.steps.run(context, "Evaluate", request.env, self.node.evaluate)
        return logistic.evaluate_reply(request.env, evaluation)
