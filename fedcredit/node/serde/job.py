"""Job lifecycle messages (job.proto): Setup, EndEpoch, Restore, SaveModel."""

from __future__ import annotations

from fedcredit.node.results import EpochLosses, SetupSummary
from fedcredit.proto.v1 import common_pb2, job_pb2


def setup_reply(env: common_pb2.Envelope, summary: SetupSummary) -> job_pb2.SetupReply:
    return job_pb2.SetupReply(
        env=env,
        rows=summary.rows,
        features=summary.features,
        checkpoints=summary.checkpoints,
        data_hash=summary.data_hash,
        feature_names=summary.feature_names,
    )


def keep_epoch_of(request: job_pb2.StepRequest) -> int | None:
    """EndEpoch's best epoch so far (sent as 1 + epoch; 0 is none)."""
    return request.keep_epoch - 1 if request.keep_epoch else None


def epoch_reply(env: common_pb2.Envelope, losses: EpochLosses) -> job_pb2.EpochReply:
    reply = job_pb2.EpochReply(env=env)
    if losses.train is not None:
        reply.has_loss, reply.train_loss = True, losses.train
    if losses.validation is not None:
        reply.has_validation, reply.validation_loss = True, losses.validation
    return reply


def save_reply(env: common_pb2.Envelope, manifest_json: str) -> job_pb2.SaveReply:
    return job_pb2.SaveReply(env=env, manifest_json=manifest_json)
