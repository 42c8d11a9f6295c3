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


class FixedBaseTable:
    """Precomputed powers of one base modulo one modulus, for exponents below ``2**bits``."""

    def __init__(
        self, base: Any, modulus: Any, exponent_bits: int, window: int = DEFAULT_WINDOW
    ) -> None:
        if not 2 <= window <= 16:
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
    """Builds a :class:`FixedBaseTable` on first use, once, even under concurrent callers."""

    def __init__(
        self, base: Any, modulus: Any, exponent_bits: int, window: int = DEFAULT_WINDOW
    ) -> None:
        self._args = (base, modulus, exponent_bits, window)
        self._table: FixedBaseTable | None = None
        self._lock = threading.Lock()

    def get(self) -> FixedBaseTable:
        table = self._table
        if table is None:
            with self._lock:
                if self._table is None:
                    self._table = FixedBaseTable(*self._args)
                table = self._table
        return table
