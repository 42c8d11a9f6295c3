"""The trees family's messages (trees.proto) <-> its domain messages, validated at the boundary.

Every ciphertext is under the lender's own key: a partner loads gradients only under the key
the lender announced (its fingerprint), with the count, slot width and scale the job fixes; the
lender loads histograms only under its own key, packed at the width it asked for, one packed
message per non-empty node or group; leaves, sides and picks are checked against the aligned
rows and the level before any role sees them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fedcredit.crypto import PublicKey
from fedcredit.errors import CryptoError, ProtocolError
from fedcredit.node.serde.common import (
    packed_from_proto,
    packed_to_proto,
    vector_from_proto,
    vector_to_proto,
)
from fedcredit.proto.v1 import common_pb2, trees_pb2
from fedcredit.protocol.trees.messages import (
    Gradients,
    Histograms,
    LeafMasks,
    Leaves,
    MixChoice,
    SideRequest,
    Sides,
    SplitBits,
)
from fedcredit.protocol.trees.slots import slot_width

MAX_LEVELS = 6  # TreeSettings' deepest tree
_TOKEN = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Expected:
    """What a partner expects of the lender's gradients: its training rows and the scale."""

    train_rows: int
    scale_bits: int
    mode: str


def key_message(env: common_pb2.Envelope, key: PublicKey) -> trees_pb2.TreesKey:
    return trees_pb2.TreesKey(env=env, public_key_json=key.to_json())


def key_of(message: trees_pb2.TreesKey) -> PublicKey:
    try:
        return PublicKey.from_json(message.public_key_json)
    except (ValueError, KeyError, TypeError) as exc:
        raise CryptoError("the lender's trees key is not a valid public key") from exc


def gradients_message(env: common_pb2.Envelope, message: Gradients) -> trees_pb2.Gradients:
    return trees_pb2.Gradients(
        env=env, tree=message.tree, level=message.level, width=message.width,
        scale_bits=message.scale_bits, groups=message.groups, nodes=message.nodes,
        values=vector_to_proto(message.values),
    )  # fmt: skip


def level_message(env: common_pb2.Envelope, tree: int, level: int) -> trees_pb2.Gradients:
    """Mix, a level after the first: the partner sums the gradients it already holds."""
    return trees_pb2.Gradients(env=env, tree=tree, level=level)


