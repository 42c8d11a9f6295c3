"""Thin gRPC servicers: message in, one domain call, message out, errors to status codes.

The caller's party name always comes from its client certificate (``caller_party``), never from
a request field. Domain errors map to status codes; their one-line text is what the peer sees
(it names a party, a step or a check, never a value).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from fedcredit.errors import (
    ConfigError,
    CryptoError,
    DataError,
    FedCreditError,
    PartyUnavailableError,
    ProtocolError,
    QuotaError,
    StorageError,
)
from fedcredit.node import convert, decryption
from fedcredit.node.client import RemoteCallError
from fedcredit.node.identity import caller_party
from fedcredit.node.party_node import PartyNode
from fedcredit.node.scoring import DebtCheck, score_applicants
from fedcredit.proto.v1 import (
    common_pb2,
    coordinator_pb2,
    coordinator_pb2_grpc,
    party_pb2,
    party_pb2_grpc,
)
from fedcredit.protocol.guard import SequenceGuard
from fedcredit.protocol.keyholder import KeyHolder
from fedcredit.protocol.schedule import DecryptionGate, DecryptionRefused
from fedcredit.psi import POINT_BYTES
from fedcredit.psi import SUITE as PSI_SUITE
from fedcredit.psi.ring import Commitment

log = logging.getLogger("fedcredit.node")

R = TypeVar("R")

STATUS: list[tuple[type[FedCreditError], grpc.StatusCode]] = [
    (PartyUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (DecryptionRefused, grpc.StatusCode.PERMISSION_DENIED),
    (QuotaError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (CryptoError, grpc.StatusCode.INVALID_ARGUMENT),
    (DataError, grpc.StatusCode.INVALID_ARGUMENT),
    (ProtocolError, grpc.StatusCode.FAILED_PRECONDITION),
    (ConfigError, grpc.StatusCode.FAILED_PRECONDITION),
    (StorageError, grpc.StatusCode.FAILED_PRECONDITION),
]


def status_for(error: FedCreditError) -> grpc.StatusCode:
    if isinstance(error, RemoteCallError) and error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return error.code  # a partner's quota: the lender's operator sees the same status
    for kind, code in STATUS:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def rpc(method: Callable[..., R]) -> Callable[..., R]:
    """Map domain errors of a servicer method to gRPC status codes with a one-line message."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> R:
        try:
            return method(self, request, context)
        except FedCreditError as exc:
            log.warning("%s refused: %s", method.__name__, exc)
            context.abort(status_for(exc), str(exc))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            # Malformed input that slipped past validation: opaque to the peer, logged here.
            log.warning("%s: bad request: %r", method.__name__, exc)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{method.__name__}: malformed request")
        raise AssertionError("unreachable")  # context.abort raises

    return wrapper


def points_of(message: party_pb2.PsiPoints) -> list[bytes]:
    data = message.points
    if message.count * POINT_BYTES != len(data):
        raise CryptoError(f"PSI message holds {len(data)} bytes for {message.count} points")
    # Each point is checked where it is used: PSIParty.relay/finish and the coordinator.
    return [data[i : i + POINT_BYTES] for i in range(0, len(data), POINT_BYTES)]


def points_message(
    env: common_pb2.Envelope, owner: str, points: list[bytes]
) -> party_pb2.PsiPoints:
    return party_pb2.PsiPoints(env=env, owner=owner, points=b"".join(points), count=len(points))


