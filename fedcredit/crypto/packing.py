"""Masked, packed decryption: the only way the coordinator decrypts anything.

The data party adds to each value v (|v| < 2**value_bits) a fresh mask r drawn uniformly
from [2**(value_bits+40), 2**(value_bits+41)), so v + r is a positive integer whose
distribution is within 2**-40 of one that does not depend on v. It packs several of them
into one ciphertext (slots of value_bits + 42 bits, by Horner's rule with ciphertext
exponentiation by 2**slot_bits) and rerandomizes. The coordinator decrypts and returns the
slots; it learns the count and the slot width, and each v only up to that statistical
distance. The data party subtracts its masks.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedcredit.crypto.codec import from_fixed, to_fixed
from fedcredit.crypto.executors.base import current_executor
from fedcredit.crypto.keys import PrivateKey, PublicKey, system_random
from fedcredit.crypto.vector import EncryptedVector, encrypt_ints
from fedcredit.errors import CryptoError

#: Statistical hiding of a masked value, in bits.
MASK_SECURITY_BITS = 40
#: Slot width beyond value_bits: 40 bits of mask, 1 for its top bit, 1 of carry headroom.
SLOT_EXTRA_BITS = 42


@dataclass(frozen=True)
class PackedCiphertexts:
    """Ciphertexts each holding up to ``slots_per_ciphertext`` masked slots, first slot high."""

    fingerprint: str
    slot_bits: int
    value_bits: int
    count: int
    ciphertexts: tuple[Any, ...]


def slots_per_ciphertext(key_bits: int, slot_bits: int) -> int:
    """How many slots of ``slot_bits`` fit below n (``key_bits`` long) without wrapping."""
    return (key_bits - 1) // slot_bits


def _check_value_bits(value_bits: int, key_bits: int) -> int:
    if isinstance(value_bits, bool) or not isinstance(value_bits, int) or value_bits < 1:
        raise CryptoError(f"value_bits must be a positive integer, got {value_bits!r}")
    if slots_per_ciphertext(key_bits, value_bits + SLOT_EXTRA_BITS) < 1:
        raise CryptoError(f"value_bits {value_bits} leaves no room for a slot in the key")
    return value_bits


def draw_masks(count: int, value_bits: int, rng: random.Random | None = None) -> list[int]:
    """``count`` masks uniform on ``[2**(value_bits+40), 2**(value_bits+41))``."""
    source = rng or system_random()
    low_bits = value_bits + MASK_SECURITY_BITS
    top = 1 << low_bits
    return [top | source.getrandbits(low_bits) for _ in range(count)]


def mask_and_pack(
    ev: EncryptedVector, value_bits: int, *, rng: random.Random | None = None
) -> tuple[PackedCiphertexts, list[int]]:
    """Mask every entry of ``ev`` (|value| < 2**value_bits at its scale), pack, rerandomize.

    Returns the packed ciphertexts for the coordinator and the masks, which the caller
    keeps secret and later passes to :func:`unmask`. The fresh randomness is DJN's ``hs**x``
    although the coordinator, who decrypts, owns the key and chose ``hs``: re-randomizing with
    a base the owner chose only fails to hide which of the OWNER's ciphertexts went in
    (security review F6), and the coordinator makes none. Every input here was encrypted by a
    data party, never seen by the coordinator, and each slot is masked 40 bits wider than its
    value, so even a base whose powers the coordinator strips leaves it the masked slots only
    (tests/security/test_rerandomize.py). A key owner that is a data party (binning, the debt
    check) gets ``r**n`` instead (:meth:`EncryptedVector.rerandomize_for_owner`).
    ``rng`` is for deterministic tests.
    """
    key = ev.public_key
    _check_value_bits(value_bits, key.bits)
    slot_bits = value_bits + SLOT_EXTRA_BITS
    per = slots_per_ciphertext(key.bits, slot_bits)
    masks = draw_masks(len(ev), value_bits, rng)
    groups = [
        (ev.ciphertexts[start : start + per], masks[start : start + per])
        for start in range(0, len(ev), per)
    ]
    nsq = key.nsquare
    packed = current_executor().pack(key.n, nsq, slot_bits, groups)
    # DJN's fast path: the coordinator saw none of the inputs, so there is nothing to link.
    obfuscators = key.obfuscators(len(packed), rng)
    fresh = tuple(c * r % nsq for c, r in zip(packed, obfuscators, strict=True))
    return PackedCiphertexts(key.fingerprint, slot_bits, value_bits, len(ev), fresh), masks


def expected_ciphertexts(count: int, key_bits: int, slot_bits: int) -> int:
    per = slots_per_ciphertext(key_bits, slot_bits)
    return -(-count // per) if per else 0


def packed_count(count: int, key_bits: int, value_bits: int) -> int:
    """How many ciphertexts ``encrypt_packed`` makes of ``count`` values of ``value_bits``."""
    return expected_ciphertexts(count, key_bits, value_bits + SLOT_EXTRA_BITS)


def check_packed(packed: PackedCiphertexts, public_key: PublicKey) -> None:
    """CryptoError unless ``packed`` is consistent with itself and with ``public_key``."""
    if packed.fingerprint != public_key.fingerprint:
        raise CryptoError(
            f"packed ciphertexts are for key {packed.fingerprint}, not {public_key.fingerprint}"
        )
    _check_value_bits(packed.value_bits, public_key.bits)
    if packed.slot_bits != packed.value_bits + SLOT_EXTRA_BITS:
        raise CryptoError(
            f"slot_bits {packed.slot_bits} must be value_bits + {SLOT_EXTRA_BITS} "
            f"= {packed.value_bits + SLOT_EXTRA_BITS}"
        )
    if packed.count < 0:
        raise CryptoError(f"negative slot count {packed.count}")
    expected = expected_ciphertexts(packed.count, public_key.bits, packed.slot_bits)
    if len(packed.ciphertexts) != expected:
        raise CryptoError(
            f"{packed.count} slots need {expected} ciphertexts, got {len(packed.ciphertexts)}"
        )


def decrypt_packed(private_key: PrivateKey, packed: PackedCiphertexts) -> list[int]:
    """The masked slot values (non-negative ints), in order: all the coordinator sees."""
    key = private_key.public_key
    check_packed(packed, key)
    per = slots_per_ciphertext(key.bits, packed.slot_bits)
    plains = private_key.raw_decrypt_many(packed.ciphertexts)
    slot_mask = (1 << packed.slot_bits) - 1
    slots: list[int] = []
    for index, plain in enumerate(plains):
        used = min(per, packed.count - index * per)
        value = int(plain)
        if value >> (used * packed.slot_bits):
            raise CryptoError(f"packed ciphertext {index} decrypts past its {used} slots")
        for k in range(used - 1, -1, -1):
            slots.append((value >> (k * packed.slot_bits)) & slot_mask)
    return slots


def unmask(
    slots: Sequence[int], masks: Sequence[int], scale_bits: int, *, value_bits: int | None = None
) -> npt.NDArray[np.float64]:
    """Subtract the masks exactly, check ``|v| < 2**value_bits``, decode at ``scale_bits``.

    ``value_bits`` defaults to the one the masks were drawn for (mask length - 41). A
    result outside the bound raises CryptoError: the caller's bound on the values was wrong
    (or a slot was tampered with).
    """
    if len(slots) != len(masks):
        raise CryptoError(f"{len(slots)} slots but {len(masks)} masks")
    values: list[int] = []
    for index, (slot, mask) in enumerate(zip(slots, masks, strict=True)):
        bits = value_bits
        if bits is None:
            bits = int(mask).bit_length() - MASK_SECURITY_BITS - 1
        value = int(slot) - int(mask)
        if bits < 1 or abs(value) >= 1 << bits:
            raise CryptoError(
                f"unmasked value at index {index} is outside ±2**{bits}: the value bound "
                "given to mask_and_pack was too small"
            )
        values.append(value)
    return from_fixed(values, scale_bits)


def pack_for_owner(
    values: EncryptedVector, value_bits: int, *, rng: random.Random | None = None
) -> PackedCiphertexts:
    """Pack ``values`` several to a ciphertext, first slot high, like ``mask_and_pack`` but
    without masks: for the key's owner, who may read every value (binning's per-bin sums).

    Each value must be a non-negative integer below ``2**value_bits`` at scale 0 (the caller
    offsets signed values). Slots are ``value_bits + SLOT_EXTRA_BITS`` wide, as in
    ``mask_and_pack``, so ``decrypt_packed`` reads them back. The owner knows its own key's
    ``hs`` base, so the packed ciphertexts get textbook randomness instead (review F6): the
    ``r**n`` on the current executor, like the packing. ``rng`` is for deterministic tests.
    """
    key = values.public_key
    slot_bits = value_bits + SLOT_EXTRA_BITS
    per = slots_per_ciphertext(key.bits, slot_bits)
    # Horner (``acc**(2**slot_bits) * c``, the kernel of mask_and_pack, with no masks): about
    # slot_bits squarings per slot, the same residue as the weighted sum with weights
    # 2**(slot_bits * k) it replaces (a bucket multi-exponentiation): at 2048 bits, 10 packed
    # ciphertexts of 16 slots took 0.06-0.15 s against 0.27-0.30 s on one loaded core.
    groups = [
        (
            values.ciphertexts[start : start + per],
            [0] * len(values.ciphertexts[start : start + per]),
        )
        for start in range(0, len(values), per)
    ]
    joined = current_executor().pack(key.n, key.nsquare, slot_bits, groups)
    packed = (
        EncryptedVector(key, joined, values.scale_bits).rerandomize_for_owner(rng)
        if groups
        else values
    )
    return PackedCiphertexts(
        key.fingerprint, slot_bits, value_bits, len(values), tuple(packed.ciphertexts)
    )


def _packed_plaintexts(
    values: Sequence[int], value_bits: int, slot_bits: int, per: int
) -> list[int]:
    """Signed slot values ``|v| < 2**value_bits`` summed into integers in ``mask_and_pack``'s
    layout (``per`` to an integer, first slot high); CryptoError naming a value past the bound."""
    bound = 1 << value_bits
    plains: list[int] = []
    for start in range(0, len(values), per):
        total = 0
        for index in range(start, min(start + per, len(values))):
            value = int(values[index])
            if not -bound < value < bound:
                raise CryptoError(
                    f"value at index {index} is outside ±2**{value_bits}: it does not fit its slot"
                )
            total = (total << slot_bits) + value
        plains.append(total)
    return plains


def encrypt_packed(
    public_key: PublicKey, values: npt.ArrayLike, value_bits: int, scale_bits: int
) -> EncryptedVector:
    """Values at ``2**scale_bits`` (``|v| < 2**value_bits`` once scaled) packed into plaintexts
    in ``mask_and_pack``'s layout and encrypted with fresh DJN randomness: one encryption per
    ``slots_per_ciphertext`` values instead of one per value.

    Packed this way, ciphertexts add slot by slot exactly (a negative slot borrows from the
    one above it, and the masks ``mask_packed`` adds give every borrow back). The receiver
    learns the count of ciphertexts, which follows from ``len(values)`` and the key alone.
    """
    _check_value_bits(value_bits, public_key.bits)
    slot_bits = value_bits + SLOT_EXTRA_BITS
    per = slots_per_ciphertext(public_key.bits, slot_bits)
    n = int(public_key.n)
    plains = _packed_plaintexts(to_fixed(values, scale_bits), value_bits, slot_bits, per)
    return encrypt_ints(public_key, [p % n for p in plains], scale_bits)


def mask_packed(
    packed: EncryptedVector,
    values: npt.ArrayLike,
    value_bits: int,
    *,
    rng: random.Random | None = None,
) -> tuple[PackedCiphertexts, list[int]]:
    """Add ``values`` (at the ciphertexts' scale, ``|v| < 2**value_bits`` once scaled) and a
    fresh mask per slot to ciphertexts packed by ``encrypt_packed`` (or sums of them), and
    re-randomize: what ``mask_and_pack`` makes of one ciphertext per value, at one plaintext
    addition per ciphertext.

    Each slot then holds its sum plus a mask uniform on ``[2**(value_bits+40),
    2**(value_bits+41))``, as with ``mask_and_pack``; as long as every slot's sum stays within
    ±2**value_bits (``unmask`` checks it) no slot reaches into its neighbour. ``len(values)``
    is the slot count. Returns the packed ciphertexts for the coordinator and the masks.
    """
    key = packed.public_key
    _check_value_bits(value_bits, key.bits)
    slot_bits = value_bits + SLOT_EXTRA_BITS
    per = slots_per_ciphertext(key.bits, slot_bits)
    own = to_fixed(values, packed.scale_bits)
    count = len(own)
    if len(packed) != expected_ciphertexts(count, key.bits, slot_bits):
        raise CryptoError(
            f"{count} slots need {expected_ciphertexts(count, key.bits, slot_bits)} packed "
            f"ciphertexts, got {len(packed)}"
        )
    masks = draw_masks(count, value_bits, rng)
    _packed_plaintexts(own, value_bits, slot_bits, per)  # Refuses a value past its slot.
    shifted = [v + m for v, m in zip(own, masks, strict=True)]
    plains = _packed_plaintexts(shifted, value_bits + SLOT_EXTRA_BITS, slot_bits, per)
    # DJN's fast path, as in mask_and_pack: the coordinator made none of the ciphertexts.
    summed = packed.add_plain_ints(plains).rerandomize(rng)
    fresh = tuple(summed.ciphertexts)
    return PackedCiphertexts(key.fingerprint, slot_bits, value_bits, count, fresh), masks
