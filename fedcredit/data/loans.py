"""Load and validate a lender's loan book (the input of the loan-stacking check).

A loan book is a CSV file with a header row and the columns

- ``id`` (required): the applicant identifier, compared after stripping surrounding spaces;
- ``outstanding_balance`` (required): a non-negative decimal amount with at most two decimal
  places (currency units, kept exactly as integer cents);
- ``product`` and ``open_date`` (optional): free text, and an ISO date ``YYYY-MM-DD``.

Several rows may share an ``id`` (one person with several loans at this lender): their balances
are summed, because the loan-stacking check counts lenders, not loans. A person whose summed
balance is zero has no outstanding loan here and is left out of the upload.

A lender whose export names the two required columns otherwise maps them (``columns``, from
the federation file's ``loans_id_column`` and ``loans_balance_column``); errors then name the
file's own column.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from fedcredit.errors import DataError

REQUIRED_COLUMNS = ("id", "outstanding_balance")
OPTIONAL_COLUMNS = ("product", "open_date")
MAX_BALANCE_CENTS = (1 << 48) - 1
"""Upper bound on one person's summed balance at one lender (about 2.8e12 currency units).

The encrypted encoding reserves 48 bits for a balance; see ``fedcredit.debt.encoding``."""


@dataclass(frozen=True)
class LoanBook:
    """One lender's outstanding balances per person, in integer cents."""

    path: str
    balances: Mapping[str, int] = field(repr=False)
    rows: int

    def outstanding(self) -> dict[str, int]:
        """The people with a positive summed balance, mapped to that balance in cents."""
        return {pid: cents for pid, cents in self.balances.items() if cents > 0}

    def __len__(self) -> int:
        return len(self.balances)


def parse_balance_cents(text: str) -> int:
    """Parse a decimal amount into integer cents; raise ``ValueError`` with the reason."""
    value = text.strip()
    if not value:
        raise ValueError("balance is empty")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"balance {value!r} is not a number") from exc
    if amount.is_nan():
        raise ValueError("balance is NaN")
    if not amount.is_finite():
        raise ValueError(f"balance {value!r} is infinite")
    if amount < 0:
        raise ValueError(f"balance {value} is negative")
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"balance {value} has more than two decimal places")
    result = int(cents)
    if result > MAX_BALANCE_CENTS:
        raise ValueError(f"balance {value} exceeds the maximum {MAX_BALANCE_CENTS / 100:.2f}")
    return result


def _check_header(
    path: Path, header: list[str] | None, columns: Mapping[str, str]
) -> dict[str, int]:
    """Our column name -> its index; ``columns`` maps our required names to the file's."""
    wanted = {columns.get(name, name): name for name in REQUIRED_COLUMNS}
    wanted.update({name: name for name in OPTIONAL_COLUMNS})
    if not header:
        expected = ",".join(columns.get(name, name) for name in REQUIRED_COLUMNS)
        raise DataError(f"{path}: the file is empty; expected a header with {expected}")
    names = [name.strip() for name in header]
    positions: dict[str, int] = {}
    for index, name in enumerate(names):
        if name not in wanted:
            allowed = ", ".join(wanted)
            raise DataError(f"{path}: row 1, column {name!r}: unknown column (allowed: {allowed})")
        if wanted[name] in positions:
            raise DataError(f"{path}: row 1, column {name!r}: the column appears twice")
        positions[wanted[name]] = index
    for ours in REQUIRED_COLUMNS:
        if ours not in positions:
            name = columns.get(ours, ours)
            raise DataError(f"{path}: row 1: the required column {name!r} is missing")
    return positions


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            yield from enumerate(csv.reader(handle), start=1)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: the loan file does not exist") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: the loan file is not UTF-8 text") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: the loan file is not valid CSV: {exc}") from exc


def _check_cell(path: Path, rowno: int, column: str, text: str) -> None:
    if column == "open_date" and text.strip():
        try:
            dt.date.fromisoformat(text.strip())
        except ValueError as exc:
            raise DataError(
                f"{path}: row {rowno}, column 'open_date': {text.strip()!r} is not a date "
                "in the form YYYY-MM-DD"
            ) from exc


def load_loans(path: str | Path, columns: Mapping[str, str] | None = None) -> LoanBook:
    """Read and validate a loan book; every problem is one ``DataError`` naming file, row, column.

    Rows are numbered as in a spreadsheet: the header is row 1. ``columns`` maps ``id`` and
    ``outstanding_balance`` to the file's own names for them.
    """
    file = Path(path)
    names = dict(columns or {})
    rows = _rows(file)
    first = next(rows, None)
    positions = _check_header(file, first[1] if first else None, names)
    id_name = names.get("id", "id")
    balance_name = names.get("outstanding_balance", "outstanding_balance")
    width = len(first[1]) if first else 0
    balances: dict[str, int] = {}
    count = 0
    for rowno, row in rows:
        if not row or all(not cell.strip() for cell in row):
            continue  # Blank lines (often a trailing newline) carry no loan.
        if len(row) != width:
            raise DataError(f"{file}: row {rowno}: expected {width} fields, found {len(row)}")
        pid = row[positions["id"]].strip()
        if not pid:
            raise DataError(f"{file}: row {rowno}, column {id_name!r}: the id is missing")
        try:
            cents = parse_balance_cents(row[positions["outstanding_balance"]])
        except ValueError as exc:
            raise DataError(f"{file}: row {rowno}, column {balance_name!r}: {exc}") from exc
        for column in OPTIONAL_COLUMNS:
            if column in positions:
                _check_cell(file, rowno, column, row[positions[column]])
        total = balances.get(pid, 0) + cents
        if total > MAX_BALANCE_CENTS:
            raise DataError(
                f"{file}: row {rowno}, column {balance_name!r}: the summed balance of id "
                f"{pid!r} exceeds the maximum {MAX_BALANCE_CENTS / 100:.2f}"
            )
        balances[pid] = total
        count += 1
    return LoanBook(path=str(file), balances=balances, rows=count)
