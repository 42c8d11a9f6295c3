"""PSI messages (psi.proto): lists of Curve25519 points, commitments, alignment counts."""

from __future__ import annotations

from fedcredit.errors import CryptoError
from fedcredit.node.results import Alignment
from fedcredit.proto.v1 import common_pb2, psi_pb2
from fedcredit.psi import POINT_BYTES
from fedcredit.psi import SUITE as PSI_SUITE
from fedcredit.psi.ring import Commitment


def points_of(message: psi_pb2.PsiPoints) -> list[bytes]:
    data = message.points
    if message.count * POINT_BYTES != len(data):
        raise CryptoError(f"PSI message holds {len(data)} bytes for {message.count} points")
    # Each point is checked where it is used: PSIParty.relay/finish and the coordinator.
    return [data[i : i + POINT_BYTES] for i in range(0, len(data), POINT_BYTES)]


def points_message(
    env: common_pb2.Envelope, owner: str, points: list[bytes], *, suite: bool = False
) -> psi_pb2.PsiPoints:
    """``points`` of ``owner``'s list; ``suite`` adds the party's PSI suite (PsiBlind replies)."""
    message = psi_pb2.PsiPoints(env=env, owner=owner, points=b"".join(points), count=len(points))
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
