"""Curve25519 primitives for the PSI: hashing ids to the curve, secret scalars, blinding.

Points travel as 32-byte little-endian Montgomery u-coordinates (RFC 7748), and
blinding is the X25519 function: libsodium's ``crypto_scalarmult`` through
PyNaCl, whose Montgomery ladder took about 50 us a call here against about 90 to
100 us for ``crypto_scalarmult_ristretto255`` (``benchmarks/psi.py`` records both). The
u-coordinate names a point up to sign; ``[k](-P) = -[k]P``, so blinding is
well defined on u and commutes: ``X25519(a, X25519(b, u)) = X25519(b, X25519(a, u))``.

Hashing (:func:`hash_ids`): SHA-512 of the domain tag, the job id and the id,
each length-prefixed, reduced modulo ``p`` (512 bits, so uniform to within
2^-257), then RFC 9380's Elligator 2 map for curve25519 (section 6.7.1, the
map of the ``curve25519_XMD:SHA-512_ELL2_NU_`` suite; ``tests/unit/test_psi.py``
checks it on the RFC's test vectors). The RFC's final cofactor clearing is left
to the first blinding, whose scalar is a multiple of 8. This is the RFC's
non-uniform *encoding*: its image is about half the curve, each point with at
most two preimages. The DH-PSI argument still holds (the reduction
re-randomizes a DDH challenge point until it falls in the image, an expected
two tries, and samples a preimage with the Elligator inverse); the price is a
small constant factor in the bound. The random-oracle variant would add a
second map and a point addition, which costs a square root in Python.

Scalars. X25519 clamps its scalar: a multiple of 8 in ``[2^254, 2^255)``. Keys
are therefore stored clamped (:class:`PSIKey`). After the first blinding every
point lies in the subgroup of prime order ``l``, where only the scalar modulo
``l`` matters, so a product or an inverse modulo ``l`` is applied through its
clamped representative, the one multiple of 8 in ``[2^254, 2^255)`` congruent to
it modulo ``l``. About half of all residues have one; :meth:`PSIKey.generate_mask`
draws a mask whose inverse and whose product with the key both do.

Validation. Every point a party or the coordinator receives is checked before
use, as RFC 7748 section 6.1 asks: 32 bytes, a canonical field element (below
``p = 2^255 - 19``), not one of the points of order dividing 8, and a blinding
that does not give the identity. A u of the twist is harmless (Curve25519 is
twist-secure) and matches nothing; :func:`on_curve` tells the two apart for
tests. Anything else raises :class:`~fedcredit.errors.CryptoError` naming the index.

Where the work runs: the current executor's (``fedcredit.crypto.executors``). On the
default thread pool, PyNaCl releases the GIL around libsodium calls, so blinding is split
across threads (one per available core), and hashing, Python and gmpy2 holding the GIL,
runs in the calling thread with one field inversion per 1,024 ids. On the ``processes`` and
``ray`` executors both run as blocks (:func:`hash_block`, :func:`blind_block`,
:func:`hash_blind_block`) on the party's worker processes: no GIL is shared, and a party
aligns on as many cores as its cluster has. Those workers are the party's own; they get the
scalar with each block and keep nothing after it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import gmpy2
import numpy as np
from gmpy2 import mpz
from nacl.bindings import crypto_scalarmult
from nacl.exceptions import RuntimeError as SodiumError

from fedcredit.crypto.executors import current_executor
from fedcredit.errors import ConfigError, CryptoError, DataError
from fedcredit.psi.points import POINT_BYTES, Buffer, PointBuffer, buffer_of

SCALAR_BYTES = 32
HASH_DOMAIN = b"fedcredit/psi/v2/hash-to-curve25519-elligator2"
"""Domain-separation tag: a point hashed here is never a point hashed by
another protocol (nor by version 1, which used ristretto255)."""

SUITE = "fedcredit-psi/2: X25519, Elligator 2 of SHA-512"
"""What a party's PSI computes. Parties of different suites could not match a single
customer, so the driver refuses to align them (an empty suite is version 1: ristretto255)."""

FIELD_PRIME = 2**255 - 19
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
"""``l``, the order of the prime subgroup; the curve has ``8 l`` points."""

_A = mpz(486662)
_P = mpz(FIELD_PRIME)
_Z = mpz(2)  # RFC 9380: Elligator 2's non-square for curve25519
_INV8 = pow(8, -1, GROUP_ORDER)
_CLAMP_LOW = 2**254
_CLAMP_HIGH = 2**255
# u-coordinates of the points of order 1, 2, 4 and 8 (libsodium's X25519 blocklist,
# canonical ones): blinding them gives the identity, so they are never a real point.
_LOW_ORDER = frozenset(
    value.to_bytes(POINT_BYTES, "little")
    for value in (
        0,
        1,
        FIELD_PRIME - 1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
    )
)
_LOW_ORDER_WORDS = [np.frombuffer(value, dtype="<u8") for value in sorted(_LOW_ORDER)]
_MINUS_A = _P - _A
_LENGTH = struct.Struct(">I")
_from_bytes = mpz.from_bytes
_HASH_CHUNK = 1024
_PARALLEL_MIN = 2048


def clamped_representative(residue: int) -> int | None:
    """The X25519 scalar acting as ``residue`` on the prime subgroup, or None.

    That is the one multiple of 8 in ``[2^254, 2^255)`` congruent to ``residue``
    modulo ``l`` (8l exceeds 2^255, so there is at most one); about half of all
    residues have it.
    """
    candidate = 8 * (residue * _INV8 % GROUP_ORDER)
    return candidate if _CLAMP_LOW <= candidate < _CLAMP_HIGH else None


def _is_clamped(value: int) -> bool:
    return value % 8 == 0 and _CLAMP_LOW <= value < _CLAMP_HIGH


@dataclass(frozen=True)
class PSIKey:
    """A party's secret X25519 scalar for one PSI job, stored clamped (32 bytes, little-endian).

    Generate a fresh key per job: a key reused across jobs lets a peer link the same
    customer across those jobs. The scalar never leaves its party.
    """

    scalar: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.scalar) != SCALAR_BYTES or not _is_clamped(self.value):
            raise CryptoError(
                "a PSI key must be a clamped 32-byte X25519 scalar "
                "(a multiple of 8 in [2^254, 2^255))"
            )

    @property
    def value(self) -> int:
        """The scalar as an integer."""
        return int.from_bytes(self.scalar, "little")

    @classmethod
    def from_value(cls, value: int) -> PSIKey:
        """The key of a clamped integer scalar; CryptoError if it is not clamped."""
        if not _is_clamped(value):
            raise CryptoError("a PSI key must be a multiple of 8 in [2^254, 2^255)")
        return cls(value.to_bytes(SCALAR_BYTES, "little"))

    @classmethod
    def generate(cls) -> PSIKey:
        """A uniformly random clamped scalar (2^251 possible keys) from the OS CSPRNG."""
        raw = bytearray(secrets.token_bytes(SCALAR_BYTES))
        raw[0] &= 0xF8
        raw[31] = (raw[31] & 0x7F) | 0x40
        return cls(bytes(raw))

    @classmethod
    def generate_mask(cls, key: PSIKey) -> PSIKey:
        """A one-time mask ``r`` for which ``key.times(r)`` and ``r.inverse()`` both exist.

        About one draw in four qualifies; the mask stays uniform on a set of about
        2^249 scalars, far beyond any search.
        """
        while True:
            mask = cls.generate()
            inverse = pow(mask.value, -1, GROUP_ORDER)
            product = key.value * mask.value % GROUP_ORDER
            if clamped_representative(inverse) and clamped_representative(product):
                return mask

    def inverse(self) -> PSIKey:
        """The scalar that un-blinds what this key blinded (``1/k`` modulo ``l``).

        CryptoError when that residue has no clamped form; masks from
        :meth:`generate_mask` always have one.
        """
        return self._from_residue(pow(self.value, -1, GROUP_ORDER), "inverse")

    def times(self, other: PSIKey) -> PSIKey:
        """The product ``k * other`` modulo ``l``: one blinding instead of two (see inverse)."""
        return self._from_residue(self.value * other.value % GROUP_ORDER, "product")

    @staticmethod
    def _from_residue(residue: int, what: str) -> PSIKey:
        value = clamped_representative(residue)
        if value is None:
            raise CryptoError(f"this PSI key {what} has no clamped X25519 form")
        return PSIKey.from_value(value)


def worker_count() -> int:
    """Threads used for batched group operations: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _map_ranges(function: Callable[[int, int], None], count: int, workers: int | None) -> None:
    """Run ``function(start, end)`` over contiguous ranges of ``range(count)`` in threads.

    An exception of the lowest range is raised, as a serial run would raise it first.
    """
    threads = worker_count() if workers is None else max(1, workers)
    if threads == 1 or count < _PARALLEL_MIN:
        function(0, count)
        return
    size = max(_PARALLEL_MIN // 4, -(-count // (threads * 4)))
    starts = range(0, count, size)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="psi") as pool:
        list(pool.map(lambda start: function(start, min(count, start + size)), starts))


