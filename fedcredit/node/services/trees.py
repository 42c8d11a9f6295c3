"""The Trees service of a data party's node (trees.proto): the driver's rounds on the lender,
the lender's calls on its partners. Each method converts, calls one ``TreesJob`` method and
converts back."""

from __future__ import annotations

import grpc

from fedcredit.node.serde import common, logistic, trees
from fedcredit.node.services.errors import rpc
from fedcredit.node.services.steps import DriverSteps
from fedcredit.node.transport.identity import caller_party
from fedcredit.node.trees_scoring import partner_answer
from fedcredit.node.trees_state import TreesJob
from fedcredit.proto.v1 import (
    common_pb2,
    job_pb2,
    logistic_pb2,
    scoring_pb2,
    trees_pb2,
    trees_pb2_grpc,
)


class TreesServicer(trees_pb2_grpc.TreesServicer):
    def __init__(self, steps: DriverSteps, job: TreesJob) -> None:
        self.steps = steps
        self.job = job

    # -- the driver's rounds ---------------------------------------------------------------------
    @rpc
    def SendGradients(
        self, request: job_pb2.StepRequest, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        self.steps.run(context, "SendGradients", request.env, self.job.gradients)
        return common.ack(request.env)

    @rpc
    def ChooseSplits(
        self, request: job_pb2.StepRequest, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        self.steps.run(context, "ChooseSplits", request.env, self.job.splits)
        return common.ack(request.env)

    @rpc
    def EndTree(
        self, request: job_pb2.StepRequest, context: grpc.ServicerContext
    ) -> trees_pb2.TreeReply:
        end = self.steps.run(context, "EndTree", request.env, self.job.end_tree)
        return trees.tree_reply(request.env, end.stop, end.validation_loss, end.kept)

    @rpc
    def Evaluate(
        self, request: job_pb2.StepRequest, context: grpc.ServicerContext
    ) -> logistic_pb2.EvaluateReply:
        evaluation = self.steps.run(context, "TreesEvaluate", request.env, self.job.evaluate)
        return logistic.evaluate_reply(request.env, evaluation)

    # -- the lender's calls ----------------------------------------------------------------------
    @rpc
    def SetTreesKey(
        self, request: trees_pb2.TreesKey, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        caller, key = caller_party(context), trees.key_of(request)
        self.steps.run_for(
            caller, "SetTreesKey", request.env, lambda _: self.job.set_key(caller, key)
        )
        return common.ack(request.env)

    @rpc
    def BuildHistograms(
        self, request: trees_pb2.Gradients, context: grpc.ServicerContext
    ) -> trees_pb2.Histograms:
        caller = caller_party(context)
        answer, key = self.steps.run_for(
            caller,
            "BuildHistograms",
            request.env,
            lambda _: self.job.histograms(
                caller, request.tree, request.level,
                lambda key, expected: trees.gradients_of(request, key, expected),
            ),
        )  # fmt: skip
        return trees.histograms_message(request.env, answer, key)

    @rpc
    def ApplySplits(
        self, request: trees_pb2.MixChoice, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        caller, choice = caller_party(context), trees.choice_of(request)
        self.steps.run_for(
            caller, "ApplySplits", request.env, lambda _: self.job.apply_splits(caller, choice)
        )
        return common.ack(request.env)

    @rpc
    def TreeLeaves(
        self, request: trees_pb2.TreeRef, context: grpc.ServicerContext
    ) -> trees_pb2.Leaves:
        caller = caller_party(context)
        leaves = self.steps.run_for(
            caller, "TreeLeaves", request.env, lambda _: self.job.leaves(caller, request.tree)
        )
        return trees.leaves_message(request.env, leaves)

    @rpc
    def Sides(
        self, request: trees_pb2.SideRequest, context: grpc.ServicerContext
    ) -> trees_pb2.SidesReply:
        caller, picks = caller_party(context), trees.side_request_of(request)
        sides = self.steps.run_for(
            caller, "Sides", request.env, lambda _: self.job.sides(caller, picks)
        )
        return trees.sides_message(request.env, sides)

    # -- scoring with a saved model (the lender asks; docs/TREES.md, "Scoring") ------------------
    @rpc
    def ScoreTrees(
        self, request: scoring_pb2.ScoreIds, context: grpc.ServicerContext
    ) -> trees_pb2.TreesAnswer:
        caller = caller_party(context)
        answer = partner_answer(self.job.node, caller, list(request.ids), request.env.job_id)
        return trees.answer_message(request.env, answer)
