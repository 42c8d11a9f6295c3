"""Digit packing: many small values per ciphertext under one mask, for sums held modulo 2**d.

``mask_and_pack_digits`` puts up to ``group`` values ``v_k < 2**d`` of an encrypted vector into
one plaintext as the digits of ``V = sum_k v_k 2**(d (used - 1 - k))`` (first value high; Horner's
rule with ciphertext exponentiation by ``2**d``, so ``d`` squarings per value) and adds ONE mask
``R`` drawn uniformly from ``[0, 2**(d used + 80))``. The key owner decrypts ``V + R``:

- the whole number is within statistical distance ``2**-80`` of ``R`` alone, whatever the values;
- ``(V + R) mod 2**(d used)``, the part it forwards (as ``used`` digits of ``d`` bits), is exactly
  uniform, because the mask range is a multiple of ``2**(d used)``.

Whoever knows ``R`` (or the sum of the masks of several such numbers) recovers ``V`` (or the
sum of the ``V``) modulo ``2**(d used)``, and from it the digits, as long as every digit (or
digit sum) stays below ``2**d``. Compared with :func:`fedcredit.crypto.mask_and_pack`, whose
per-slot masks need ``value_bits + 42`` bits each, a slot costs only ``d`` bits here: more values
per decryption and fewer squarings per value. It fits values that are only ever used modulo
``2**d`` (sums of counts and balances), not signed fixed-point values.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fedcredit.crypto.executors.base import current_executor
from fedcredit.crypto.keys import PrivateKey, PublicKey, system_random
from fedcredit.crypto.serde import _from_bytes, _to_bytes
from fedcredit.crypto.vector import EncryptedVector
from fedcredit.errors import CryptoError

#: Statistical hiding of the packed number from the key owner, in bits.
DIGIT_MASK_SECURITY_BITS = 80


@dataclass(frozen=True)
class DigitPacked:
    """``count`` values packed ``group`` per ciphertext (the last may hold fewer), masked."""

    fingerprint: str
    digit_bits: int
    group: int
    count: int
    ciphertexts: tuple[Any, ...]


def digits_per_ciphertext(key_bits: int, digit_bits: int) -> int:
    """The largest group whose masked number stays below n (``key_bits`` long)."""
    return max(0, (key_bits - 2 - DIGIT_MASK_SECURITY_BITS) // digit_bits)


def _sizes(count: int, group: int) -> list[int]:
    """Values in each ciphertext, in order."""
    return [min(group, count - start) for start in range(0, count, group)]


def check_digits(packed: DigitPacked, public_key: PublicKey) -> None:
    """CryptoError unless ``packed`` is consistent with itself and with ``public_key``."""
    if packed.fingerprint != public_key.fingerprint:
        raise CryptoError(
            f"packed ciphertexts are for key {packed.fingerprint}, not {public_key.fingerprint}"
        )
    if packed.digit_bits < 1:
        raise CryptoError(f"digit_bits must be positive, got {packed.digit_bits}")
    most = digits_per_ciphertext(public_key.bits, packed.digit_bits)
    if not 1 <= packed.group <= most:
        raise CryptoError(f"a group of {packed.group} digits does not fit (1 to {most})")
    if packed.count < 1:
        raise CryptoError(f"a packed message holds at least one value, not {packed.count}")
    expected = len(_sizes(packed.count, packed.group))
    if len(packed.ciphertexts) != expected:
        raise CryptoError(
            f"{packed.count} values need {expected} ciphertexts, got {len(packed.ciphertexts)}"
        )


def mask_and_pack_digits(
    ev: EncryptedVector, digit_bits: int, group: int, *, rng: random.Random | None = None
) -> tuple[DigitPacked, list[int]]:
    """Pack ``group`` entries of ``ev`` per ciphertext as digits, mask each number, rerandomize.

    Every entry must decrypt to an integer in ``[0, 2**digit_bits)``. Returns the packed
    ciphertexts for the key owner and one mask per ciphertext, which the caller keeps. The
    fresh randomness is ``r**n`` with r uniform in Z*_n, not the owner's ``hs``: the owner
    learns ``V + R`` and nothing about which ciphertexts of ``ev`` were packed.
    """
    key = ev.public_key
    if len(ev) < 1:
        raise CryptoError("nothing to pack")
    sizes = _sizes(len(ev), group)
    if not 1 <= group <= digits_per_ciphertext(key.bits, digit_bits):
        raise CryptoError(f"a group of {group} digits of {digit_bits} bits does not fit the key")
    source = rng or system_random()
    masks = [source.getrandbits(digit_bits * used + DIGIT_MASK_SECURITY_BITS) for used in sizes]
    # One mask per ciphertext is the executor's Horner packing (``pack``, the thread pool's or
    # a Ray cluster's) with the mask in the last slot and zeros above it: its packed mask is
    # then R itself, entering as g**R = 1 + n R (no exponentiation), the same residue.
    groups = [
        (ev.ciphertexts[start : start + used], [0] * (used - 1) + [mask])
        for start, used, mask in zip(range(0, len(ev), group), sizes, masks, strict=True)
    ]
    n, nsq = key.n, key.nsquare
    packed = current_executor().pack(n, nsq, digit_bits, groups)
    # The key's owner decrypts these: textbook randomness, never its own base hs (review F6).
    obfuscators = key.full_obfuscators(len(packed), rng)
    fresh = tuple(c * r % nsq for c, r in zip(packed, obfuscators, strict=True))
    return DigitPacked(key.fingerprint, digit_bits, group, len(ev), fresh), masks


def decrypt_digit_numbers(private_key: PrivateKey, packed: DigitPacked) -> list[int]:
    """The masked numbers ``V + R``, one per ciphertext: everything the key owner learns."""
    check_digits(packed, private_key.public_key)
    return [int(v) for v in private_key.raw_decrypt_many(packed.ciphertexts)]


def decrypt_digits(private_key: PrivateKey, packed: DigitPacked) -> list[int]:
    """The ``count`` digits of ``(V + R) mod 2**(d used)``, in value order (each uniform)."""
    numbers = decrypt_digit_numbers(private_key, packed)
    return split_digits(numbers, packed.digit_bits, packed.group, packed.count)


def split_digits(numbers: Sequence[int], digit_bits: int, group: int, count: int) -> list[int]:
    """Each number reduced modulo ``2**(d used)`` and cut into its ``used`` digits, high first."""
    sizes = _sizes(count, group)
    if len(numbers) != len(sizes):
        raise CryptoError(f"{count} values in groups of {group} need {len(sizes)} numbers")
    digit_mask = (1 << digit_bits) - 1
    out: list[int] = []
    for number, used in zip(numbers, sizes, strict=True):
        out.extend((number >> (digit_bits * k)) & digit_mask for k in range(used - 1, -1, -1))
    return out


def join_digits(digits: Sequence[int], digit_bits: int, group: int) -> list[int]:
    """The inverse of :func:`split_digits` for numbers already reduced: one int per group."""
    numbers: list[int] = []
    for start in range(0, len(digits), group):
        number = 0
        for digit in digits[start : start + group]:
            number = (number << digit_bits) | digit
        numbers.append(number)
    return numbers


def group_sizes(count: int, group: int) -> list[int]:
    """How many values each number of a packed message holds (the last may hold fewer)."""
    if count < 0 or group < 1:
        raise CryptoError(f"bad count {count} or group {group}")
    return _sizes(count, group)


def digits_to_bytes(packed: DigitPacked, public_key: PublicKey) -> bytes:
    """The ciphertexts, fixed width, big-endian; the metadata travels separately."""
    check_digits(packed, public_key)
    return _to_bytes(packed.ciphertexts, public_key)


def digits_from_bytes(
    data: bytes, public_key: PublicKey, *, digit_bits: int, group: int, count: int
) -> DigitPacked:
    """Parse :func:`digits_to_bytes` output; every ciphertext and the layout are validated."""
    for name, value in (("digit_bits", digit_bits), ("group", group), ("count", count)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CryptoError(f"{name} must be a positive integer, got {value!r}")
    if not 1 <= group <= digits_per_ciphertext(public_key.bits, digit_bits):
        raise CryptoError(f"a group of {group} digits of {digit_bits} bits does not fit the key")
    expected = len(_sizes(count, group))
    cts = _from_bytes(data, public_key, expected, "packed digits")
    packed = DigitPacked(public_key.fingerprint, digit_bits, group, count, tuple(cts))
    check_digits(packed, public_key)
    return packed
