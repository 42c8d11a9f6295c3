"""Ciphertext bytes: fixed width, and validation of everything read from a peer."""

from __future__ import annotations

import numpy as np
import pytest

from fedcredit.crypto import (
    PrivateKey,
    PublicKey,
    decrypt_packed,
    decrypt_vector,
    encrypt_vector,
    mask_and_pack,
    packed_from_bytes,
    packed_to_bytes,
    unmask,
    vector_from_bytes,
    vector_to_bytes,
)
from fedcredit.crypto.serde import ciphertext_width
from fedcredit.errors import CryptoError


def replace_ciphertext(data: bytes, index: int, value: int, width: int) -> bytes:
    return data[: index * width] + value.to_bytes(width, "big") + data[(index + 1) * width :]


def test_vector_bytes_round_trip_with_fixed_width(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, private = keypair
    ev = encrypt_vector(public, np.array([1.0, -2.0, 3.5]), 8)
    data = vector_to_bytes(ev)
    assert len(data) == 3 * 256 == 3 * ciphertext_width(public)
    assert decrypt_vector(private, vector_from_bytes(data, public, 8, 3)).tolist() == [
        1.0,
        -2.0,
        3.5,
    ]


def test_vector_from_bytes_refuses_a_wrong_length(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    data = vector_to_bytes(encrypt_vector(public, np.ones(2), 8))
    with pytest.raises(CryptoError, match="expected 2 ciphertexts of 256 bytes"):
        vector_from_bytes(data[:-1], public, 8, 2)
    with pytest.raises(CryptoError, match="expected 3"):
        vector_from_bytes(data, public, 8, 3)


@pytest.mark.parametrize("bad", ["zero", "n_squared", "multiple_of_n"])
def test_vector_from_bytes_names_the_bad_ciphertext(
    keypair: tuple[PublicKey, PrivateKey], bad: str
) -> None:
    public, _ = keypair
    width = ciphertext_width(public)
    value = {"zero": 0, "n_squared": int(public.nsquare), "multiple_of_n": int(public.n) * 7}[bad]
    data = replace_ciphertext(
        vector_to_bytes(encrypt_vector(public, np.ones(3), 8)), 1, value, width
    )
    with pytest.raises(CryptoError, match="ciphertext 1 is"):
        vector_from_bytes(data, public, 8, 3)


def test_vector_from_bytes_refuses_a_negative_count(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="count"):
        vector_from_bytes(b"", public, 8, -1)


def test_packed_bytes_round_trip(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, private = keypair
    packed, masks = mask_and_pack(encrypt_vector(public, np.arange(-10.0, 10.0), 4), 30)
    data = packed_to_bytes(packed, public)
    loaded = packed_from_bytes(data, public, value_bits=30, count=20, slot_bits=72)
    assert loaded == packed
    assert (
        unmask(decrypt_packed(private, loaded), masks, 4).tolist()
        == np.arange(-10.0, 10.0).tolist()
    )


def test_packed_from_bytes_refuses_a_slot_width_that_does_not_match(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, _ = keypair
    packed, _ = mask_and_pack(encrypt_vector(public, np.ones(2), 4), 30)
    with pytest.raises(CryptoError, match="slot_bits 80"):
        packed_from_bytes(
            packed_to_bytes(packed, public), public, value_bits=30, count=2, slot_bits=80
        )


def test_packed_from_bytes_names_the_bad_ciphertext(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    packed, _ = mask_and_pack(encrypt_vector(public, np.ones(40), 4), 30)
    width = ciphertext_width(public)
    data = replace_ciphertext(packed_to_bytes(packed, public), 2, int(public.n), width)
    with pytest.raises(CryptoError, match="packed ciphertexts: ciphertext 2 is not a unit"):
        packed_from_bytes(data, public, value_bits=30, count=40)