def hash_to_field(message: bytes, tag: bytes = HASH_DOMAIN) -> int:
    """A field element from SHA-512 of the length-prefixed tag and message.

    512 bits reduced modulo ``p`` (about 2^255) are uniform to within 2^-257.
    """
    digest = _prefix(tag)
    digest.update(message)
    return int.from_bytes(digest.digest(), "little") % FIELD_PRIME


def _prefix(tag: bytes) -> hashlib._Hash:
    return hashlib.sha512(_LENGTH.pack(len(tag)) + tag)


def _on_curve(u: mpz) -> bool:
    """Whether ``u^3 + A u^2 + u`` is a square: u is on Curve25519, not on its twist."""
    return bool(gmpy2.legendre((u * (u * (u + _A) + 1)) % _P, _P) >= 0)


def map_to_curve(element: int) -> int:
    """RFC 9380 Elligator 2 for curve25519 (section 6.7.1): the u-coordinate of the point."""
    u = mpz(element)
    denominator = (_Z * u * u + 1) % _P
    x1 = (-_A * gmpy2.invert(denominator, _P)) % _P if denominator else _P - _A
    if not x1:
        x1 = _P - _A
    if not _on_curve(x1):
        x1 = (-x1 - _A) % _P
    return int(x1)


def _hash_chunk(job_id: str) -> Callable[[Sequence[str], int], list[bytes]]:
    """``run(ids, offset)``: :func:`map_to_curve` of each id's field element, batched.

    The same values as ``map_to_curve`` one by one, with one inversion per chunk
    (Montgomery's trick) instead of one per id.
    """
    if not job_id:
        raise ConfigError("a PSI job id must not be empty")
    job = job_id.encode("utf-8")
    # Length prefixes make (job, id) unambiguous: no other pair produces the same input.
    prefix = _prefix(HASH_DOMAIN)
    prefix.update(_LENGTH.pack(len(job)) + job)

    def run(chunk: Sequence[str], offset: int) -> list[bytes]:
        elements: list[mpz] = []
        for index, value in enumerate(chunk):
            if not isinstance(value, str):
                raise DataError(f"PSI id at index {offset + index} is not a string")
            raw = value.encode("utf-8")
            digest = prefix.copy()
            digest.update(_LENGTH.pack(len(raw)) + raw)
            elements.append(_from_bytes(digest.digest(), "little") % _P)
        denominators = [(_Z * u * u + 1) % _P for u in elements]
        if not all(denominators):  # u^2 = -1/2: never met in practice, but defined
            return [map_to_curve(int(u)).to_bytes(POINT_BYTES, "little") for u in elements]
        partial: list[mpz] = []
        running = mpz(1)
        for denominator in denominators:
            partial.append(running)
            running = running * denominator % _P
        inverse = gmpy2.invert(running, _P)
        out: list[bytes] = [b""] * len(chunk)
        for index in range(len(chunk) - 1, -1, -1):
            x1 = _MINUS_A * (inverse * partial[index]) % _P
            inverse = inverse * denominators[index] % _P
            if not _on_curve(x1):
                x1 = (_MINUS_A - x1) % _P
            out[index] = x1.to_bytes(POINT_BYTES, "little")
        return out

    return run


