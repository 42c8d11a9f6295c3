"""EncryptedVector operations against numpy, and their refusals."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcredit.crypto import (
    EncryptedVector,
    PrivateKey,
    PublicKey,
    decrypt_vector,
    encrypt_vector,
    get_workers,
    set_workers,
)
from fedcredit.crypto.vector import concat
from fedcredit.errors import CryptoError

SCALE = 20
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


def q(values: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """values rounded to the fixed-point grid."""
    return np.asarray(np.rint(np.ldexp(values, scale)) / 2.0**scale, dtype=np.float64)


def test_encrypt_then_decrypt_returns_the_rounded_values(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    values = np.linspace(-5, 5, 40)
    assert (
        decrypt_vector(private, encrypt_vector(public, values, SCALE)).tolist()
        == q(values).tolist()
    )


def test_encryption_with_the_same_injected_rng_is_deterministic(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, _ = keypair
    first = encrypt_vector(public, np.array([1.0, 2.0]), 8, rng=random.Random(7))
    second = encrypt_vector(public, np.array([1.0, 2.0]), 8, rng=random.Random(7))
    assert first.ciphertexts == second.ciphertexts


def test_encrypting_equal_values_twice_gives_different_ciphertexts(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, _ = keypair
    ev = encrypt_vector(public, np.array([1.0, 1.0]), 8)
    assert ev.ciphertexts[0] != ev.ciphertexts[1]


@settings(max_examples=10, deadline=None)
@given(st.lists(st.tuples(finite, finite), min_size=1, max_size=20))
def test_add_matches_numpy(
    keypair: tuple[PublicKey, PrivateKey], pairs: list[tuple[float, float]]
) -> None:
    public, private = keypair
    a, b = (np.array(column) for column in zip(*pairs, strict=True))
    total = encrypt_vector(public, a, SCALE).add(encrypt_vector(public, b, SCALE))
    assert decrypt_vector(private, total).tolist() == (q(a) + q(b)).tolist()


@settings(max_examples=10, deadline=None)
@given(
    st.lists(
        st.tuples(finite, st.integers(min_value=-(2**40), max_value=2**40)), min_size=1, max_size=20
    )
)
def test_mul_plain_ints_matches_numpy_and_adds_scales(
    keypair: tuple[PublicKey, PrivateKey], pairs: list[tuple[float, int]]
) -> None:
    public, private = keypair
    values = np.array([v for v, _ in pairs])
    ints = [k for _, k in pairs]
    product = encrypt_vector(public, values, SCALE).mul_plain_ints(ints, 3)
    expected = [
        float(int(x * 2**SCALE) * k) / 2.0 ** (SCALE + 3)
        for x, k in zip(q(values), ints, strict=True)
    ]
    assert product.scale_bits == SCALE + 3
    assert decrypt_vector(private, product).tolist() == expected


def test_mul_plain_ints_accepts_numpy_integer_arrays(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, private = keypair
    ev = encrypt_vector(public, np.array([1.5, -2.0]), 4)
    assert decrypt_vector(private, ev.mul_plain_ints(np.array([-3, 5]), 0)).tolist() == [
        -4.5,
        -10.0,
    ]


def test_add_plain_and_add_plain_ints_use_the_vector_scale(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    ev = encrypt_vector(public, np.array([1.0, -1.0]), 4)
    assert decrypt_vector(private, ev.add_plain(np.array([0.5, -0.25]))).tolist() == [1.5, -1.25]
    assert decrypt_vector(private, ev.add_plain_ints([16, -32])).tolist() == [2.0, -3.0]


def test_sub_and_neg_match_numpy(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, private = keypair
    a = encrypt_vector(public, np.array([1.0, 2.0]), 4)
    b = encrypt_vector(public, np.array([0.5, 5.0]), 4)
    assert decrypt_vector(private, a.sub(b)).tolist() == [0.5, -3.0]
    assert decrypt_vector(private, a.neg()).tolist() == [-1.0, -2.0]


def test_sum_returns_a_one_entry_vector(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, private = keypair
    ev = encrypt_vector(public, np.arange(-10, 30, dtype=np.float64), 2)
    assert decrypt_vector(private, ev.sum()).tolist() == [float(np.arange(-10, 30).sum())]


def test_rerandomize_keeps_values_and_changes_every_ciphertext(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    ev = encrypt_vector(public, np.array([1.0, -2.0, 3.0]), 8)
    fresh = ev.rerandomize()
    assert decrypt_vector(private, fresh).tolist() == [1.0, -2.0, 3.0]
    assert all(a != b for a, b in zip(ev.ciphertexts, fresh.ciphertexts, strict=True))


def test_take_and_concat_select_and_join_entries(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, private = keypair
    ev = encrypt_vector(public, np.array([1.0, 2.0, 3.0]), 8)
    assert decrypt_vector(private, ev.take([2, 0, 0])).tolist() == [3.0, 1.0, 1.0]
    assert decrypt_vector(private, concat(ev, ev.take([1]))).tolist() == [1.0, 2.0, 3.0, 2.0]


def test_take_refuses_an_out_of_range_index(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="index 3 out of range"):
        encrypt_vector(public, np.array([1.0, 2.0]), 8).take([3])


def test_add_refuses_a_different_key(
    keypair: tuple[PublicKey, PrivateKey], other_key: PublicKey
) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="different keys"):
        encrypt_vector(public, np.ones(2), 8).add(encrypt_vector(other_key, np.ones(2), 8))


def test_add_refuses_a_different_scale(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="different scales"):
        encrypt_vector(public, np.ones(2), 8).add(encrypt_vector(public, np.ones(2), 9))


def test_add_refuses_a_different_length(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="different lengths"):
        encrypt_vector(public, np.ones(2), 8).add(encrypt_vector(public, np.ones(3), 8))


def test_concat_refuses_a_different_scale(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="one scale"):
        encrypt_vector(public, np.ones(2), 8).concat(encrypt_vector(public, np.ones(2), 9))


def test_plaintext_of_the_wrong_length_is_refused(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    ev = encrypt_vector(public, np.ones(2), 8)
    with pytest.raises(CryptoError, match="length 3"):
        ev.add_plain(np.ones(3))
    with pytest.raises(CryptoError, match="length 1"):
        ev.mul_plain_ints([1], 0)


def test_non_integer_multipliers_are_refused(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="integer"):
        encrypt_vector(public, np.ones(2), 8).mul_plain_ints(np.array([1.5, 2.0]), 0)


def test_decrypting_with_the_wrong_key_is_refused(
    keypair: tuple[PublicKey, PrivateKey], other_key: PublicKey
) -> None:
    _, private = keypair
    with pytest.raises(CryptoError, match="is under key"):
        decrypt_vector(private, encrypt_vector(other_key, np.ones(1), 8))


def test_vector_needs_a_fedcredit_public_key(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="PublicKey"):
        EncryptedVector(public.to_phe(), [1], 0)


def test_results_are_the_same_inline_and_on_the_pool(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, private = keypair
    values = np.linspace(-1, 1, 64)
    before = get_workers()
    try:
        set_workers(1)
        inline = decrypt_vector(private, encrypt_vector(public, values, 16))
        set_workers(2)
        pooled = decrypt_vector(private, encrypt_vector(public, values, 16))
    finally:
        set_workers(None)
    assert inline.tolist() == pooled.tolist()
    assert get_workers() == before


def test_set_workers_refuses_zero() -> None:
    with pytest.raises(CryptoError, match="positive"):
        set_workers(0)


def test_crypto_called_from_a_pool_worker_runs_inline_without_deadlock(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    from fedcredit.crypto import pool

    public, private = keypair
    set_workers(2)
    try:
        nested = pool.map_tasks(
            lambda v: decrypt_vector(private, encrypt_vector(public, np.full(40, v), 4)).tolist(),
            [1.0, 2.0],
        )
    finally:
        set_workers(None)
    assert nested == [[1.0] * 40, [2.0] * 40]


@pytest.mark.parametrize("scale", [-1, 4097, 1.5, True])
def test_a_scale_outside_0_to_4096_or_not_an_int_is_refused(
    keypair: tuple[PublicKey, PrivateKey], scale: object
) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="scale_bits"):
        EncryptedVector(public, [1], scale)  # type: ignore[arg-type]
