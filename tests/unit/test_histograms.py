"""``fedcredit.crypto.bin_sums`` on the thread pool: the same residues as the one-hot
``X.T @ [[y]]`` the binning used before it, and refusals that name what is wrong."""

from __future__ import annotations

import random

import numpy as np
import pytest

from fedcredit.crypto import bin_sums, encrypt_vector, matvec_t
from fedcredit.errors import CryptoError
from tests.support.keys import KeyPair


def test_bin_sums_are_the_residues_of_the_one_hot_matvec_they_replace(keypair: KeyPair) -> None:
    pk, _ = keypair
    rows, sizes = 120, [4, 7]
    labels = encrypt_vector(pk, (np.arange(rows) % 3 == 0).astype(float), 0, rng=random.Random(1))
    codes = np.column_stack([np.arange(rows) % 4, (np.arange(rows) * 5) % 6])  # bin 6 empty
    onehot = np.zeros((rows, sum(sizes)), dtype=np.int64)
    onehot[np.arange(rows), codes[:, 0]] = 1
    onehot[np.arange(rows), sizes[0] + codes[:, 1]] = 1
    per_column = bin_sums(labels, None, codes, sizes)
    joined = per_column[0].concat(*per_column[1:])
    assert joined.ciphertexts == matvec_t(onehot, 0, labels).ciphertexts
    assert per_column[1].ciphertexts[6] == 1


def test_selected_rows_are_the_only_ones_summed(keypair: KeyPair) -> None:
    pk, _ = keypair
    values = encrypt_vector(pk, np.arange(10, dtype=float), 0, rng=random.Random(2))
    codes = np.zeros((10, 1), dtype=np.int64)
    got = bin_sums(values, np.array([1, 4, 9]), codes, [1])[0]
    assert got.ciphertexts == values.take([1, 4, 9]).sum().ciphertexts
    assert got.scale_bits == values.scale_bits


@pytest.mark.parametrize(
    ("rows", "codes", "n_bins", "message"),
    [
        (None, np.zeros((3, 1), np.int64), [1], "code matrix has 3 rows, the encrypted vector 4"),
        (None, np.zeros((4, 2), np.int64), [1], "1 bin counts for 2 code columns"),
        (None, np.zeros((4, 1)), [1], "2-D integer code matrix"),
        ([0, 4], np.zeros((4, 1), np.int64), [1], "row index is out of range"),
        (None, np.zeros((4, 1), np.int64), [0], r"codes of column 0 must lie in \[0, 0\)"),
    ],
)
def test_a_bad_call_is_refused_saying_what_is_wrong(
    keypair: KeyPair, rows: object, codes: np.ndarray, n_bins: list[int], message: str
) -> None:
    pk, _ = keypair
    values = encrypt_vector(pk, np.zeros(4), 0, rng=random.Random(3))
    with pytest.raises(CryptoError, match=message):
        bin_sums(values, rows, codes, n_bins)  # type: ignore[arg-type]
