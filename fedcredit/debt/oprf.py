"""Oblivious PRF on ristretto255 and the tags a lender's customers are found by.

``F_k(id) = k * H(id)`` where ``H`` hashes an identifier onto ristretto255 (SHA-512, then
the Elligator map). The querier sends ``r * H(x)`` for a fresh random scalar ``r``: a uniformly
random group element, independent of ``x``, so the lender evaluating it learns nothing about
``x``. The querier multiplies the answer by ``1/r`` and gets ``k * H(x)`` without learning ``k``.
A tag is SHA-256 of that point with a domain label. The querier sends the coordinator the
points ``k * H(x)`` themselves, with proofs (``fedcredit.debt.dleq``) that each slot holds one
person for every lender; the coordinator checks them and hashes the points into tags.

libsodium is called through ctypes, which releases the GIL, so long batches run on a small
thread pool.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import rbcl

from fedcredit.errors import ProtocolError

POINT_BYTES = 32
SCALAR_BYTES = 32
TAG_BYTES = 32
_H2C_LABEL = b"fedcredit/debt/v1/hash-to-ristretto255\x00"
_TAG_LABEL = b"fedcredit/debt/v1/tag\x00"
_PARALLEL_MIN = 1024
_T = TypeVar("_T")
_R = TypeVar("_R")


def _map(func: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``[func(x) for x in items]``, spread over one thread per core for long inputs."""
    workers = min(os.cpu_count() or 1, 8)
    if len(items) < _PARALLEL_MIN or workers == 1:
        return [func(item) for item in items]
    chunk = -(-len(items) // workers)
    parts = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = pool.map(lambda part: [func(item) for item in part], parts)
        return [result for part in done for result in part]


def normalize_id(identifier: str) -> bytes:
    """The bytes an identifier is hashed from: surrounding spaces stripped, UTF-8."""
    return identifier.strip().encode("utf-8")


def hash_to_point(identifier: str) -> bytes:
    """``H(id)``: a ristretto255 point nobody knows the discrete logarithm of."""
    digest = hashlib.sha512(_H2C_LABEL + normalize_id(identifier)).digest()
    point: bytes = rbcl.crypto_core_ristretto255_from_hash(digest)
    return point


def random_scalar() -> bytes:
    """A uniformly random non-zero scalar from libsodium's CSPRNG."""
    while True:
        scalar: bytes = rbcl.crypto_core_ristretto255_scalar_random()
        if any(scalar):
            return scalar


def multiply(scalar: bytes, point: bytes) -> bytes:
    """``scalar * point``; refuses a malformed point or the identity with ``ProtocolError``."""
    if len(point) != POINT_BYTES:
        raise ProtocolError(f"a point must be {POINT_BYTES} bytes, got {len(point)}")
    try:
        result: bytes = rbcl.crypto_scalarmult_ristretto255(scalar, point)
    except RuntimeError as exc:  # libsodium refuses non-canonical encodings and the identity.
        raise ProtocolError("a peer sent bytes that are not a valid ristretto255 point") from exc
    return result


def derive_tag(point: bytes) -> bytes:
    """The tag of ``k * H(id)``: 32 bytes the coordinator matches on and cannot invert."""
    return hashlib.sha256(_TAG_LABEL + point).digest()


@dataclass(frozen=True)
class OPRFKey:
    """A lender's OPRF key ``k`` and the epoch (upload generation) it belongs to."""

    scalar: bytes = field(repr=False)
    epoch: int

    @classmethod
    def generate(cls, epoch: int = 1) -> OPRFKey:
        """A fresh key; a lender draws a new one for every upload so epochs are unlinkable."""
        return cls(scalar=random_scalar(), epoch=epoch)

    @property
    def public(self) -> bytes:
        """``K = k * G``, published in the upload so the coordinator can check each answer."""
        point: bytes = rbcl.crypto_scalarmult_ristretto255_base(self.scalar)
        return point

    def tags(self, identifiers: Sequence[str]) -> list[bytes]:
        """The tags of this lender's own customers (computed with the key in the clear)."""
        return _map(lambda pid: derive_tag(multiply(self.scalar, hash_to_point(pid))), identifiers)

    def evaluate(self, blinded: Sequence[bytes]) -> list[bytes]:
        """``k * B`` for each blinded point; the caller learns no key, this lender no identity."""
        return _map(lambda point: multiply(self.scalar, point), blinded)


def _blind_one(identifier: str) -> tuple[bytes, bytes]:
    r = random_scalar()
    inverse: bytes = rbcl.crypto_core_ristretto255_scalar_invert(r)
    return inverse, multiply(r, hash_to_point(identifier))


@dataclass(frozen=True)
class Blinding:
    """The querier's secret unblinding scalars and the blinded points it sends out."""

    inverses: tuple[bytes, ...] = field(repr=False)
    points: tuple[bytes, ...]

    @classmethod
    def of(cls, identifiers: Sequence[str]) -> Blinding:
        """Blind ``H(x)`` for every identifier with its own fresh scalar."""
        pairs = _map(_blind_one, identifiers)
        return cls(inverses=tuple(p[0] for p in pairs), points=tuple(p[1] for p in pairs))

    def unblind(self, evaluated: Sequence[bytes]) -> list[bytes]:
        """``k * H(x)`` for each applicant from one lender's answer ``k * r_x * H(x)``."""
        if len(evaluated) != len(self.inverses):
            raise ProtocolError(
                f"a lender answered {len(evaluated)} points for {len(self.inverses)} blinded ones"
            )
        pairs = list(zip(self.inverses, evaluated, strict=True))
        return _map(lambda pair: multiply(pair[0], pair[1]), pairs)

    def tags(self, evaluated: Sequence[bytes]) -> list[bytes]:
        """Unblind one lender's answer and derive its tags (what the coordinator derives)."""
        return [derive_tag(point) for point in self.unblind(evaluated)]
