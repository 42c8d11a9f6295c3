"""Masked, packed decryption: what the coordinator sees and what the owner recovers."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from fedcredit.crypto import (
    PackedCiphertexts,
    PrivateKey,
    PublicKey,
    decrypt_packed,
    encrypt_vector,
    generate_keypair,
    mask_and_pack,
    matvec_t,
    unmask,
)
from fedcredit.crypto.packing import slots_per_ciphertext
from fedcredit.crypto.vector import encrypt_ints
from fedcredit.errors import CryptoError


def test_packed_values_with_negative_slots_round_trip(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    values = np.array([-3.5, 0.0, 2.25, -1e6, 1e6, -0.0009765625] * 5)
    packed, masks = mask_and_pack(encrypt_vector(public, values, 10), 40)
    assert unmask(decrypt_packed(private, packed), masks, 10).tolist() == values.tolist()


def test_packing_fills_each_ciphertext_with_as_many_slots_as_fit(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, _ = keypair
    per = slots_per_ciphertext(1024, 60 + 42)
    packed, masks = mask_and_pack(encrypt_vector(public, np.zeros(per + 1), 0), 60)
    assert (packed.slot_bits, packed.value_bits, packed.count) == (102, 60, per + 1)
    assert len(packed.ciphertexts) == 2
    assert packed.fingerprint == public.fingerprint
    assert len(masks) == per + 1


def test_slots_are_value_plus_mask_and_masks_are_in_range(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    values = [-(2**20) + 1, 2**20 - 1, 0, -5]
    packed, masks = mask_and_pack(encrypt_ints(public, values, 0), 20, rng=random.Random(1))
    slots = decrypt_packed(private, packed)
    assert all(2**60 <= m < 2**61 for m in masks)
    assert slots == [v + m for v, m in zip(values, masks, strict=True)]
    assert all(s > 0 for s in slots)


def test_injected_rng_makes_masks_deterministic(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    ev = encrypt_vector(public, np.ones(3), 0)
    assert (
        mask_and_pack(ev, 8, rng=random.Random(2))[1]
        == mask_and_pack(ev, 8, rng=random.Random(2))[1]
    )


def test_unmask_raises_when_the_value_bound_was_too_small(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    packed, masks = mask_and_pack(encrypt_ints(public, [2**12], 0), 8)
    with pytest.raises(CryptoError, match="index 0 is outside"):
        unmask(decrypt_packed(private, packed), masks, 0)


def test_unmask_refuses_mismatched_lengths() -> None:
    with pytest.raises(CryptoError, match="2 slots but 1 masks"):
        unmask([1, 2], [2**50], 0)


def test_decrypt_packed_refuses_another_keys_packing(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, private = keypair
    packed, _ = mask_and_pack(encrypt_vector(public, np.ones(2), 0), 8)
    forged = dataclasses.replace(packed, fingerprint="0" * 32)
    with pytest.raises(CryptoError, match="for key"):
        decrypt_packed(private, forged)


def test_decrypt_packed_refuses_a_wrong_slot_width(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, private = keypair
    packed, _ = mask_and_pack(encrypt_vector(public, np.ones(2), 0), 8)
    with pytest.raises(CryptoError, match="slot_bits 49"):
        decrypt_packed(private, dataclasses.replace(packed, slot_bits=49))


def test_decrypt_packed_refuses_a_count_that_needs_more_ciphertexts(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    packed, _ = mask_and_pack(encrypt_vector(public, np.ones(2), 0), 8)
    with pytest.raises(CryptoError, match="100 slots need 5 ciphertexts, got 1"):
        decrypt_packed(private, dataclasses.replace(packed, count=100))


def test_decrypt_packed_refuses_a_plaintext_wider_than_its_slots(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    wide = encrypt_ints(public, [2**200], 0).ciphertexts
    packed = PackedCiphertexts(public.fingerprint, 50, 8, 1, tuple(wide))
    with pytest.raises(CryptoError, match="past its 1 slots"):
        decrypt_packed(private, packed)


def test_mask_and_pack_refuses_value_bits_that_leave_no_slot(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="no room"):
        mask_and_pack(encrypt_vector(public, np.ones(1), 0), 1000)


def test_mask_and_pack_refuses_non_positive_value_bits(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="positive"):
        mask_and_pack(encrypt_vector(public, np.ones(1), 0), 0)


def test_full_gradient_path_at_2048_bits() -> None:
    public, private = generate_keypair(2048, rng=random.Random(2048))
    rng = np.random.default_rng(0)
    d = rng.normal(size=64)
    x = rng.integers(-(2**11), 2**11, size=(64, 10))
    gradient = matvec_t(x, 8, encrypt_vector(public, d, 24))
    packed, masks = mask_and_pack(gradient, 50)
    result = unmask(decrypt_packed(private, packed), masks, gradient.scale_bits)
    expected = x.T @ (np.rint(d * 2**24) / 2**24) / 2**8
    assert len(packed.ciphertexts) == 1
    assert np.array_equal(result, expected)


def test_packed_homomorphic_sums_with_negative_results_unmask_exactly(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    a = np.array([1.5, -7.25, 0.0, 3.0, -1e5])
    b = np.array([-4.0, 2.0, -0.5, -3.0, 2e5])
    total = encrypt_vector(public, a, 12).add(encrypt_vector(public, b, 12))
    packed, masks = mask_and_pack(total, 32)
    assert unmask(decrypt_packed(private, packed), masks, 12).tolist() == (a + b).tolist()
