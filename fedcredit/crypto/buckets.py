"""Pippenger's bucket method: ``prod_i c_i ** e_i mod m`` for many bases, on plain numbers.

Pure functions of gmpy2 numbers, with no pool and no key objects, so that every executor (the
thread pool and the Ray workers, ``fedcredit.crypto.executors``) runs the very same arithmetic.
The cost is about ``windows * (B + 2**(w+1))`` modular multiplications for B bases with
exponents of ``windows * w`` bits, against about ``1.2 * bits`` per base for one ``powmod`` each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gmpy2
from gmpy2 import mpz


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
