"""Fixed-point encoding: one scale ``2**scale_bits`` for a whole vector.

phe's default encoding picks an exponent per number, and the exponent of a ciphertext is
sent in the clear, so it leaks each value's magnitude (and through it, labels). Here every
value of a message has the same scale, which is public and says nothing about the values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from fedcredit.errors import CryptoError

#: Below this magnitude a scaled float64 is an exactly representable integer after rounding.
_EXACT_FLOAT = float(2**53)


def check_scale(scale_bits: int) -> int:
    """``scale_bits`` as an int, or CryptoError when it is not a non-negative integer."""
    if isinstance(scale_bits, bool) or not isinstance(scale_bits, int | np.integer):
        raise CryptoError(f"scale_bits must be an integer, got {scale_bits!r}")
    if not 0 <= scale_bits <= 4096:
        raise CryptoError(f"scale_bits must be in [0, 4096], got {scale_bits}")
    return int(scale_bits)


def to_fixed(values: npt.ArrayLike, scale_bits: int) -> list[int]:
    """Signed integers ``round(v * 2**scale_bits)`` (half to even); NaN and inf refused."""
    scale = check_scale(scale_bits)
    array = np.asarray(values)
    if array.ndim != 1:
        raise CryptoError(f"expected a 1-D array of values, got shape {array.shape}")
    if array.dtype.kind in "iu":
        return [int(v) << scale for v in array.tolist()]
    if array.dtype.kind not in "fb":
        raise CryptoError(f"cannot encode values of dtype {array.dtype}")
    floats = array.astype(np.float64, copy=False)
    finite = np.isfinite(floats)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise CryptoError(f"cannot encode non-finite value {floats[index]!r} at index {index}")
    with np.errstate(over="ignore"):
        scaled = np.ldexp(floats, scale)
    if np.all(np.abs(scaled) < _EXACT_FLOAT):
        return [int(v) for v in np.rint(scaled).astype(np.int64).tolist()]
    return [
        _exact_round(v, s, scale) for v, s in zip(floats.tolist(), scaled.tolist(), strict=True)
    ]


def _exact_round(value: float, scaled: float, scale: int) -> int:
    if math.isfinite(scaled) and abs(scaled) >= _EXACT_FLOAT:
        return int(scaled)  # already an integer, and exact: scaling by 2**k is exact
    return round(Fraction(value) * (1 << scale))


def encode(values: npt.ArrayLike, scale_bits: int, n: int | Any) -> list[int]:
    """Plaintexts mod ``n``: ``round(v * 2**scale_bits) mod n`` (negatives as ``n - |x|``).

    Raises CryptoError naming the index and value for NaN, inf, or an encoding whose
    magnitude exceeds ``n // 3`` (the headroom that keeps sums and signs unambiguous).
    """
    modulus = int(n)
    limit = modulus // 3
    fixed = to_fixed(values, scale_bits)
    out: list[int] = []
    for index, x in enumerate(fixed):
        if abs(x) > limit:
            raise CryptoError(
                f"value at index {index} ({_show(values, index)}) encodes to {abs(x).bit_length()}"
                f" bits at scale 2**{scale_bits}, past n//3"
            )
        out.append(x % modulus)
    return out


def _show(values: npt.ArrayLike, index: int) -> str:
    return repr(np.asarray(values)[index].item())


def signed(ints: Iterable[int], n: int | Any) -> list[int]:
    """Residues mod ``n`` as signed integers: those above ``n // 2`` are negative."""
    modulus = int(n)
    half = modulus // 2
    return [x - modulus if x > half else x for x in (int(v) for v in ints)]


def from_fixed(ints: Sequence[int], scale_bits: int) -> npt.NDArray[np.float64]:
    """float64 values ``x / 2**scale_bits`` of signed integers (correctly rounded)."""
    scale = check_scale(scale_bits)
    if all(abs(x) < _EXACT_FLOAT for x in ints):
        return np.ldexp(np.asarray(ints, dtype=np.float64), -scale)
    divisor = 1 << scale
    out = np.empty(len(ints), dtype=np.float64)
    for index, x in enumerate(ints):
        try:
            out[index] = x / divisor
        except OverflowError as exc:
            raise CryptoError(
                f"value at index {index} is too large for float64 at scale 2**{scale}"
            ) from exc
    return out


def decode(ints: Iterable[int], scale_bits: int, n: int | Any) -> npt.NDArray[np.float64]:
    """float64 values of plaintexts mod ``n`` encoded at ``scale_bits`` (signed, n//2 split)."""
    return from_fixed(signed(ints, n), scale_bits)
