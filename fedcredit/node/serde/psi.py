"""PSI messages (psi.proto): lists of Curve25519 points, commitments, alignment counts."""

from __future__ import annotations

from fedcredit.errors import CryptoError
from fedcredit.node.results import Alignment
from fedcredit.proto.v1 import common_pb2, psi_pb2
from fedcredit.psi import POINT_BYTES
from fedcredit.psi import SUITE as PSI_SUITE
from fedcredit.psi.points import PointBuffer
from fedcredit.psi.ring import Commitment


def check_count(message: psi_pb2.PsiPoints) -> None:
    data = message.points
    if message.count * POINT_BYTES != len(data):
        raise CryptoError(f"PSI message holds {len(data)} bytes for {message.count} points")


def points_of(message: psi_pb2.PsiPoints) -> PointBuffer:
    """The message's points as one buffer over its bytes (no list of 32-byte objects)."""
    check_count(message)
    # Each point is checked where it is used: PSIParty.relay/finish and the coordinator.
    return PointBuffer(message.points)


def split(blob: bytes | bytearray) -> PointBuffer:
    """The points of a list assembled from chunks (``fedcredit.node.psi_lists``), not copied."""
    return PointBuffer(blob)


def chunk_message(
    env: common_pb2.Envelope,
    owner: str,
    chunk: bytes,
    total: int,
    *,
    offset: int = 0,
    suite: bool = False,
) -> psi_pb2.PsiPoints:
    """Points ``offset`` on of ``owner``'s ``total``-point list (``suite``: PsiBlind replies)."""
    message = psi_pb2.PsiPoints(
        env=env,
        owner=owner,
        points=chunk,
        count=len(chunk) // POINT_BYTES,
        offset=offset,
        total=total,
    )
    if suite:
        message.suite = PSI_SUITE
    return message


def commitment_of(message: psi_pb2.PsiCommitment) -> Commitment:
    return Commitment(message.owner, message.hop, message.count, bytes(message.digest))


def commitment_message(env: common_pb2.Envelope, commitment: Commitment) -> psi_pb2.PsiCommitment:
    return psi_pb2.PsiCommitment(
        env=env,
        owner=commitment.owner,
        hop=commitment.hop,
        count=commitment.count,
        digest=commitment.digest,
    )


def align_reply(env: common_pb2.Envelope, alignment: Alignment) -> psi_pb2.AlignReply:
    return psi_pb2.AlignReply(
        env=env,
        common=alignment.common,
        train=alignment.train,
        validation=alignment.validation,
        test=alignment.test,
        features=alignment.features,
    )
