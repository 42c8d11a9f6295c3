"""The Coordinator service (coordinator.proto): key holder and decryptor of masked values.

``gate`` admits each decryption against the job's schedule (``decryption.coordinator_gate``);
without one every decryption is refused.
"""

from __future__ import annotations

import grpc

from fedcredit.errors import ProtocolError
from fedcredit.node.serde import common
from fedcredit.node.serde import keys as wire
from fedcredit.node.services.errors import rpc
from fedcredit.node.transport.identity import caller_party
from fedcredit.proto.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc
from fedcredit.protocol.guard import Header
from fedcredit.protocol.keyholder import KeyHolder
from fedcredit.protocol.schedule import DecryptionGate


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServicer):
    def __init__(
        self, keys: KeyHolder, gate: DecryptionGate | None = None, driver: str = "coordinator"
    ) -> None:
        self.keys = keys
        self.gate = gate if gate is not None else DecryptionGate(None, driver=driver)
        self.driver = driver

    def _check_job(self, env: common_pb2.Envelope) -> None:
        if env.job_id != self.keys.job_id:
            raise ProtocolError(
                f"message for job {env.job_id!r}, the coordinator runs {self.keys.job_id!r}"
            )

    @rpc
    def StartJob(
        self, request: coordinator_pb2.StartJobRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.PublicKeyReply:
        caller = caller_party(context)
        if caller != self.driver:
            raise ProtocolError(f"only the coordinator's operator starts a job, not {caller!r}")
        key = self.keys.start_job(request.env.job_id, request.key_bits)
        self.gate.start_job(request.env.job_id)
        return wire.public_key_reply(request.env, key)

    @rpc
    def GetPublicKey(
        self, request: coordinator_pb2.PublicKeyRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.PublicKeyReply:
        env = common.envelope(Header(self.keys.job_id or "", 0, 0, 0))
        return wire.public_key_reply(env, self.keys.public_key())

    @rpc
    def SetSchedule(
        self, request: coordinator_pb2.ScheduleRequest, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        caller = caller_party(context)
        self._check_job(request.env)
        self.gate.register(caller, request.env.job_id, wire.schedule_of(request))
        return common.ack(request.env)

    @rpc
    def DecryptMasked(
        self, request: coordinator_pb2.DecryptRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.DecryptReply:
        caller = caller_party(context)
        self._check_job(request.env)
        packed = common.packed_from_proto(request.packed, self.keys.public_key())
        self.gate.admit(wire.ticket(caller, request, request.env, request.phase, packed))
        slots = self.keys.decrypt_masked(packed)
        return wire.decrypt_reply(request.env, slots, packed.slot_bits)

    @rpc
    def DecryptLoss(
        self, request: coordinator_pb2.LossRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.LossReply:
        caller = caller_party(context)
        self._check_job(request.env)
        scores, sums = wire.loss_parts(request, self.keys.public_key())
        self.gate.admit(wire.ticket(caller, request, request.env, "loss", scores, sums))
        return wire.loss_reply(request.env, self.keys.decrypt_loss(scores, sums))
