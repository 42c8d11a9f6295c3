"""Digit packing: values packed as digits of one masked number per ciphertext."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy import stats

from fedcredit.crypto import (
    PrivateKey,
    PublicKey,
    decrypt_digit_numbers,
    decrypt_digits,
    digits_from_bytes,
    digits_per_ciphertext,
    digits_to_bytes,
    encrypt_vector,
    mask_and_pack_digits,
)
from fedcredit.crypto.digits import DIGIT_MASK_SECURITY_BITS, group_sizes, split_digits
from fedcredit.errors import CryptoError

# A false alarm once in a million runs; unmasked values fail at p ~ 0 with 440 a side.
ALPHA = 1e-6

DIGIT = 80


def encrypt_ints(public: PublicKey, values: list[int]):  # type: ignore[no-untyped-def]
    return encrypt_vector(public, np.zeros(len(values)), 0).add_plain_ints(values)


def test_a_group_fits_below_n_with_the_mask() -> None:
    assert digits_per_ciphertext(2048, DIGIT) == 24
    assert digits_per_ciphertext(1024, DIGIT) == 11
    for bits in (1024, 2048, 3072):
        group = digits_per_ciphertext(bits, DIGIT)
        assert DIGIT * group + DIGIT_MASK_SECURITY_BITS + 1 <= bits - 1


def test_the_mask_sum_recovers_the_sum_of_several_packed_vectors(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    rng = random.Random(5)
    count, group = 25, 11
    vectors = [[rng.randrange(1 << 64) for _ in range(count)] for _ in range(3)]
    mask_sums = [0] * len(group_sizes(count, group))
    received = []
    for values in vectors:
        packed, masks = mask_and_pack_digits(encrypt_ints(public, values), DIGIT, group)
        mask_sums = [s + m for s, m in zip(mask_sums, masks, strict=True)]
        received.append(decrypt_digit_numbers(private, packed))

    sizes = group_sizes(count, group)
    totals = [
        (sum(column) - mask) % (1 << (DIGIT * used))
        for *column, mask, used in zip(*received, mask_sums, sizes, strict=True)
    ]

    assert split_digits(totals, DIGIT, group, count) == [sum(v) for v in zip(*vectors, strict=True)]


def test_the_forwarded_digits_are_uniform_and_the_numbers_hide_the_values(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    small = encrypt_ints(public, [0] * 440)
    large = encrypt_ints(public, [(1 << 64) - 1] * 440)

    views = []
    for ev in (small, large):
        packed, _ = mask_and_pack_digits(ev, DIGIT, 11)
        numbers = decrypt_digit_numbers(private, packed)
        digits = decrypt_digits(private, packed)
        views.append(([v / 2 ** (DIGIT * 11 + 80) for v in numbers], digits))

    (numbers_a, digits_a), (numbers_b, digits_b) = views
    assert stats.ks_2samp(numbers_a, numbers_b).pvalue > ALPHA
    for digits in (digits_a, digits_b):
        assert all(0 <= d < 1 << DIGIT for d in digits)
        assert stats.kstest([d / 2**DIGIT for d in digits], "uniform").pvalue > ALPHA


def test_one_value_is_one_ciphertext(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    packed, masks = mask_and_pack_digits(encrypt_ints(public, [7]), DIGIT, 11)
    assert len(packed.ciphertexts) == 1 and len(masks) == 1
    assert masks[0] < 1 << (DIGIT + DIGIT_MASK_SECURITY_BITS)


def test_serialization_round_trips_and_refuses_a_wrong_layout(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    packed, _ = mask_and_pack_digits(encrypt_ints(public, list(range(13))), DIGIT, 11)
    data = digits_to_bytes(packed, public)

    back = digits_from_bytes(data, public, digit_bits=DIGIT, group=11, count=13)

    assert decrypt_digits(private, back) == decrypt_digits(private, packed)
    with pytest.raises(CryptoError):
        digits_from_bytes(data, public, digit_bits=DIGIT, group=12, count=13)  # too big a group
    with pytest.raises(CryptoError):
        digits_from_bytes(data, public, digit_bits=DIGIT, group=11, count=30)  # wrong length
    with pytest.raises(CryptoError):
        digits_from_bytes(data, public, digit_bits=DIGIT, group=6, count=13)  # 3 numbers, not 2


def test_a_group_too_large_for_the_key_is_refused(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="does not fit"):
        mask_and_pack_digits(encrypt_ints(public, [1, 2]), DIGIT, 12)
