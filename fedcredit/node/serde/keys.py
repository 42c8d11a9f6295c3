"""The coordinator's messages (coordinator.proto): keys, the schedule, masked decryptions.

``ticket`` is a decryption request as the gate judges it (``fedcredit.protocol.schedule``):
who, which step, when, and the sizes of its packed parts, with a digest of the whole message.
"""

from __future__ import annotations

import hashlib

from google.protobuf.message import Message

from fedcredit.crypto import PackedCiphertexts, PublicKey
from fedcredit.node.serde.common import (
    ints_from_bytes,
    ints_to_bytes,
    packed_from_proto,
    packed_to_proto,
    slot_width,
)
from fedcredit.proto.v1 import common_pb2, coordinator_pb2
from fedcredit.protocol.schedule import Schedule, Ticket


def public_key_reply(env: common_pb2.Envelope, key: PublicKey) -> coordinator_pb2.PublicKeyReply:
    return coordinator_pb2.PublicKeyReply(
        env=env, public_key_json=key.to_json(), fingerprint=key.fingerprint
    )


def ticket(
    caller: str, request: Message, env: common_pb2.Envelope, step: str, *parts: PackedCiphertexts
) -> Ticket:
    """The request as the gate judges it: who, which step, when, and its packed parts' sizes."""
    digest = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
    return Ticket(
        caller=caller,
        job_id=env.job_id,
        step=step,
        epoch=env.epoch,
        batch=env.batch,
        shape=tuple((p.count, p.value_bits) for p in parts),
        digest=digest,
    )


def schedule_of(request: coordinator_pb2.ScheduleRequest) -> Schedule:
    return Schedule(
        train_rows=request.train_rows,
        validation_rows=request.validation_rows,
        test_rows=request.test_rows,
        widths=dict(request.widths),
    )


def decrypt_request(
    env: common_pb2.Envelope, packed: PackedCiphertexts, key: PublicKey, phase: str
) -> coordinator_pb2.DecryptRequest:
    return coordinator_pb2.DecryptRequest(env=env, packed=packed_to_proto(packed, key), phase=phase)


def decrypt_reply(
    env: common_pb2.Envelope, slots: list[int], slot_bits: int
) -> coordinator_pb2.DecryptReply:
    width = slot_width(slot_bits)
    return coordinator_pb2.DecryptReply(
        env=env, slots=ints_to_bytes(slots, width), slot_bytes=width, count=len(slots)
    )


def slots_of(reply: coordinator_pb2.DecryptReply) -> list[int]:
    return ints_from_bytes(reply.slots, reply.slot_bytes, reply.count)


def loss_request(
    env: common_pb2.Envelope, scores: PackedCiphertexts, sums: PackedCiphertexts, key: PublicKey
) -> coordinator_pb2.LossRequest:
    return coordinator_pb2.LossRequest(
        env=env,
        masked_scores=packed_to_proto(scores, key),
        masked_sums=packed_to_proto(sums, key),
    )


def loss_parts(
    request: coordinator_pb2.LossRequest, key: PublicKey
) -> tuple[PackedCiphertexts, PackedCiphertexts]:
    return packed_from_proto(request.masked_scores, key), packed_from_proto(
        request.masked_sums, key
    )


def loss_reply(env: common_pb2.Envelope, total: int) -> coordinator_pb2.LossReply:
    return coordinator_pb2.LossReply(
        env=env, total=total.to_bytes((total.bit_length() + 7) // 8 or 1, "big")
    )


def loss_total(reply: coordinator_pb2.LossReply) -> int:
    return int.from_bytes(reply.total, "big")