def hash_ids(ids: Sequence[str], job_id: str, *, workers: int | None = None) -> list[bytes]:
    """Map each id to a curve point's u: ``H(x) = map_to_curve(hash_to_field(job_id, x))``.

    The job id separates jobs: points from one job say nothing about another job's.
    Equal ids give equal points; the caller refuses duplicate ids before this.
    A list of ``bytes``; :func:`hash_points` gives the same points as one buffer.
    """
    return list(hash_points(ids, job_id, workers=workers))


def hash_points(ids: Sequence[str], job_id: str, *, workers: int | None = None) -> PointBuffer:
    """:func:`hash_ids` as one buffer (32 bytes a point, issue 16).

    On the thread pool hashing, Python holding the GIL, runs in the calling thread
    whatever ``workers`` says (threads would only contend); on the ``processes`` and
    ``ray`` executors it runs in blocks on their workers (the same points).
    """
    del workers
    run = _hash_chunk(job_id)
    blocks = current_executor().map_blocks(
        hash_block, len(ids), lambda a, b: (job_id, list(ids[a:b]), a)
    )
    if blocks is not None:
        return PointBuffer(b"".join(blocks))
    out = bytearray(POINT_BYTES * len(ids))
    for start in range(0, len(ids), _HASH_CHUNK):
        part = run(ids[start : start + _HASH_CHUNK], start)
        out[start * POINT_BYTES : (start + len(part)) * POINT_BYTES] = b"".join(part)
    return PointBuffer(out)


