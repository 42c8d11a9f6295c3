"""matvec_t and weighted_sum against numpy and plain powmod."""

from __future__ import annotations

import random

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedcredit.crypto import (
    PrivateKey,
    PublicKey,
    decrypt_vector,
    encrypt_vector,
    matvec_t,
    weighted_sum,
)
from fedcredit.crypto.multiexp import best_window, multiexp_signed
from fedcredit.crypto.vector import decrypt_ints, encrypt_ints
from fedcredit.errors import CryptoError


def signed_plain(private: PrivateKey, ev: object) -> list[int]:
    n = int(private.public_key.n)
    return [x - n if x > n // 2 else x for x in map(int, decrypt_ints(private, ev))]  # type: ignore[arg-type]


@settings(max_examples=8, deadline=None)
@given(
    hnp.arrays(
        np.int64,
        st.tuples(st.integers(1, 40), st.integers(1, 4)),
        elements=st.integers(-(2**15), 2**15),
    ),
    st.data(),
)
def test_matvec_t_matches_numpy_exactly(
    keypair: tuple[PublicKey, PrivateKey], x: np.ndarray, data: st.DataObject
) -> None:
    public, private = keypair
    d = data.draw(st.lists(st.integers(-(2**30), 2**30), min_size=len(x), max_size=len(x)))
    ev = encrypt_ints(public, d, 0)
    result = matvec_t(x, 0, ev)
    assert signed_plain(private, result) == [
        int(v) for v in (x.T.astype(object) @ np.array(d, dtype=object))
    ]


def test_matvec_t_adds_the_feature_scale(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, private = keypair
    x = np.array([[16, -8], [4, 0], [-32, 2]], dtype=np.int64)
    d = np.array([0.5, -1.0, 2.0])
    result = matvec_t(x, 4, encrypt_vector(public, d, 10))
    assert result.scale_bits == 14
    assert decrypt_vector(private, result).tolist() == (x.T @ d / 16).tolist()


def test_matvec_t_on_many_rows_uses_buckets_and_stays_exact(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    rng = np.random.default_rng(5)
    x = rng.integers(-(2**12), 2**12, size=(300, 3))
    d = rng.integers(-(2**20), 2**20, size=300)
    result = matvec_t(x, 0, encrypt_ints(public, d.tolist(), 0))
    assert signed_plain(private, result) == (x.T @ d).tolist()


def test_matvec_t_refuses_a_row_count_mismatch(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="3 rows, the encrypted vector 2"):
        matvec_t(np.zeros((3, 2), dtype=np.int64), 0, encrypt_vector(public, np.ones(2), 4))


def test_matvec_t_refuses_float_features(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="integer"):
        matvec_t(np.zeros((2, 2)), 0, encrypt_vector(public, np.ones(2), 4))


def test_matvec_t_refuses_one_dimensional_features(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="2-D"):
        matvec_t(np.zeros(2, dtype=np.int64), 0, encrypt_vector(public, np.ones(2), 4))


def test_weighted_sum_handles_big_signed_weights(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, private = keypair
    d = list(range(-20, 20))
    weights = [random.Random(i).getrandbits(200) * (-1) ** i for i in range(40)]
    result = weighted_sum(encrypt_ints(public, d, 0), weights)
    assert len(result) == 1
    assert signed_plain(private, result) == [sum(w * v for w, v in zip(weights, d, strict=True))]


def test_weighted_sum_refuses_a_length_mismatch(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="3 weights for a vector of length 2"):
        weighted_sum(encrypt_vector(public, np.ones(2), 4), [1, 2, 3])


def test_multiexp_signed_matches_powmod_products(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    nsq = public.nsquare
    rng = random.Random(9)
    bases = [gmpy2.mpz(rng.randrange(2, int(nsq))) for _ in range(70)]
    exps = [rng.randrange(-(2**40), 2**40) for _ in range(70)]
    expected = gmpy2.mpz(1)
    for b, e in zip(bases, exps, strict=True):
        expected = expected * gmpy2.powmod(b, e, nsq) % nsq
    assert multiexp_signed(bases, exps, nsq) == expected


def test_best_window_grows_with_the_number_of_bases() -> None:
    assert best_window(10, 16) < best_window(4096, 16)


def test_batch_invert_matches_one_inverse_at_a_time(keypair: tuple[PublicKey, PrivateKey]) -> None:
    from fedcredit.crypto.modarith import batch_invert

    public, _ = keypair
    values = encrypt_ints(public, list(range(7)), 0).ciphertexts
    assert batch_invert(values, public.nsquare) == [gmpy2.invert(v, public.nsquare) for v in values]
    assert batch_invert([], public.nsquare) == []


def test_batch_invert_refuses_a_non_unit(keypair: tuple[PublicKey, PrivateKey]) -> None:
    from fedcredit.crypto.modarith import batch_invert

    public, _ = keypair
    with pytest.raises(CryptoError, match="not invertible"):
        batch_invert([gmpy2.mpz(3), public.n], public.nsquare)
