"""The few Paillier operations the loan-stacking protocol needs, on top of ``fedcredit.crypto``.

Only this module of ``fedcredit.debt`` touches the Paillier engine, so the protocol reads as
plain steps: a lender encrypts its row values, the coordinator selects, packs and masks them, a
lender decrypts the masked numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from fedcredit.crypto import (
    DigitPacked,
    EncryptedVector,
    PrivateKey,
    PublicKey,
    check_peer_key,
    decrypt_digit_numbers,
    decrypt_digits,
    digits_per_ciphertext,
    encrypt_ints_for_owner,
    encrypt_vector,
    mask_and_pack_digits,
)
from fedcredit.debt.encoding import DIGIT_BITS

__all__ = [
    "DigitPacked",
    "EncryptedVector",
    "PrivateKey",
    "PublicKey",
    "check_peer_key",
    "decrypt_masked_numbers",
    "decrypt_masked_slots",
    "encrypt_values",
    "encrypt_values_for_owner",
    "group_size",
    "mask_selected",
]


def encrypt_values(public_key: PublicKey, values: Sequence[int]) -> EncryptedVector:
    """Fresh encryptions of non-negative integers (scale 0), one ciphertext per value."""
    return encrypt_vector(public_key, np.zeros(len(values)), 0).add_plain_ints(list(values))


def encrypt_values_for_owner(public_key: PublicKey, values: Sequence[int]) -> EncryptedVector:
    """Encryptions of non-negative integers that someone other than the key's owner makes and
    that reach the owner (the coordinator's Enc(0) and Enc(1)): textbook randomness, never the
    owner's base, which might carry a value of its own."""
    return encrypt_ints_for_owner(public_key, list(values), 0)


def group_size(keys: Iterable[PublicKey]) -> int:
    """Applicants per ciphertext for a query: what the smallest of the lenders' keys holds
    (the same for every lender, so that the querier can add the lenders' numbers)."""
    return min((digits_per_ciphertext(key.bits, DIGIT_BITS) for key in keys), default=1)


def mask_selected(
    rows: EncryptedVector, indices: Sequence[int], group: int
) -> tuple[DigitPacked, list[int]]:
    """Select rows, pack ``group`` per ciphertext as 80-bit digits, mask each number once,
    rerandomize.

    The key owner who decrypts the result sees ``V + R`` per ciphertext, with the mask ``R``
    ``2**80`` times wider than the packed values ``V``; the caller keeps the masks. The fresh
    randomness is textbook ``r**n``, so the owner cannot tell which rows were selected even
    when it chose the rows' randomness and its base ``hs``.
    """
    return mask_and_pack_digits(rows.take(list(indices)), DIGIT_BITS, group)


def decrypt_masked_slots(private_key: PrivateKey, packed: DigitPacked) -> list[int]:
    """Per applicant, the 80-bit digit of the masked number (each exactly uniform)."""
    return decrypt_digits(private_key, packed)


def decrypt_masked_numbers(private_key: PrivateKey, packed: DigitPacked) -> list[int]:
    """The whole masked numbers, one per ciphertext: everything the key owner learns."""
    return decrypt_digit_numbers(private_key, packed)