def hash_and_blind(
    ids: Sequence[str], job_id: str, key: PSIKey, *, workers: int | None = None
) -> PointBuffer:
    """``blind(hash_ids(ids, job_id), key)`` without re-checking the points just made.

    Hashing first and blinding after measured faster on two cores than hashing
    inside the blinding threads, where the two threads' hashing contends for the GIL. On
    worker processes (``processes``, ``ray``) each block is hashed and blinded by one task.
    """
    _hash_chunk(job_id)  # an empty job id is refused here, before any block is sent
    blocks = current_executor().map_blocks(
        hash_blind_block, len(ids), lambda a, b: (job_id, list(ids[a:b]), a, key.scalar)
    )
    if blocks is not None:
        return PointBuffer(b"".join(blocks))
    return blind(hash_points(ids, job_id), key, workers=workers, checked=True)


def _check(point: object, index: int) -> None:
    """RFC 7748's checks on a received u: 32 bytes, canonical, not of small order.

    A u on the twist needs no test: Curve25519 is twist-secure (the twist's
    order is 4 times a 253-bit prime), so blinding it reveals nothing about the
    scalar, and the result can match no honest party's value.
    """
    if not isinstance(point, bytes) or len(point) != POINT_BYTES:
        raise _invalid(index, "not 32 bytes")
    if int.from_bytes(point, "little") >= FIELD_PRIME:
        raise _invalid(index, "not a canonical field element")
    if point in _LOW_ORDER:
        raise _invalid(index, "a point of small order")


def on_curve(point: bytes) -> bool:
    """Whether a canonical u belongs to Curve25519 itself rather than its twist."""
    return _on_curve(mpz(int.from_bytes(point, "little")))


def blind(
    points: Sequence[bytes], key: PSIKey, *, workers: int | None = None, checked: bool = False
) -> PointBuffer:
    """Return ``[X25519(k, P) for P in points]`` in the same order, as one buffer.

    Raises :class:`CryptoError` naming the first index whose input is not a valid
    point (see the module docstring); ``checked`` skips that check for points this
    party has just made itself. The receiver of the output learns nothing about
    ``k`` (discrete logarithm) and, without ``k``, cannot tell which inputs the
    outputs came from beyond their order. The output is written into one buffer
    (32 bytes a point), never a list of ``bytes`` objects (issue 16). The check runs
    here; the X25519 calls on ``workers`` threads, or in blocks on the current
    executor's workers (``processes``, ``ray``), which get ``k`` with each block.
    """
    if not checked:
        check_points(points)
    data = buffer_of(points)
    if data is None:
        data = PointBuffer.of(points).data
    held = data
    blocks = current_executor().map_blocks(
        blind_block,
        len(data) // POINT_BYTES,
        lambda a, b: (bytes(held[a * POINT_BYTES : b * POINT_BYTES]), key.scalar, a),
    )
    if blocks is not None:
        return PointBuffer(b"".join(blocks))
    return PointBuffer(_blind_buffer(data, key.scalar, workers))


