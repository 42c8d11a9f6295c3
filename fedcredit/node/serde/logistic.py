"""Logistic regression's training messages (logistic.proto)."""

from __future__ import annotations

import json

from fedcredit.node.results import Evaluation
from fedcredit.proto.v1 import common_pb2, logistic_pb2


def residual_reply(env: common_pb2.Envelope, loss: float | None) -> logistic_pb2.ResidualReply:
    reply = logistic_pb2.ResidualReply(env=env)
    if loss is not None:
        reply.has_loss, reply.loss = True, loss
    return reply


def evaluate_reply(env: common_pb2.Envelope, evaluation: Evaluation) -> logistic_pb2.EvaluateReply:
    return logistic_pb2.EvaluateReply(
        env=env, metrics_json=json.dumps(dict(evaluation.metrics)), files=dict(evaluation.files)
    )