class PartyServicer(party_pb2_grpc.PartyServicer):
    """The Party service of a data party's node."""

    def __init__(
        self, node: PartyNode, driver: str = "coordinator", debt: DebtCheck | None = None
    ) -> None:
        self.node = node
        self.driver = driver
        self.debt = debt
        """A lender of a loan-stacking consortium: scores carry the two aggregates."""
        self.guard: SequenceGuard[Any] = SequenceGuard()

    def _from_driver(self, context: grpc.ServicerContext) -> str:
        caller = caller_party(context)
        if caller != self.driver:
            raise ProtocolError(f"only the coordinator drives a job; {caller!r} may not")
        return caller

    def _step(
        self,
        context: grpc.ServicerContext,
        method: str,
        env: common_pb2.Envelope,
        fn: Callable[[], R],
    ) -> R:
        caller = self._from_driver(context)
        result: R = self.guard.run_once(caller, method, convert.header_of(env), fn)
        return result

    @rpc
    def Setup(
        self, request: party_pb2.SetupRequest, context: grpc.ServicerContext
    ) -> party_pb2.SetupReply:
        self._from_driver(context)
        header = convert.header_of(request.env)
        reply = self.node.setup(
            header, request.public_key_json, dict(request.peers), request.resume, request.state_dir
        )
        # Only a setup that succeeded moves the node to the new job.
        self.guard.start_job(header.job_id)
        reply.env.CopyFrom(request.env)
        return reply

    @rpc
    def PsiBlind(
        self, request: party_pb2.PsiRequest, context: grpc.ServicerContext
    ) -> party_pb2.PsiPoints:
        points = self._step(context, "PsiBlind", request.env, self.node.psi_blind)
        reply = points_message(request.env, self.node.name, points)
        reply.suite = PSI_SUITE
        return reply

    @rpc
    def PsiApply(
        self, request: party_pb2.PsiPoints, context: grpc.ServicerContext
    ) -> party_pb2.PsiPoints:
        points = self._step(
            context,
            f"PsiApply:{request.owner}",
            request.env,
            lambda: self.node.psi_apply(request.owner, points_of(request)),
        )
        return points_message(request.env, request.owner, points)

    @rpc
    def PsiCommit(
        self, request: party_pb2.PsiCommitment, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        # From a peer party, never from the driver: the ledger checks the caller's place.
        caller = caller_party(context)
        self.guard.check_job(convert.header_of(request.env))
        commitment = Commitment(request.owner, request.hop, request.count, bytes(request.digest))
        self.node.psi_commit(caller, commitment)
        return common_pb2.Ack(env=request.env)

    @rpc
    def PsiFinish(
        self, request: party_pb2.PsiPoints, context: grpc.ServicerContext
    ) -> party_pb2.PsiPoints:
        points = self._step(
            context, "PsiFinish", request.env, lambda: self.node.psi_finish(points_of(request))
        )
        return points_message(request.env, self.node.name, points)

    @rpc
    def PsiAlign(
        self, request: party_pb2.PsiPoints, context: grpc.ServicerContext
    ) -> party_pb2.AlignReply:
        reply = self._step(
            context, "PsiAlign", request.env, lambda: self.node.psi_align(points_of(request))
        )
        reply.env.CopyFrom(request.env)
        return reply

    @rpc
    def ComputePartial(
        self, request: party_pb2.StepRequest, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        header = convert.header_of(request.env)
        self._step(
            context,
            "ComputePartial",
            request.env,
            lambda: self.node.compute_partial(header, request.phase),
        )
        return common_pb2.Ack(env=request.env)

    @rpc
    def PutPartial(
        self, request: party_pb2.CipherMessage, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        caller = caller_party(context)
        header = convert.header_of(request.env)
        self.guard.run_once(
            caller,
            "PutPartial",
            header,
            lambda: self.node.put_partial(caller, header, request.phase, request.vector),
        )
        return common_pb2.Ack(env=request.env)

    @rpc
    def ComputeResidual(
        self, request: party_pb2.StepRequest, context: grpc.ServicerContext
    ) -> party_pb2.ResidualReply:
        header = convert.header_of(request.env)
        loss = self._step(
            context,
            "ComputeResidual",
            request.env,
            lambda: self.node.compute_residual(header, request.phase, request.want_loss),
        )
        reply = party_pb2.ResidualReply(env=request.env)
        if loss is not None:
            reply.has_loss, reply.loss = True, loss
        return reply

    @rpc
    def PutResidual(
        self, request: party_pb2.CipherMessage, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        caller = caller_party(context)
        header = convert.header_of(request.env)
        self.guard.run_once(
            caller,
            "PutResidual",
            header,
            lambda: self.node.put_residual(caller, header, request.vector),
        )
        return common_pb2.Ack(env=request.env)

    @rpc
    def ComputeGradient(
        self, request: party_pb2.StepRequest, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        header = convert.header_of(request.env)
        self._step(
            context, "ComputeGradient", request.env, lambda: self.node.compute_gradient(header)
        )
        return common_pb2.Ack(env=request.env)

    @rpc
    def EndEpoch(
        self, request: party_pb2.StepRequest, context: grpc.ServicerContext
    ) -> party_pb2.EpochReply:
        header = convert.header_of(request.env)
        keep = request.keep_epoch - 1 if request.keep_epoch else None
        return self._step(
            context, "EndEpoch", request.env, lambda: self.node.end_epoch(header, keep)
        )

    @rpc
    def Restore(
        self, request: party_pb2.StepRequest, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        self._step(context, "Restore", request.env, lambda: self.node.restore(request.resume_epoch))
        return common_pb2.Ack(env=request.env)

    @rpc
    def Evaluate(
        self, request: party_pb2.StepRequest, context: grpc.ServicerContext
    ) -> party_pb2.EvaluateReply:
        header = convert.header_of(request.env)
        return self._step(context, "Evaluate", request.env, lambda: self.node.evaluate(header))

    @rpc
    def SaveModel(
        self, request: party_pb2.SaveRequest, context: grpc.ServicerContext
    ) -> party_pb2.SaveReply:
        manifest = self._step(
            context, "SaveModel", request.env, lambda: self.node.save_model(request.model_dir)
        )
        return party_pb2.SaveReply(env=request.env, manifest_json=manifest)

    @rpc
    def PartialScore(
        self, request: party_pb2.ScoreIds, context: grpc.ServicerContext
    ) -> party_pb2.CipherMessage:
        caller = caller_party(context)
        peers = self.node.scoring_peers()
        vector = self.node.partial_score(caller, list(request.ids), peers, request.env.job_id)
        return party_pb2.CipherMessage(env=request.env, phase="score", vector=vector)

    @rpc
    def Score(
        self, request: party_pb2.ScoreRequest, context: grpc.ServicerContext
    ) -> party_pb2.ScoreReply:
        caller = caller_party(context)
        if caller != self.node.name:
            raise ProtocolError(f"scores go only to the lender's own operator, not {caller!r}")
        return score_applicants(self.node, list(request.ids), debt=self.debt)


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServicer):
    """The Coordinator service: key holder and decryptor of masked values.

    ``gate`` admits each decryption against the job's schedule (``decryption.coordinator_gate``);
    without one every decryption is refused.
    """

    def __init__(
        self, keys: KeyHolder, gate: DecryptionGate | None = None, driver: str = "coordinator"
    ) -> None:
        self.keys = keys
        self.gate = gate if gate is not None else DecryptionGate(None, driver=driver)
        self.driver = driver

    @rpc
    def StartJob(
        self, request: coordinator_pb2.StartJobRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.PublicKeyReply:
        caller = caller_party(context)
        if caller != self.driver:
            raise ProtocolError(f"only the coordinator's operator starts a job, not {caller!r}")
        key = self.keys.start_job(request.env.job_id, request.key_bits)
        self.gate.start_job(request.env.job_id)
        return coordinator_pb2.PublicKeyReply(
            env=request.env, public_key_json=key.to_json(), fingerprint=key.fingerprint
        )

    @rpc
    def GetPublicKey(
        self, request: coordinator_pb2.PublicKeyRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.PublicKeyReply:
        key = self.keys.public_key()
        env = common_pb2.Envelope(job_id=self.keys.job_id or "")
        return coordinator_pb2.PublicKeyReply(
            env=env, public_key_json=key.to_json(), fingerprint=key.fingerprint
        )

    def _check_job(self, env: common_pb2.Envelope) -> None:
        if env.job_id != self.keys.job_id:
            raise ProtocolError(
                f"message for job {env.job_id!r}, the coordinator runs {self.keys.job_id!r}"
            )

    @rpc
    def SetSchedule(
        self, request: coordinator_pb2.ScheduleRequest, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        caller = caller_party(context)
        self._check_job(request.env)
        self.gate.register(caller, request.env.job_id, decryption.schedule_of(request))
        return common_pb2.Ack(env=request.env)

    @rpc
    def DecryptMasked(
        self, request: coordinator_pb2.DecryptRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.DecryptReply:
        caller = caller_party(context)
        self._check_job(request.env)
        packed = convert.packed_from_proto(request.packed, self.keys.public_key())
        self.gate.admit(decryption.ticket(caller, request, request.env, request.phase, packed))
        slots = self.keys.decrypt_masked(packed)
        width = convert.slot_width(packed.slot_bits)
        return coordinator_pb2.DecryptReply(
            env=request.env,
            slots=convert.ints_to_bytes(slots, width),
            slot_bytes=width,
            count=len(slots),
        )

    @rpc
    def DecryptLoss(
        self, request: coordinator_pb2.LossRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.LossReply:
        caller = caller_party(context)
        self._check_job(request.env)
        key = self.keys.public_key()
        scores = convert.packed_from_proto(request.masked_scores, key)
        sums = convert.packed_from_proto(request.masked_sums, key)
        self.gate.admit(decryption.ticket(caller, request, request.env, "loss", scores, sums))
        total = self.keys.decrypt_loss(scores, sums)
        return coordinator_pb2.LossReply(
            env=request.env, total=total.to_bytes((total.bit_length() + 7) // 8 or 1, "big")
        )