def _blind_buffer(data: Buffer, scalar: bytes, workers: int | None) -> bytearray:
    out = bytearray(len(data))
    _map_ranges(lambda start, end: _blind_range(out, data, scalar, start, end, 0),
                len(data) // POINT_BYTES, workers)  # fmt: skip
    return out


def _blind_range(
    out: bytearray, data: Buffer, scalar: bytes, start: int, end: int, offset: int
) -> None:
    """X25519 of the points ``start .. end`` of ``data`` into ``out``; the error names
    ``offset + index``, the point's index in the whole list."""
    for index in range(start, end):
        at = index * POINT_BYTES
        try:
            out[at : at + POINT_BYTES] = crypto_scalarmult(
                scalar, bytes(data[at : at + POINT_BYTES])
            )
        except SodiumError:  # the identity: only a point of small order gives it
            raise _invalid(offset + index, "a point of small order") from None


# -- blocks for the executors' workers (module-level: a worker loads them by name) ----------
def hash_block(job_id: str, ids: Sequence[str], offset: int) -> bytes:
    """:func:`hash_points` of one block of ids, whose first is id ``offset`` of the list
    (errors name the index in the whole list), as 32 bytes a point."""
    run = _hash_chunk(job_id)
    return b"".join(
        b"".join(run(ids[start : start + _HASH_CHUNK], offset + start))
        for start in range(0, len(ids), _HASH_CHUNK)
    )


def blind_block(data: bytes, scalar: bytes, offset: int) -> bytes:
    """X25519 with ``scalar`` of one block of points, in one thread; a point of small order
    raises the CryptoError naming its index in the whole list (``offset`` added)."""
    out = bytearray(len(data))
    _blind_range(out, data, scalar, 0, len(data) // POINT_BYTES, offset)
    return bytes(out)


def hash_blind_block(job_id: str, ids: Sequence[str], offset: int, scalar: bytes) -> bytes:
    """:func:`blind_block` of :func:`hash_block`: one task, and the points never travel
    unblinded."""
    return blind_block(hash_block(job_id, ids, offset), scalar, offset)


def check_points(points: Sequence[bytes]) -> None:
    """Raise :class:`CryptoError` at the first entry that is not a valid u (see _check).

    The whole list is checked at once with numpy (about 0.1 us a point), so the
    blinding threads hold the GIL only around their libsodium calls.
    """
    held = buffer_of(points)
    if held is not None:
        _check_buffer(held, points)
        return
    try:
        blob = b"".join(points)
    except TypeError:
        blob = b""
    if len(blob) != POINT_BYTES * len(points) or not all(type(p) is bytes for p in points):
        for index, point in enumerate(points):
            _check(point, index)
        raise AssertionError("unreachable: a malformed entry was not found")  # pragma: no cover
    _check_buffer(blob, points)


def _check_buffer(blob: Buffer, points: Sequence[bytes]) -> None:
    """check_points on the points back to back in ``blob``."""
    if not blob:
        return
    octets = np.frombuffer(blob, dtype=np.uint8).reshape(-1, POINT_BYTES)
    top = octets[:, -1]
    # u >= p: the top bit set, or u in [2^255 - 19, 2^255).
    bad = (top > 0x7F) | (
        (top == 0x7F) & (octets[:, 1:-1] == 0xFF).all(axis=1) & (octets[:, 0] >= 0xED)
    )
    words = np.frombuffer(blob, dtype="<u8").reshape(-1, POINT_BYTES // 8)
    for pattern in _LOW_ORDER_WORDS:
        bad |= (words == pattern).all(axis=1)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        _check(points[index], index)
        raise AssertionError(
            "unreachable: the vector check and _check disagree"
        )  # pragma: no cover


def _invalid(index: int, reason: str) -> CryptoError:
    return CryptoError(f"invalid curve25519 point at index {index}: {reason}")
