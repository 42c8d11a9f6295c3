"""Fixed-base exponentiation for DJN randomness: ``hs**x mod n**2`` from a precomputed table.

Damgård-Jurik-Nielsen encryption replaces phe's ``r**n mod n**2`` (a 2048-bit exponent at
2048-bit keys) by ``hs**x`` with a fixed public base ``hs`` and an exponent ``x`` of n/2 bits.
With the base fixed, a windowed comb table ``T[i][d] = hs**(d * 2**(w*i))`` turns each
exponentiation into about ``bits / w`` modular multiplications and no squarings.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import gmpy2
from gmpy2 import mpz

from fedcredit.crypto import pool
from fedcredit.errors import CryptoError

#: Window of the comb, in bits; the table holds ``ceil(bits / w) * (2**w - 1)`` entries
#: (about 16 MiB at 2048-bit keys with w = 8).
DEFAULT_WINDOW = 8
MIN_WINDOW, MAX_WINDOW = 2, 16
#: What an ``mpz`` costs beyond its limbs (``sys.getsizeof`` minus the limb bytes, CPython 3.11).
MPZ_OVERHEAD_BYTES = 48

_budget_bytes: int | None = None


def table_bytes(exponent_bits: int, modulus_bits: int, window: int) -> int:
    """The memory of a comb table: ``ceil(exponent_bits / w) * 2**w`` numbers below the modulus."""
    entry = -(-modulus_bits // 64) * 8 + MPZ_OVERHEAD_BYTES
    return -(-exponent_bits // window) * (1 << window) * entry


def window_for_budget(exponent_bits: int, modulus_bits: int, budget_bytes: int) -> int:
    """The widest comb window whose table fits ``budget_bytes`` (at least ``MIN_WINDOW``).

    Measured here at 2048-bit keys and n/2-bit exponents (gmpy2, one core): w = 8 is 16 MiB and
    about 1,050 encryptions/s, w = 12 about 172 MiB and 1,350-1,500/s (benchmarks/crypto.py).
    """
    if budget_bytes < 1:
        raise CryptoError(f"the comb table's memory budget must be positive, got {budget_bytes}")
    best = MIN_WINDOW
    for window in range(MIN_WINDOW, MAX_WINDOW + 1):
        if table_bytes(exponent_bits, modulus_bits, window) <= budget_bytes:
            best = window
    return best


def set_table_budget(mib: float | None) -> None:
    """Size every comb table built from now on in this process to ``mib`` MiB (``None``: the
    fixed ``DEFAULT_WINDOW``). A key built with an explicit ``comb_window`` keeps it."""
    global _budget_bytes
    if mib is not None and not mib > 0:
        raise CryptoError(f"the comb table's memory budget must be positive, got {mib!r} MiB")
    _budget_bytes = None if mib is None else int(mib * 2**20)


def table_budget_bytes() -> int | None:
    """The comb tables' memory budget of this process in bytes (``None``: none set)."""
    return _budget_bytes


def default_window(exponent_bits: int, modulus_bits: int) -> int:
    """The window a table gets when its key names none: from the budget, if one is set."""
    if _budget_bytes is None:
        return DEFAULT_WINDOW
    return window_for_budget(exponent_bits, modulus_bits, _budget_bytes)


class FixedBaseTable:
    """Precomputed powers of one base modulo one modulus, for exponents below ``2**bits``."""

    def __init__(
        self, base: Any, modulus: Any, exponent_bits: int, window: int = DEFAULT_WINDOW
    ) -> None:
        if not MIN_WINDOW <= window <= MAX_WINDOW:
            raise CryptoError(f"comb window must be 2..16 bits, got {window}")
        if exponent_bits < 1:
            raise CryptoError(f"exponent_bits must be positive, got {exponent_bits}")
        self.modulus = mpz(modulus)
        self.base = mpz(base) % self.modulus
        self.exponent_bits = exponent_bits
        self.window = window
        self.windows = -(-exponent_bits // window)
        self._rows: list[list[Any]] = self._build()

    def _build(self) -> list[list[Any]]:
        modulus, window = self.modulus, self.window
        starts = [self.base]
        for _ in range(1, self.windows):
            starts.append(gmpy2.powmod(starts[-1], mpz(1) << window, modulus))
        size = 1 << window

        def row(start: Any) -> list[Any]:
            # Entry 0 is never used (zero digits are skipped); keep it for direct indexing.
            entries = [mpz(1), start]
            for _ in range(2, size):
                entries.append(entries[-1] * start % modulus)
            return entries

        return pool.map_tasks(row, starts)

    def pow(self, exponent: int) -> Any:
        """``base ** exponent mod modulus`` for ``0 <= exponent < 2**exponent_bits``."""
        if exponent < 0 or exponent.bit_length() > self.exponent_bits:
            raise CryptoError(f"exponent outside the table range of {self.exponent_bits} bits")
        modulus, mask, window = self.modulus, (1 << self.window) - 1, self.window
        acc = None
        value = int(exponent)
        for row in self._rows:
            digit = value & mask
            value >>= window
            if digit:
                acc = row[digit] if acc is None else acc * row[digit] % modulus
        return mpz(1) if acc is None else acc

    def pow_many(self, exponents: Sequence[int]) -> list[Any]:
        """``[base ** e mod modulus for e in exponents]``, spread over the worker pool."""
        return pool.map_chunked(lambda part: [self.pow(e) for e in part], exponents)


class LazyTable:
    """Builds a :class:`FixedBaseTable` on first use, once, even under concurrent callers.

    ``window=None`` takes :func:`default_window` when the table is built.
    """

    def __init__(
        self, base: Any, modulus: Any, exponent_bits: int, window: int | None = None
    ) -> None:
        self._args = (base, modulus, exponent_bits, window)
        self._table: FixedBaseTable | None = None
        self._lock = threading.Lock()

    def get(self) -> FixedBaseTable:
        table = self._table
        if table is None:
            with self._lock:
                if self._table is None:
                    base, modulus, bits, window = self._args
                    if window is None:
                        window = default_window(bits, int(mpz(modulus).bit_length()))
                    self._table = FixedBaseTable(base, modulus, bits, window)
                table = self._table
        return table
