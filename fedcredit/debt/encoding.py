"""How one lender's answer for one applicant is encoded in a single Paillier plaintext.

A lender's row holds ``balance_cents * 2**COUNT_BITS + 1``: the low bits carry the match
indicator, the high bits the balance, so one decryption yields both and the sum over lenders
yields the count of lenders in the low bits and the total balance above them. An applicant who
is not a customer contributes 0; a customer whose balance must be withheld contributes 1.

Sums are taken modulo ``2**SUM_BITS``; with ``BALANCE_BITS + COUNT_BITS`` bits per lender and
at most ``MAX_LENDERS`` lenders the true sum is below that modulus, so nothing wraps. For a
batch, the values of ``g`` applicants travel as the 80-bit digits of one number per ciphertext
(``DIGIT_BITS``); the querier adds the lenders' numbers per group, and since no applicant's sum
reaches ``2**80`` the digits never carry into each other.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedcredit.crypto.digits import group_sizes, join_digits, split_digits
from fedcredit.data.loans import MAX_BALANCE_CENTS
from fedcredit.errors import ProtocolError

COUNT_BITS = 16
BALANCE_BITS = 48
SUM_BITS = 80
SUM_BYTES = SUM_BITS // 8
SUM_MODULUS = 1 << SUM_BITS
MAX_LENDERS = (1 << COUNT_BITS) - 1
DIGIT_BITS = SUM_BITS
"""Bits per applicant in a packed plaintext: row values are packed as digits of one number
per ciphertext (``fedcredit.crypto.digits``), masked by one number ``2**80`` times larger
than the packed values, so what a lender decrypts is within statistical distance ``2**-80`` of
the mask alone, and the digits it forwards (the number modulo ``2**(80 g)``) are uniform."""

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


def join_groups(digits: Sequence[int], group: int) -> list[int]:
    """Digits (high first) joined into one number per group of ``group``."""
    return join_digits(digits, DIGIT_BITS, group)


def split_groups(numbers: Sequence[int], count: int, group: int) -> list[int]:
    """Each group's number, reduced modulo ``2**(80 used)``, cut into digits (high first)."""
    needed = len(group_sizes(count, group))
    if len(numbers) != needed:
        raise ProtocolError(f"{count} applicants in groups of {group} need {needed} numbers")
    return split_digits(numbers, DIGIT_BITS, group, count)


def unmask_groups(
    columns: Sequence[Sequence[int]], mask_digits: Sequence[int], group: int
) -> list[int]:
    """Per applicant, the sum over lenders of the row values: each lender's digits are joined
    per group, the groups added as numbers, the mask sum subtracted modulo ``2**(80 used)``."""
    count = len(mask_digits)
    if group < 1:
        raise ProtocolError("the group size of an answer must be at least 1")
    if any(len(column) != count for column in columns):
        raise ProtocolError("share vectors of different lengths")
    sizes = group_sizes(count, group)
    totals = [-m for m in join_groups(mask_digits, group)]
    for column in columns:
        totals = [t + v for t, v in zip(totals, join_groups(column, group), strict=True)]
    reduced = [t % (1 << (DIGIT_BITS * used)) for t, used in zip(totals, sizes, strict=True)]
    return split_groups(reduced, count, group)
