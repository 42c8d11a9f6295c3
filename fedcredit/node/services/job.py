"""The Job service of a data party's node (job.proto): setup, checkpoints, the model part."""

from __future__ import annotations

import grpc

from fedcredit.node.serde import common, job
from fedcredit.node.services.errors import rpc
from fedcredit.node.services.steps import DriverSteps
from fedcredit.proto.v1 import common_pb2, job_pb2, job_pb2_grpc


class JobServicer(job_pb2_grpc.JobServicer):
    def __init__(self, steps: DriverSteps) -> None:
        self.steps = steps
        self.node = steps.node

    @rpc
    def Setup(
        self, request: job_pb2.SetupRequest, context: grpc.ServicerContext
    ) -> job_pb2.SetupReply:
        self.steps.from_driver(context)
        header = common.header_of(request.env)
        summary = self.node.setup(
            header, request.public_key_json, dict(request.peers), request.resume, request.state_dir
        )
        # Only a setup that succeeded moves the node to the new job.
        self.steps.guard.start_job(header.job_id)
        return job.setup_reply(request.env, summary)

    @rpc
    def EndEpoch(
        self, request: job_pb2.StepRequest, context: grpc.ServicerContext
    ) -> job_pb2.EpochReply:
        keep = job.keep_epoch_of(request)
        losses = self.steps.run(
            context, "EndEpoch", request.env, lambda h: self.node.end_epoch(h, keep)
        )
        return job.epoch_reply(request.env, losses)

    @rpc
    def Restore(
        self, request: job_pb2.StepRequest, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        epoch = request.resume_epoch
        self.steps.run(context, "Restore", request.env, lambda _: self.node.restore(epoch))
        return common.ack(request.env)

    @rpc
    def SaveModel(
        self, request: job_pb2.SaveRequest, context: grpc.ServicerContext
    ) -> job_pb2.SaveReply:
        folder = request.model_dir
        manifest = self.steps.run(
            context, "SaveModel", request.env, lambda _: self.node.save_model(folder)
        )
        return job.save_reply(request.env, manifest)
