"""The few Paillier operations the loan-stacking protocol needs, on top of ``fedcredit.crypto``.

Only this module of ``fedcredit.debt`` touches the Paillier engine, so the protocol reads as
plain steps: a lender encrypts its row values, the coordinator selects and masks them, a lender
decrypts masked slots.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedcredit.crypto import (
    EncryptedVector,
    PackedCiphertexts,
    PrivateKey,
    PublicKey,
    decrypt_packed,
    encrypt_vector,
    mask_and_pack,
)
from fedcredit.debt.encoding import VALUE_BITS

__all__ = [
    "EncryptedVector",
    "PackedCiphertexts",
    "PrivateKey",
    "PublicKey",
    "decrypt_masked_slots",
    "encrypt_values",
    "mask_selected",
]


def encrypt_values(public_key: PublicKey, values: Sequence[int]) -> EncryptedVector:
    """Fresh encryptions of non-negative integers (scale 0), one ciphertext per value."""
    return encrypt_vector(public_key, np.zeros(len(values)), 0).add_plain_ints(list(values))


def mask_selected(
    rows: EncryptedVector, indices: Sequence[int]
) -> tuple[PackedCiphertexts, list[int]]:
    """Select rows, add a fresh mask to each, pack and rerandomize.

    The key owner who decrypts the result sees only ``value + mask`` per slot, with the mask
    uniform on a range ``2**80`` times wider than any value; the caller keeps the masks.
    """
    return mask_and_pack(rows.take(list(indices)), VALUE_BITS)


def decrypt_masked_slots(private_key: PrivateKey, packed: PackedCiphertexts) -> list[int]:
    """The masked slot values of a packed message (non-negative integers)."""
    return [int(v) for v in decrypt_packed(private_key, packed)]
