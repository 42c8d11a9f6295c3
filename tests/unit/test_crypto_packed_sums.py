"""Values packed before encryption (``encrypt_packed``), summed and masked slot by slot
(``mask_packed``): the same slots, and the same decrypted sums, as one ciphertext per value."""

from __future__ import annotations

import random

import pytest

from fedcredit.crypto import (
    PrivateKey,
    PublicKey,
    decrypt_packed,
    encrypt_packed,
    mask_and_pack,
    mask_packed,
    unmask,
)
from fedcredit.crypto.packing import MASK_SECURITY_BITS, expected_ciphertexts
from fedcredit.crypto.vector import encrypt_ints
from fedcredit.errors import CryptoError

VALUE_BITS = 33
SCALE = 0  # integers as they are: to_fixed leaves them unscaled


def _values(rng: random.Random, count: int) -> list[int]:
    bound = 1 << (VALUE_BITS - 2)
    return [rng.randrange(-bound, bound) for _ in range(count)]


@pytest.mark.parametrize("count", [1, 2, 13, 14, 15, 40])
def test_packed_partials_plus_own_parts_decrypt_to_the_exact_sums(
    keypair: tuple[PublicKey, PrivateKey], count: int
) -> None:
    # Arrange: two partners' signed parts and the lender's, some negative, some zero.
    public, private = keypair
    rng = random.Random(count)
    first, second, own = _values(rng, count), _values(rng, count), _values(rng, count)
    first[0] = 0

    # Act
    summed = encrypt_packed(public, first, VALUE_BITS, SCALE).add(
        encrypt_packed(public, second, VALUE_BITS, SCALE)
    )
    packed, masks = mask_packed(summed, own, VALUE_BITS)
    slots = decrypt_packed(private, packed)

    # Assert: exact integers, one ciphertext per slots_per_ciphertext values.
    expected = [a + b + c for a, b, c in zip(first, second, own, strict=True)]
    assert len(summed) == expected_ciphertexts(count, public.bits, VALUE_BITS + 42)
    assert packed.count == count
    assert [int(v) for v in unmask(slots, masks, 0)] == expected


def test_the_coordinator_gets_the_same_shape_and_mask_range_as_from_one_ciphertext_per_value(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    rng = random.Random(5)
    values = _values(rng, 30)
    zero = [0] * 30
    old, _ = mask_and_pack(encrypt_ints(public, [v % public.n for v in values], SCALE), VALUE_BITS)

    new, _ = mask_packed(encrypt_packed(public, values, VALUE_BITS, SCALE), zero, VALUE_BITS)

    assert (new.slot_bits, new.value_bits, new.count, len(new.ciphertexts)) == (
        old.slot_bits,
        old.value_bits,
        old.count,
        len(old.ciphertexts),
    )
    low = 1 << (VALUE_BITS + MASK_SECURITY_BITS)
    bound = 1 << VALUE_BITS
    assert all(low - bound < s < 2 * low + bound for s in decrypt_packed(private, new))


def test_fresh_masks_every_time_and_fresh_ciphertexts(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    summed = encrypt_packed(public, [7, -7, 0], VALUE_BITS, SCALE)

    first, masks_a = mask_packed(summed, [0, 0, 0], VALUE_BITS)
    second, masks_b = mask_packed(summed, [0, 0, 0], VALUE_BITS)

    assert set(masks_a).isdisjoint(masks_b)
    assert set(first.ciphertexts).isdisjoint(second.ciphertexts)
    assert set(first.ciphertexts).isdisjoint(summed.ciphertexts)
    assert decrypt_packed(private, first) != decrypt_packed(private, second)


def test_a_value_past_its_slot_is_refused_naming_its_index(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="index 1 is outside"):
        encrypt_packed(public, [1, 1 << VALUE_BITS, 2], VALUE_BITS, SCALE)
    summed = encrypt_packed(public, [1, 2, 3], VALUE_BITS, SCALE)
    with pytest.raises(CryptoError, match="index 2 is outside"):
        mask_packed(summed, [0, 0, -(1 << VALUE_BITS)], VALUE_BITS)


def test_a_sum_with_the_wrong_number_of_ciphertexts_is_refused(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, _ = keypair
    summed = encrypt_packed(public, [1, 2, 3], VALUE_BITS, SCALE)
    with pytest.raises(CryptoError, match="40 slots need 4 packed ciphertexts, got 1"):
        mask_packed(summed, [0] * 40, VALUE_BITS)


def test_a_sum_past_the_value_bound_is_caught_at_unmask(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    # Two parts each within the bound whose sum is not: unmask names the slot.
    public, private = keypair
    half = (1 << VALUE_BITS) - 1
    summed = encrypt_packed(public, [0, half], VALUE_BITS, SCALE)
    packed, masks = mask_packed(summed, [0, half], VALUE_BITS)
    with pytest.raises(CryptoError, match="index 1 is outside"):
        unmask(decrypt_packed(private, packed), masks, 0)
