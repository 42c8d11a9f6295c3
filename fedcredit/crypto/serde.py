"""Bytes for ciphertexts: fixed width (the byte length of n**2), big-endian, validated.

Every ciphertext read from a peer is checked: exact total length, ``0 < c < n**2`` and
``gcd(c, n) == 1``. A value failing the last check would not be a Paillier ciphertext;
decrypting it could leak a factor of n to whoever crafted it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gmpy2
from gmpy2 import mpz

from fedcredit.crypto.keys import PublicKey
from fedcredit.crypto.packing import (
    SLOT_EXTRA_BITS,
    PackedCiphertexts,
    check_packed,
    expected_ciphertexts,
)
from fedcredit.crypto.vector import EncryptedVector
from fedcredit.errors import CryptoError


def ciphertext_width(public_key: PublicKey) -> int:
    """Bytes per serialized ciphertext: the byte length of n**2."""
    return int((public_key.nsquare.bit_length() + 7) // 8)


def _to_bytes(ciphertexts: Sequence[Any], public_key: PublicKey) -> bytes:
    width = ciphertext_width(public_key)
    return b"".join(mpz(c).to_bytes(width, "big") for c in ciphertexts)


def _from_bytes(data: bytes, public_key: PublicKey, count: int, what: str) -> list[Any]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CryptoError(f"{what}: expected bytes, got {type(data).__name__}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise CryptoError(f"{what}: count must be a non-negative integer, got {count!r}")
    width = ciphertext_width(public_key)
    raw = bytes(data)
    if len(raw) != count * width:
        raise CryptoError(
            f"{what}: expected {count} ciphertexts of {width} bytes ({count * width} bytes), "
            f"got {len(raw)} bytes"
        )
    n, nsq = public_key.n, public_key.nsquare
    out: list[Any] = []
    for index in range(count):
        c = mpz.from_bytes(raw[index * width : (index + 1) * width], "big")
        if not 0 < c < nsq:
            raise CryptoError(f"{what}: ciphertext {index} is outside (0, n**2)")
        if gmpy2.gcd(c, n) != 1:
            raise CryptoError(f"{what}: ciphertext {index} is not a unit modulo n")
        out.append(c)
    return out


def vector_to_bytes(ev: EncryptedVector) -> bytes:
    """The ciphertexts of ``ev``, each ``ciphertext_width`` bytes, big-endian, concatenated.

    Key, scale and count travel separately (in the message); they are public anyway.
    """
    return _to_bytes(ev.ciphertexts, ev.public_key)


def vector_from_bytes(
    data: bytes, public_key: PublicKey, scale_bits: int, count: int
) -> EncryptedVector:
    """Parse :func:`vector_to_bytes` output, validating every ciphertext (CryptoError names
    the index of the first bad one)."""
    return EncryptedVector(
        public_key, _from_bytes(data, public_key, count, "encrypted vector"), scale_bits
    )


def packed_to_bytes(packed: PackedCiphertexts, public_key: PublicKey) -> bytes:
    """The packed ciphertexts, fixed width, big-endian; metadata travels separately."""
    check_packed(packed, public_key)
    return _to_bytes(packed.ciphertexts, public_key)


def packed_from_bytes(
    data: bytes,
    public_key: PublicKey,
    *,
    value_bits: int,
    count: int,
    slot_bits: int | None = None,
) -> PackedCiphertexts:
    """Parse :func:`packed_to_bytes` output for ``count`` slots of ``value_bits`` values.

    ``slot_bits``, when sent, must equal ``value_bits + 42``; the number of ciphertexts
    follows from ``count`` and the key size. Every ciphertext is validated.
    """
    if isinstance(value_bits, bool) or not isinstance(value_bits, int) or value_bits < 1:
        raise CryptoError(f"value_bits must be a positive integer, got {value_bits!r}")
    width = value_bits + SLOT_EXTRA_BITS
    if slot_bits is not None and slot_bits != width:
        raise CryptoError(f"slot_bits {slot_bits} must be value_bits + 42 = {width}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise CryptoError(f"count must be a non-negative integer, got {count!r}")
    expected = expected_ciphertexts(count, public_key.bits, width)
    cts = _from_bytes(data, public_key, expected, "packed ciphertexts")
    packed = PackedCiphertexts(public_key.fingerprint, width, value_bits, count, tuple(cts))
    check_packed(packed, public_key)
    return packed