def gradients_of(
    message: trees_pb2.Gradients, key: PublicKey | None, expected: Expected
) -> Gradients | None:
    """The lender's gradients (None for a mix level after the first), or CryptoError /
    ProtocolError when the count, width, scale, layout or key is not the job's."""
    if message.level >= MAX_LEVELS:
        raise ProtocolError(f"gradients for level {message.level}, deeper than any tree")
    if not message.HasField("values"):
        if expected.mode != "mix" or message.level == 0:
            raise ProtocolError("gradients without ciphertexts")
        return None
    if key is None:
        raise ProtocolError("gradients arrived before the lender's key")
    width = slot_width(expected.train_rows, expected.scale_bits)
    if message.width != width or message.scale_bits != expected.scale_bits:
        raise ProtocolError(
            f"gradients of {message.width}-bit slots at scale 2^{message.scale_bits}; this job "
            f"uses {width} bits at 2^{expected.scale_bits}"
        )
    positions = 2**message.level
    single = expected.mode == "mix"
    if (single and (message.groups, message.nodes, message.level) != (1, 1, 0)) or not (
        1 <= message.nodes <= positions and message.groups == -(-positions // message.nodes)
    ):
        raise ProtocolError(
            f"gradients in {message.groups} groups of {message.nodes} nodes at level "
            f"{message.level} do not fit {expected.mode} mode"
        )
    if message.nodes * 3 * message.width > key.bits:
        raise ProtocolError("gradient slots wider than the lender's key")
    values = vector_from_proto(
        message.values, key, scale_bits=0, count=expected.train_rows * message.groups
    )
    return Gradients(
        message.tree, message.level, message.width, message.scale_bits, message.groups,
        message.nodes, values,
    )  # fmt: skip


def histograms_message(
    env: common_pb2.Envelope, message: Histograms, key: PublicKey
) -> trees_pb2.Histograms:
    return trees_pb2.Histograms(
        env=env, tree=message.tree, level=message.level, counts=list(message.counts),
        sums=[packed_to_proto(p, key) for p in message.sums],
    )  # fmt: skip


def histograms_of(
    message: trees_pb2.Histograms, key: PublicKey, *, tree: int, level: int, value_bits: int
) -> Histograms:
    """A partner's packed sums under the lender's own key, at the width the lender asked for."""
    if (message.tree, message.level) != (tree, level):
        raise ProtocolError(f"histograms of tree {message.tree} level {message.level}, not ours")
    counts = tuple(int(c) for c in message.counts)
    filled = [c for c in counts if c]
    if len(counts) > 2**level or len(filled) != len(message.sums):
        raise ProtocolError(f"{len(message.sums)} packed sums for counts {counts}")
    sums = []
    for count, packed in zip(filled, message.sums, strict=True):
        if packed.count != count or packed.value_bits != value_bits:
            raise ProtocolError(
                f"{packed.count} sums of {packed.value_bits} bits; expected {count} of {value_bits}"
            )
        sums.append(packed_from_proto(packed, key))
    return Histograms(tree, level, counts, tuple(sums))


def choice_message(env: common_pb2.Envelope, choice: MixChoice) -> trees_pb2.MixChoice:
    return trees_pb2.MixChoice(
        env=env, tree=choice.tree, level=choice.level, winners=list(choice.winners)
    )


def choice_of(message: trees_pb2.MixChoice) -> MixChoice:
    if len(message.winners) > 2**message.level or any(w < -1 for w in message.winners):
        raise ProtocolError("a choice of splits that no level holds")
    return MixChoice(message.tree, message.level, tuple(int(w) for w in message.winners))


def tree_ref(env: common_pb2.Envelope, tree: int) -> trees_pb2.TreeRef:
    return trees_pb2.TreeRef(env=env, tree=tree)


def leaves_message(env: common_pb2.Envelope, leaves: Leaves) -> trees_pb2.Leaves:
    return trees_pb2.Leaves(env=env, tree=leaves.tree, leaves=leaves.leaves)


def leaves_of(message: trees_pb2.Leaves, *, tree: int, rows: int) -> Leaves:
    if message.tree != tree or len(message.leaves) != rows:
        raise ProtocolError(f"{len(message.leaves)} leaves of tree {message.tree}, expected {rows}")
    return Leaves(tree, bytes(message.leaves))


def side_request_message(env: common_pb2.Envelope, request: SideRequest) -> trees_pb2.SideRequest:
    picks = [trees_pb2.Pick(token=t, candidate=k) for t, k in request.picks]
    return trees_pb2.SideRequest(env=env, tree=request.tree, level=request.level, picks=picks)


def side_request_of(message: trees_pb2.SideRequest) -> SideRequest:
    """At most ``2**level`` picks with fresh random tokens (the partner checks the candidates)."""
    if message.level >= MAX_LEVELS or len(message.picks) > 2**message.level:
        raise ProtocolError(f"{len(message.picks)} picks at level {message.level}")
    tokens = [p.token for p in message.picks]
    if len(set(tokens)) != len(tokens) or not all(_TOKEN.fullmatch(t) for t in tokens):
        raise ProtocolError("side request tokens must be distinct 16-digit hex strings")
    picks = tuple((p.token, int(p.candidate)) for p in message.picks)
    return SideRequest(message.tree, message.level, picks)


def sides_message(env: common_pb2.Envelope, sides: Sides) -> trees_pb2.SidesReply:
    return trees_pb2.SidesReply(
        env=env, tree=sides.tree, level=sides.level, sides=list(sides.sides)
    )


def sides_of(message: trees_pb2.SidesReply, request: SideRequest, *, rows: int) -> Sides:
    width = -(-rows // 8)
    if (message.tree, message.level) != (request.tree, request.level) or len(message.sides) != len(
        request.picks
    ):
        raise ProtocolError(f"{len(message.sides)} sides for {len(request.picks)} picks")
    if any(len(s) != width for s in message.sides):
        raise ProtocolError(f"sides must be {width} bytes (one bit per aligned row)")
    return Sides(request.tree, request.level, tuple(bytes(s) for s in message.sides))


def answer_message(
    env: common_pb2.Envelope, answer: LeafMasks | SplitBits
) -> trees_pb2.TreesAnswer:
    """A partner's scoring answer on the wire."""
    if isinstance(answer, LeafMasks):
        return trees_pb2.TreesAnswer(
            env=env, rows=answer.rows, trees=list(answer.trees), masks=list(answer.masks)
        )
    return trees_pb2.TreesAnswer(
        env=env, rows=answer.rows, tokens=list(answer.tokens), bits=list(answer.bits)
    )


def answer_of(
    message: trees_pb2.TreesAnswer,
    *,
    rows: int,
    leaves: Mapping[int, np.ndarray],
    tokens: set[str],
) -> LeafMasks | SplitBits:
    """A partner's scoring answer for ``rows`` applicants, checked against what the lender
    needs of it: a mask for every tree in ``leaves`` (tree -> which heap positions are leaves),
    covering every applicant with at least one leaf and only leaves; bits for every token."""
    if message.rows != rows:
        raise ProtocolError(f"a trees answer for {message.rows} applicants, expected {rows}")
    if message.trees or message.masks or not message.tokens:
        if len(message.trees) != len(message.masks) or len(set(message.trees)) != len(
            message.trees
        ):
            raise ProtocolError("a trees answer needs one mask per distinct tree")
        if tokens:
            raise ProtocolError("a trees answer without the split bits needed")
        masks = dict(zip(message.trees, message.masks, strict=True))
        missing = sorted(set(leaves) - set(masks))
        if missing:
            raise ProtocolError(f"a trees answer without tree(s) {missing}")
        for t, is_leaf in leaves.items():
            size = len(is_leaf)
            bits = np.unpackbits(np.frombuffer(masks[t], np.uint8))
            if len(masks[t]) != -(-rows * size // 8):
                raise ProtocolError(f"the mask of tree {t} must be {-(-rows * size // 8)} bytes")
            grid = bits[: rows * size].reshape(rows, size).astype(bool)
            if (grid & ~is_leaf).any() or not grid.any(axis=1).all():
                raise ProtocolError(f"the mask of tree {t} must name leaves, one or more each")
        return LeafMasks(tuple(message.trees), tuple(bytes(m) for m in message.masks), rows)
    if leaves:
        raise ProtocolError("a trees answer without the leaf masks needed")
    if len(message.tokens) != len(message.bits) or len(set(message.tokens)) != len(message.tokens):
        raise ProtocolError("a trees answer needs one bit string per distinct token")
    missing_tokens = sorted(tokens - set(message.tokens))
    if missing_tokens:
        raise ProtocolError(f"a trees answer without {len(missing_tokens)} of the tokens needed")
    if any(len(b) != -(-rows // 8) for b in message.bits):
        raise ProtocolError(f"split bits must be {-(-rows // 8)} bytes (one bit per applicant)")
    return SplitBits(tuple(message.tokens), tuple(bytes(b) for b in message.bits), rows)


def tree_reply(
    env: common_pb2.Envelope, stop: bool, validation: float | None, kept: int
) -> trees_pb2.TreeReply:
    reply = trees_pb2.TreeReply(env=env, stop=stop, trees_kept=kept)
    if validation is not None:
        reply.has_validation, reply.validation_loss = True, validation
    return reply


__all__ = [
    "Expected",
    "answer_message",
    "answer_of",
    "choice_message",
    "choice_of",
    "gradients_message",
    "gradients_of",
    "histograms_message",
    "histograms_of",
    "key_message",
    "key_of",
    "leaves_message",
    "leaves_of",
    "level_message",
    "side_request_message",
    "side_request_of",
    "sides_message",
    "sides_of",
    "tree_ref",
]
