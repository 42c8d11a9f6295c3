"""How one lender's answer for one applicant is encoded in a single Paillier plaintext.

A lender's row holds ``balance_cents * 2**COUNT_BITS + 1``: the low bits carry the match
indicator, the high bits the balance, so one decryption yields both and the sum over lenders
yields the count of lenders in the low bits and the total balance above them. An applicant who
is not a customer contributes 0; a customer whose balance must be withheld contributes 1.

Sums are taken modulo ``2**SUM_BITS``; with ``BALANCE_BITS + COUNT_BITS`` bits per lender and
at most ``MAX_LENDERS`` lenders the true sum is below that modulus, so nothing wraps.
"""

from __future__ import annotations

from collections.abc import Iterable

from fedcredit.data.loans import MAX_BALANCE_CENTS
from fedcredit.errors import ProtocolError

COUNT_BITS = 16
BALANCE_BITS = 48
SUM_BITS = 80
SUM_BYTES = SUM_BITS // 8
SUM_MODULUS = 1 << SUM_BITS
MAX_LENDERS = (1 << COUNT_BITS) - 1
VALUE_BITS = SUM_BITS + 24
"""Bound handed to ``mask_and_pack``: masks are drawn from ``[2**(VALUE_BITS+40),
2**(VALUE_BITS+41))``, a range that is a multiple of ``2**SUM_BITS`` (so a mask reduced modulo
``2**SUM_BITS`` is exactly uniform) and ``2**80`` times larger than any row value (so the masked
value a lender decrypts is within statistical distance ``2**-80`` of one for a non-customer)."""

NO_MATCH = 0
MATCH_WITHHELD = 1

assert BALANCE_BITS + COUNT_BITS + COUNT_BITS <= SUM_BITS
assert MAX_BALANCE_CENTS < 1 << BALANCE_BITS


def row_value(balance_cents: int) -> int:
    """The plaintext a lender uploads for a customer with this outstanding balance."""
    if not 0 < balance_cents < 1 << BALANCE_BITS:
        raise ProtocolError(f"an outstanding balance must be in (0, 2**{BALANCE_BITS}) cents")
    return (balance_cents << COUNT_BITS) | 1


def encode_share(value: int) -> bytes:
    """A value modulo ``2**SUM_BITS`` as fixed-width big-endian bytes."""
    return (value % SUM_MODULUS).to_bytes(SUM_BYTES, "big")


def decode_shares(data: bytes, count: int) -> list[int]:
    """The inverse of concatenated ``encode_share``; the length must be exact."""
    if len(data) != count * SUM_BYTES:
        raise ProtocolError(f"expected {count * SUM_BYTES} bytes of shares, got {len(data)}")
    return [int.from_bytes(data[i : i + SUM_BYTES], "big") for i in range(0, len(data), SUM_BYTES)]


def split_sum(total: int) -> tuple[int, int]:
    """``(count of lenders, total balance in cents)`` from an unmasked sum of row values."""
    return total & ((1 << COUNT_BITS) - 1), total >> COUNT_BITS


def sum_shares(columns: Iterable[list[int]]) -> list[int]:
    """Elementwise sum modulo ``2**SUM_BITS`` of equally long share vectors."""
    totals: list[int] | None = None
    for column in columns:
        if totals is None:
            totals = [v % SUM_MODULUS for v in column]
            continue
        if len(column) != len(totals):
            raise ProtocolError("share vectors of different lengths")
        totals = [(a + b) % SUM_MODULUS for a, b in zip(totals, column, strict=True)]
    return totals or []
