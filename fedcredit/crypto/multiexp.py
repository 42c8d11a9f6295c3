"""Multi-exponentiation: ``prod_i c_i ** e_i mod n**2`` for many bases at once.

A matrix-vector product ``X.T @ [[d]]`` over ciphertexts is one multi-exponentiation per
output. Pippenger's bucket method costs about ``windows * (B + 2**(w+1))`` modular
multiplications for B bases with exponents of ``windows * w`` bits, against about
``1.2 * bits`` per base for one ``powmod`` each. Negative exponents go to a second
multi-exponentiation whose result is inverted once per output: no 2048-bit exponents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gmpy2
import numpy as np
import numpy.typing as npt
from gmpy2 import mpz

from fedcredit.crypto import pool
from fedcredit.crypto.codec import check_scale
from fedcredit.crypto.modarith import batch_invert
from fedcredit.crypto.vector import EncryptedVector
from fedcredit.errors import CryptoError

#: Largest feature magnitude ``matvec_t`` accepts: 62 bits, so int64 arithmetic is safe.
MAX_X_BITS = 62


def best_window(count: int, bits: int) -> int:
    """The bucket window (bits) minimising ``ceil(bits / w) * (count + 2**(w + 1))``."""
    if bits <= 0 or count <= 0:
        return 1
    costs = {w: -(-bits // w) * (count + (2 << w)) for w in range(1, min(bits, 16) + 1)}
    return min(costs, key=lambda w: (costs[w], -w))


def multiexp_unsigned(bases: Sequence[Any], exponents: Sequence[int], nsq: Any) -> Any:
    """``prod bases[i] ** exponents[i] mod nsq`` for non-negative exponents (Pippenger)."""
    pairs = [(c, e) for c, e in zip(bases, exponents, strict=True) if e]
    if not pairs:
        return mpz(1)
    bits = max(e.bit_length() for _, e in pairs)
    if len(pairs) * bits * 1.2 < best_cost(len(pairs), bits):
        # Few bases: plain powmod (which releases the GIL) beats bucket bookkeeping.
        acc = mpz(1)
        for c, e in pairs:
            acc = acc * gmpy2.powmod(c, e, nsq) % nsq
        return acc
    window = best_window(len(pairs), bits)
    mask = (1 << window) - 1
    result = None
    for shift in range((-(-bits // window) - 1) * window, -1, -window):
        if result is not None:
            result = gmpy2.powmod(result, mpz(1) << window, nsq)
        buckets: list[Any] = [None] * (mask + 1)
        for c, e in pairs:
            digit = (e >> shift) & mask
            if digit:
                held = buckets[digit]
                buckets[digit] = c if held is None else held * c % nsq
        window_sum = _bucket_sum(buckets, nsq)
        if window_sum is not None:
            result = window_sum if result is None else result * window_sum % nsq
    return mpz(1) if result is None else result


def best_cost(count: int, bits: int) -> int:
    w = best_window(count, bits)
    return -(-bits // w) * (count + (2 << w)) + bits


def _bucket_sum(buckets: list[Any], nsq: Any) -> Any:
    # prod_d buckets[d] ** d by running products: 2 multiplications per occupied step.
    running = None
    total = None
    for held in reversed(buckets[1:]):
        if held is not None:
            running = held if running is None else running * held % nsq
        if running is not None:
            total = running if total is None else total * running % nsq
    return total


def multiexp_signed(bases: Sequence[Any], exponents: Sequence[int], nsq: Any) -> Any:
    """``prod bases[i] ** exponents[i] mod nsq`` for signed exponents (one inverse)."""
    positive = multiexp_unsigned(bases, [max(e, 0) for e in exponents], nsq)
    negative = multiexp_unsigned(bases, [max(-e, 0) for e in exponents], nsq)
    if negative == 1:
        return positive
    return positive * gmpy2.invert(negative, nsq) % nsq


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
    nsq = ev.public_key.nsquare
    cts = ev.ciphertexts
    # One task per (column, sign); columns are independent and the pool spreads them.
    tasks = []
    for j in range(array.shape[1]):
        column = array[:, j]
        for sign in (1, -1):
            rows = np.flatnonzero(column * sign > 0)
            tasks.append(([cts[i] for i in rows.tolist()], (column[rows] * sign).tolist()))

    def work(task: tuple[list[Any], list[int]]) -> Any:
        return multiexp_unsigned(task[0], task[1], nsq)

    parts = pool.map_tasks(work, tasks, inline=len(ev) * array.shape[1] < pool.INLINE_BELOW)
    inverses = batch_invert(parts[1::2], nsq)
    out = [p * inv % nsq for p, inv in zip(parts[0::2], inverses, strict=True)]
    return EncryptedVector(ev.public_key, out, check_scale(ev.scale_bits + extra))


def weighted_sum(ev: EncryptedVector, weights: Sequence[int]) -> EncryptedVector:
    """``sum_i w_i [[v_i]]`` for signed Python-int weights of any size, as a length-1 vector.

    The scale stays ``ev.scale_bits``: weights are taken as plain integers. Not rerandomized.
    """
    values = [int(w) for w in weights]
    if len(values) != len(ev):
        raise CryptoError(f"{len(values)} weights for a vector of length {len(ev)}")
    nsq = ev.public_key.nsquare
    pairs = list(zip(ev.ciphertexts, values, strict=True))
    chunks = pool.split(pairs, pool.get_workers()) if len(pairs) >= pool.INLINE_BELOW else [pairs]

    def work(part: Sequence[tuple[Any, int]]) -> Any:
        return multiexp_signed([c for c, _ in part], [w for _, w in part], nsq)

    acc = mpz(1)
    for partial in pool.map_tasks(work, chunks):
        acc = acc * partial % nsq
    return EncryptedVector(ev.public_key, [acc], ev.scale_bits)
