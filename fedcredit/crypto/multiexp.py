"""Multi-exponentiation: ``prod_i c_i ** e_i mod n**2`` for many bases at once.

A matrix-vector product ``X.T @ [[d]]`` over ciphertexts is one multi-exponentiation per
output. Pippenger's bucket method costs about ``windows * (B + 2**(w+1))`` modular
multiplications for B bases with exponents of ``windows * w`` bits, against about
``1.2 * bits`` per base for one ``powmod`` each. Negative exponents go to a second
multi-exponentiation whose result is inverted once per output: no 2048-bit exponents.
The bucket arithmetic itself is in ``fedcredit.crypto.buckets`` (re-exported here); the
executor of this process (threads or Ray, ``fedcredit.crypto.executors``) runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fedcredit.crypto.buckets import (
    best_cost,
    best_window,
    multiexp_signed,
    multiexp_unsigned,
)
from fedcredit.crypto.codec import check_scale
from fedcredit.crypto.executors.base import current_executor
from fedcredit.crypto.vector import EncryptedVector
from fedcredit.errors import CryptoError

__all__ = [
    "MAX_X_BITS",
    "best_cost",
    "best_window",
    "matvec_t",
    "multiexp_signed",
    "multiexp_unsigned",
    "weighted_sum",
]

#: Largest feature magnitude ``matvec_t`` accepts: 62 bits, so int64 arithmetic is safe.
MAX_X_BITS = 62


def _check_x(x_int: npt.NDArray[Any], rows: int) -> npt.NDArray[np.int64]:
    array = np.asarray(x_int)
    if array.ndim != 2:
        raise CryptoError(f"matvec_t needs a 2-D feature matrix, got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise CryptoError(f"matvec_t needs integer (fixed-point) features, got {array.dtype}")
    if array.shape[0] != rows:
        raise CryptoError(
            f"feature matrix has {array.shape[0]} rows, the encrypted vector {rows} entries"
        )
    if array.size and int(np.abs(array.astype(np.float64)).max()) >= 2**MAX_X_BITS:
        raise CryptoError(f"feature magnitudes must stay below 2**{MAX_X_BITS}")
    return array.astype(np.int64, copy=False)


def matvec_t(x_int: npt.NDArray[Any], x_scale_bits: int, ev: EncryptedVector) -> EncryptedVector:
    """``X.T @ [[d]]``: the encrypted vector ``sum_i X[i, j] d_i`` for each column j.

    ``x_int`` holds signed fixed-point features (e.g. 8 to 16 bits) at ``2**x_scale_bits``;
    the result has scale ``ev.scale_bits + x_scale_bits``. Not rerandomized: it is a
    deterministic function of ``ev`` and X, so mask or rerandomize before sending it.
    """
    extra = check_scale(x_scale_bits)
    array = _check_x(x_int, len(ev))
    out = current_executor().matvec_t(ev.public_key.nsquare, ev.ciphertexts, array)
    return EncryptedVector(ev.public_key, out, check_scale(ev.scale_bits + extra))


def weighted_sum(ev: EncryptedVector, weights: Sequence[int]) -> EncryptedVector:
    """``sum_i w_i [[v_i]]`` for signed Python-int weights of any size, as a length-1 vector.

    The scale stays ``ev.scale_bits``: weights are taken as plain integers. Not rerandomized.
    """
    values = [int(w) for w in weights]
    if len(values) != len(ev):
        raise CryptoError(f"{len(values)} weights for a vector of length {len(ev)}")
    acc = current_executor().weighted_sum(ev.public_key.nsquare, ev.ciphertexts, values)
    return EncryptedVector(ev.public_key, [acc], ev.scale_bits)
