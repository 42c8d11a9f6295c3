"""Binning messages (binning.proto): the lender's encrypted labels, partners' encrypted bin
sums, and the lender's bin plans."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fedcredit.crypto import EncryptedVector, PublicKey
from fedcredit.errors import ProtocolError
from fedcredit.node.serde.common import packed_from_proto, packed_to_proto, vector_to_proto
from fedcredit.proto.v1 import binning_pb2, common_pb2
from fedcredit.protocol.binning import ColumnPlan, EncryptedBinSums


def label_vectors(
    envs: Mapping[str, common_pb2.Envelope], labels: EncryptedVector
) -> dict[str, binning_pb2.LabelVector]:
    """The lender's encrypted labels for each partner (encoded once), each in its envelope."""
    key_json, vector = labels.public_key.to_json(), vector_to_proto(labels)
    return {
        name: binning_pb2.LabelVector(env=env, public_key_json=key_json, labels=vector)
        for name, env in envs.items()
    }


def bin_sums_message(
    env: common_pb2.Envelope, sums: EncryptedBinSums, label_key: PublicKey
) -> binning_pb2.BinSums:
    return binning_pb2.BinSums(
        env=env,
        columns=[
            binning_pb2.ColumnCounts(name=n, rows=list(r), unordered=u)
            for n, r, u in zip(sums.names, sums.rows, sums.unordered, strict=True)
        ],
        events=packed_to_proto(sums.events, label_key),
        noisy=sums.noisy,
    )


def bin_sums_of(message: binning_pb2.BinSums, key: PublicKey) -> EncryptedBinSums:
    """A partner's bin sums, its packed ciphertexts validated under the lender's ``key``."""
    return EncryptedBinSums(
        names=tuple(c.name for c in message.columns),
        rows=tuple(tuple(int(v) for v in c.rows) for c in message.columns),
        events=packed_from_proto(message.events, key),
        noisy=message.noisy,
        unordered=tuple(c.unordered for c in message.columns),
    )


def plan_to_proto(plan: ColumnPlan) -> binning_pb2.ColumnPlan:
    group_of_bin = [0] * sum(len(g) for g in plan.groups)
    for index, group in enumerate(plan.groups):
        for k in group:
            group_of_bin[k] = index
    return binning_pb2.ColumnPlan(
        name=plan.name, keep=plan.keep, group_of_bin=group_of_bin, fold=list(plan.fold)
    )


def plan_from_proto(message: binning_pb2.ColumnPlan) -> ColumnPlan:
    groups: dict[int, list[int]] = {}
    for k, g in enumerate(message.group_of_bin):
        groups.setdefault(int(g), []).append(k)
    if sorted(groups) != list(range(len(groups))):
        raise ProtocolError(f"bin plan of {message.name!r}: group numbers are not 0..n-1")
    ordered = tuple(tuple(groups[g]) for g in range(len(groups)))
    return ColumnPlan(
        message.name, bool(message.keep), ordered, tuple(int(k) for k in message.fold)
    )


def bin_plan(env: common_pb2.Envelope, plans: Sequence[ColumnPlan]) -> binning_pb2.BinPlan:
    return binning_pb2.BinPlan(env=env, columns=[plan_to_proto(p) for p in plans])


def plans_of(message: binning_pb2.BinPlan) -> list[ColumnPlan]:
    return [plan_from_proto(c) for c in message.columns]


def plan_reply(env: common_pb2.Envelope, features: int) -> binning_pb2.PlanReply:
    return binning_pb2.PlanReply(env=env, features=features)


def select_reply(
    env: common_pb2.Envelope, report_json: str, features: Mapping[str, int]
) -> binning_pb2.SelectReply:
    return binning_pb2.SelectReply(env=env, report_json=report_json, features=dict(features))
