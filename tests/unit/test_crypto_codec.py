"""Fixed-point codec: one scale per vector, signed residues, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from fedcredit.crypto import decode, encode
from fedcredit.errors import CryptoError

N = 2**127 - 1  # any odd modulus works for the codec; a Mersenne prime keeps numbers readable


def test_positive_and_negative_zero_encode_to_zero() -> None:
    assert encode(np.array([0.0, -0.0]), 16, N) == [0, 0]


def test_negative_values_encode_as_n_minus_magnitude() -> None:
    assert encode(np.array([-1.5]), 4, N) == [N - 24]


def test_rounding_is_half_to_even_at_the_scale() -> None:
    assert encode(np.array([0.5, 1.5, 2.5, -0.5]), 0, N) == [0, 2, 2, 0]


def test_values_below_the_scale_round_to_zero() -> None:
    assert encode(np.array([1e-30, -1e-30]), 32, N) == [0, 0]


def test_huge_values_encode_exactly() -> None:
    value = 2.0**90
    assert encode(np.array([value, -value]), 30, N) == [2**120, N - 2**120]


def test_value_just_below_n_over_3_is_accepted() -> None:
    limit = N // 3
    top = float(2 ** (limit.bit_length() - 1))
    assert encode(np.array([top]), 0, N) == [int(top)]


def test_overflow_past_n_over_3_names_index_and_value() -> None:
    with pytest.raises(CryptoError, match=r"index 1 \(1e\+30\)"):
        encode(np.array([1.0, 1e30]), 30, N)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_with_their_index(bad: float) -> None:
    with pytest.raises(CryptoError, match=r"non-finite value .* at index 2"):
        encode(np.array([1.0, 2.0, bad]), 8, N)


def test_negative_scale_is_refused() -> None:
    with pytest.raises(CryptoError, match="scale_bits"):
        encode(np.array([1.0]), -1, N)


def test_two_dimensional_input_is_refused() -> None:
    with pytest.raises(CryptoError, match="1-D"):
        encode(np.zeros((2, 2)), 8, N)


def test_integer_arrays_encode_exactly_at_the_scale() -> None:
    assert encode(np.array([3, -2], dtype=np.int64), 10, N) == [3 << 10, N - (2 << 10)]


def test_decode_splits_signs_at_n_over_2() -> None:
    half = N // 2
    assert decode([half, half + 1], 0, N).tolist() == [float(half), float(half + 1 - N)]


def test_decode_inverts_encode_for_representable_values() -> None:
    values = np.array([0.0, 1.0, -1.0, 3.75, -1234.5, 2.0**-20, -(2.0**60)])
    assert decode(encode(values, 20, N), 20, N).tolist() == values.tolist()


def test_decode_refuses_values_too_large_for_float64() -> None:
    big = 2**1100 + 1
    modulus = 2**1200 + 1
    with pytest.raises(CryptoError, match="index 0 is too large"):
        decode([big], 0, modulus)
