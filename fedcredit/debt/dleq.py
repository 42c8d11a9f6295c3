"""Chaum-Pedersen proofs on ristretto255 that tie each slot of a loan-stacking query to one person.

A query's slot must hold, for every lender ``i``, the tag of the same person: ``k_i * P`` for
one point ``P``. Two non-interactive proofs (Fiat-Shamir over SHA-512) give the coordinator that
without showing it ``P``:

- **the lender's** (``prove_evaluation``): with its OPRF key ``k`` and public key ``K = k * G``
  (in its upload), every answer is ``A_j = k * B_j`` for the blinded points ``B_j`` it was sent.
  One proof covers a whole batch: the points are folded with hash-derived weights into
  ``M = sum d_j B_j`` and ``Z = sum d_j A_j`` and the proof is ``log_G K = log_M Z`` (the
  batched DLEQ of RFC 9497, section 2.2).
- **the querier's** (``prove_common_scalar``), one per applicant: the unblinded points are
  ``T_i = s * A_i`` with one scalar ``s`` for every lender ``i``.

Given the same ``B`` for every lender (the query carries it once), both together say
``T_i = k_i * (s * B)``: one person per slot, whoever it is. The proofs are zero-knowledge: the
coordinator learns no scalar, so neither ``s * B`` (which is ``H(id)`` for an honest querier)
nor a key. A proof is ``c || z``, two 32-byte scalars.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import rbcl

from fedcredit.debt.oprf import POINT_BYTES, SCALAR_BYTES, multiply, random_scalar
from fedcredit.errors import ProtocolError

PROOF_BYTES = 2 * SCALAR_BYTES
_EVALUATION_LABEL = b"fedcredit/debt/v1/dleq-evaluation\x00"
_COMPOSITE_LABEL = b"fedcredit/debt/v1/dleq-composite\x00"
_COMMON_LABEL = b"fedcredit/debt/v1/dleq-common-scalar\x00"
_PARALLEL_MIN = 256
_T = TypeVar("_T")
_R = TypeVar("_R")


def _chunks(func: Callable[[Sequence[_T]], _R], items: Sequence[_T]) -> list[_R]:
    """``func`` over a few contiguous chunks of ``items``, one thread per core (libsodium
    releases the GIL), or one chunk for short inputs."""
    workers = min(os.cpu_count() or 1, 8)
    if len(items) < _PARALLEL_MIN or workers == 1:
        return [func(items)]
    size = -(-len(items) // workers)
    parts = [items[i : i + size] for i in range(0, len(items), size)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(func, parts))


def _challenge(label: bytes, *parts: bytes) -> bytes:
    digest = hashlib.sha512(label)
    for part in parts:
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    scalar: bytes = rbcl.crypto_core_ristretto255_scalar_reduce(digest.digest())
    return scalar


def _add(left: bytes, right: bytes) -> bytes:
    try:
        total: bytes = rbcl.crypto_core_ristretto255_add(left, right)
    except RuntimeError as exc:
        raise ProtocolError("a peer sent bytes that are not a valid ristretto255 point") from exc
    return total


def _base_multiply(scalar: bytes) -> bytes:
    try:
        point: bytes = rbcl.crypto_scalarmult_ristretto255_base(scalar)
    except RuntimeError as exc:  # The scalar was zero: a malformed proof.
        raise ProtocolError("a proof holds a zero scalar") from exc
    return point


def _scalar(data: bytes) -> bytes:
    # Only canonical scalars (below the group order): reducing is the identity on them.
    reduced: bytes = rbcl.crypto_core_ristretto255_scalar_reduce(data + bytes(SCALAR_BYTES))
    if reduced != data:
        raise ProtocolError("a proof holds a scalar that is not reduced")
    return data


def _split_proof(proof: bytes) -> tuple[bytes, bytes]:
    if len(proof) != PROOF_BYTES:
        raise ProtocolError(f"a proof must be {PROOF_BYTES} bytes, got {len(proof)}")
    return _scalar(proof[:SCALAR_BYTES]), _scalar(proof[SCALAR_BYTES:])


def _response(nonce: bytes, challenge: bytes, secret: bytes) -> bytes:
    # z = w - c * x (mod the group order)
    product = rbcl.crypto_core_ristretto255_scalar_mul(challenge, secret)
    response: bytes = rbcl.crypto_core_ristretto255_scalar_sub(nonce, product)
    return response


def _weighted_sum(weights: Sequence[bytes], points: Sequence[bytes]) -> bytes:
    def part(pairs: Sequence[tuple[bytes, bytes]]) -> bytes:
        total = multiply(pairs[0][0], pairs[0][1])
        for weight, point in pairs[1:]:
            total = _add(total, multiply(weight, point))
        return total

    partials = _chunks(part, list(zip(weights, points, strict=True)))
    total = partials[0]
    for partial in partials[1:]:
        total = _add(total, partial)
    return total


def check_public_key(key: bytes, owner: str) -> bytes:
    """``key`` if it is a valid ristretto255 point other than the identity, else ProtocolError
    naming ``owner``."""
    if len(key) != POINT_BYTES or key == bytes(POINT_BYTES):
        raise ProtocolError(f"{owner}'s OPRF public key must be a {POINT_BYTES}-byte point")
    if not rbcl.crypto_core_ristretto255_is_valid_point(key):
        raise ProtocolError(f"{owner}'s OPRF public key is not a valid ristretto255 point")
    return key


def public_key(scalar: bytes) -> bytes:
    """``K = k * G``: what a lender publishes (in its upload) so that its answers can be checked."""
    return _base_multiply(scalar)


def _composite(
    key: bytes, blinded: Sequence[bytes], evaluated: Sequence[bytes]
) -> tuple[list[bytes], bytes]:
    if not 0 < len(blinded) == len(evaluated):
        raise ProtocolError(
            f"an OPRF answer holds {len(evaluated)} points for {len(blinded)} blinded ones"
        )
    seed = hashlib.sha512(_COMPOSITE_LABEL)
    seed.update(key + len(blinded).to_bytes(4, "big") + b"".join(blinded) + b"".join(evaluated))
    root = seed.digest()
    weights = [
        _challenge(_COMPOSITE_LABEL, root, j.to_bytes(4, "big")) for j in range(len(blinded))
    ]
    return weights, _weighted_sum(weights, blinded)


def prove_evaluation(scalar: bytes, blinded: Sequence[bytes], evaluated: Sequence[bytes]) -> bytes:
    """The lender's proof that ``evaluated[j] = scalar * blinded[j]`` for every j (one proof per
    batch); the verifier learns nothing about ``scalar`` beyond ``public_key(scalar)``."""
    key = public_key(scalar)
    _, folded = _composite(key, blinded, evaluated)
    image = multiply(scalar, folded)  # = sum d_j A_j when every A_j = k B_j
    nonce = random_scalar()
    challenge = _challenge(
        _EVALUATION_LABEL, key, folded, image, _base_multiply(nonce), multiply(nonce, folded)
    )
    return challenge + _response(nonce, challenge, scalar)


def verify_evaluation(
    key: bytes, blinded: Sequence[bytes], evaluated: Sequence[bytes], proof: bytes
) -> None:
    """ProtocolError unless ``proof`` shows ``evaluated[j] = k * blinded[j]`` for every j, where
    ``key = k * G``. Costs two scalar multiplications per point."""
    challenge, response = _split_proof(proof)
    weights, folded = _composite(key, blinded, evaluated)
    image = _weighted_sum(weights, evaluated)
    commit_base = _add(_base_multiply(response), multiply(challenge, key))
    commit_folded = _add(multiply(response, folded), multiply(challenge, image))
    expected = _challenge(_EVALUATION_LABEL, key, folded, image, commit_base, commit_folded)
    if expected != challenge:
        raise ProtocolError("the OPRF evaluation proof does not verify")


def prove_common_scalar(scalar: bytes, bases: Sequence[bytes], images: Sequence[bytes]) -> bytes:
    """The querier's proof, for one applicant, that ``images[i] = scalar * bases[i]`` for every
    lender ``i`` with the same ``scalar``."""
    if not 0 < len(bases) == len(images):
        raise ProtocolError("a common-scalar proof needs as many images as bases, at least one")
    nonce = random_scalar()
    commits = [multiply(nonce, base) for base in bases]
    challenge = _challenge(_COMMON_LABEL, *bases, *images, *commits)
    return challenge + _response(nonce, challenge, scalar)


def verify_common_scalar(bases: Sequence[bytes], images: Sequence[bytes], proof: bytes) -> None:
    """ProtocolError unless ``proof`` shows ``images[i] = s * bases[i]`` for one ``s`` and every
    i. Costs two scalar multiplications per base."""
    if not 0 < len(bases) == len(images):
        raise ProtocolError("a common-scalar proof needs as many images as bases, at least one")
    challenge, response = _split_proof(proof)
    commits = [
        _add(multiply(response, base), multiply(challenge, image))
        for base, image in zip(bases, images, strict=True)
    ]
    if _challenge(_COMMON_LABEL, *bases, *images, *commits) != challenge:
        raise ProtocolError("the querier's proof that one person fills the slot does not verify")


def verify_common_scalars(
    bases: Sequence[Sequence[bytes]], images: Sequence[Sequence[bytes]], proofs: Sequence[bytes]
) -> None:
    """``verify_common_scalar`` for every applicant (``bases[x]`` over the lenders), spread over
    the cores; ProtocolError naming the first applicant (by index) whose proof fails."""
    items = list(enumerate(zip(bases, images, proofs, strict=True)))

    def check(part: Sequence[tuple[int, tuple[Sequence[bytes], Sequence[bytes], bytes]]]) -> None:
        for index, (base, image, proof) in part:
            try:
                verify_common_scalar(base, image, proof)
            except ProtocolError as exc:
                raise ProtocolError(f"applicant {index} of the query: {exc}") from exc

    _chunks(check, items)
