"""Loan books: valid files load exactly, every bad file is refused with file, row and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcredit.data.loans import MAX_BALANCE_CENTS, load_loans
from fedcredit.errors import DataError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "loans.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_valid_book_loads_balances_in_exact_cents(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "id,outstanding_balance,product,open_date\n"
        "A1,1200.50,card,2023-01-31\n"
        " B2 ,0.10,,\n"
        "C3,0,mortgage,2020-05-01\n",
    )

    book = load_loans(path)

    assert dict(book.balances) == {"A1": 120050, "B2": 10, "C3": 0}
    assert book.rows == 3


def test_several_loans_of_one_person_are_summed(tmp_path: Path) -> None:
    path = write(tmp_path, "id,outstanding_balance\nA1,100\nA1,50.25\nB2,1\n")

    book = load_loans(path)

    assert book.balances["A1"] == 15025
    assert book.rows == 3


def test_people_with_zero_balance_are_not_outstanding(tmp_path: Path) -> None:
    path = write(tmp_path, "id,outstanding_balance\nA1,0\nB2,3\n")

    assert load_loans(path).outstanding() == {"B2": 300}


def test_optional_columns_may_be_absent_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "outstanding_balance,id\n5,X\n\n")

    assert dict(load_loans(path).balances) == {"X": 500}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "id,outstanding_balance\nA1,-5\n",
            "row 2, column 'outstanding_balance': balance -5 is negative",
        ),
        (
            "id,outstanding_balance\nA1,abc\n",
            "row 2, column 'outstanding_balance': balance 'abc' is not a number",
        ),
        ("id,outstanding_balance\nA1,NaN\n", "row 2, column 'outstanding_balance': balance is NaN"),
        (
            "id,outstanding_balance\nA1,inf\n",
            "row 2, column 'outstanding_balance': balance 'inf' is infinite",
        ),
        (
            "id,outstanding_balance\nA1,-Infinity\n",
            "row 2, column 'outstanding_balance': balance '-Infinity' is infinite",
        ),
        ("id,outstanding_balance\nA1,\n", "row 2, column 'outstanding_balance': balance is empty"),
        (
            "id,outstanding_balance\nA1,1.005\n",
            "row 2, column 'outstanding_balance': balance 1.005 has more than two",
        ),
        ("id,outstanding_balance\nA1,1\n ,2\n", "row 3, column 'id': the id is missing"),
        ("id,outstanding_balance\nA1,1,extra\n", "row 2: expected 2 fields, found 3"),
        (
            "id,outstanding_balance,open_date\nA1,1,31/01/2023\n",
            "row 2, column 'open_date': '31/01/2023' is not a date",
        ),
        ("id,balance\nA1,1\n", "row 1, column 'balance': unknown column"),
        ("id,product\nA1,card\n", "row 1: the required column 'outstanding_balance' is missing"),
        ("id,id,outstanding_balance\nA1,A1,1\n", "row 1, column 'id': the column appears twice"),
        ("", "the file is empty"),
        (
            "id,outstanding_balance\nA1,1e20\n",
            "row 2, column 'outstanding_balance': balance 1e20 exceeds the maximum",
        ),
    ],
)
def test_a_bad_book_is_refused_naming_file_row_and_column(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(DataError) as caught:
        load_loans(path)

    message = str(caught.value)
    assert str(path) in message
    assert fragment in message
    assert "\n" not in message


def test_a_summed_balance_above_the_maximum_is_refused(tmp_path: Path) -> None:
    big = f"{MAX_BALANCE_CENTS // 100}.00"
    path = write(tmp_path, f"id,outstanding_balance\nA1,{big}\nA1,{big}\n")

    with pytest.raises(DataError, match=r"row 3, column 'outstanding_balance': the summed balance"):
        load_loans(path)


def test_a_missing_file_is_refused_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_loans(tmp_path / "absent.csv")


def test_a_book_with_its_own_column_names_loads_through_the_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_no,balance,product\nA1,10.50,card\nA1,1.00,loan\nB2,3,card\n")
    columns = {"id": "customer_no", "outstanding_balance": "balance"}

    book = load_loans(path, columns)

    assert book.outstanding() == {"A1": 11_50, "B2": 3_00}
    with pytest.raises(DataError, match=r"row 1, column 'customer_no': unknown column"):
        load_loans(path)


def test_errors_in_a_mapped_book_name_the_files_own_column(tmp_path: Path) -> None:
    path = write(tmp_path, "customer_no,balance\nA1,-4\n")

    with pytest.raises(DataError, match=r"row 2, column 'balance': balance -4 is negative"):
        load_loans(path, {"id": "customer_no", "outstanding_balance": "balance"})
    with pytest.raises(DataError, match=r"required column 'customer_no' is missing"):
        load_loans(
            write(tmp_path, "balance\n4\n"), {"id": "customer_no", "outstanding_balance": "balance"}
        )
