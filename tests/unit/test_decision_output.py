"""The decisions file: its columns, empty offers unless approved, guarded cells, atomic writes."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from fedcredit.decision.decide import DebtFacts, Decision, decide, unscored
from fedcredit.decision.output import (
    CSV_COLUMNS,
    decisions_csv,
    decisions_json,
    guard_cell,
    write_decisions_csv,
)
from fedcredit.decision.policy import Policy
from fedcredit.errors import DataError, StorageError

POLICY = Policy()


def sample() -> list[Decision]:
    return [
        decide(POLICY, 640.0, "B", [], None, applicant_id="c1"),
        decide(POLICY, 500.25, "D", ["PAY_0", "partners"], None, applicant_id="c2"),
        decide(POLICY, 700.0, "A", [], DebtFacts(6, None), applicant_id='=HYPERLINK("x")'),
        unscored("c4", "not in the lender's data"),
    ]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_file_has_the_issue_columns_and_one_row_per_applicant_in_order(tmp_path: Path) -> None:
    path = tmp_path / "decisions.csv"

    write_decisions_csv(path, sample())

    with open(path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    rows = read_rows(path)
    assert tuple(header) == CSV_COLUMNS == (
        "id", "score", "grade", "decision", "limit", "apr", "instalments", "reasons",
    )  # fmt: skip
    assert [r["id"] for r in rows] == ["c1", "c2", '\'=HYPERLINK("x")', "c4"]


def test_an_approval_has_its_offer_and_every_other_row_leaves_the_offer_empty(
    tmp_path: Path,
) -> None:
    path = tmp_path / "decisions.csv"

    write_decisions_csv(path, sample())

    approved, declined, stacked, unscored_row = read_rows(path)
    assert approved == {
        "id": "c1", "score": "640.00", "grade": "B", "decision": "approve",
        "limit": "27500", "apr": "0.156", "instalments": "3;6;9;12", "reasons": "",
    }  # fmt: skip
    assert declined["reasons"] == "PAY_0;partners"
    assert stacked["reasons"] == "too many other lenders"
    for row in (declined, stacked, unscored_row):
        assert (row["limit"], row["apr"], row["instalments"]) == ("", "", "")
    assert unscored_row["score"] == ""


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_text_a_spreadsheet_would_run_gets_a_leading_quote(text: str) -> None:
    assert guard_cell(text) == "'" + text


def test_plain_text_is_left_as_it_is() -> None:
    assert guard_cell("PAY_0;partners") == "PAY_0;partners"


def test_a_reasons_cell_starting_with_a_formula_is_guarded() -> None:
    decision = decide(POLICY, 500.0, "D", ["=cmd|'/c calc'!A1"], None, applicant_id="c1")

    text = decisions_csv([decision])

    assert "'=cmd" in text
    assert ",=cmd" not in text


def test_lines_end_in_crlf() -> None:
    text = decisions_csv(sample())

    assert text.count("\r\n") == 5
    assert "\n" not in text.replace("\r\n", "")


def test_a_decision_without_an_id_is_refused() -> None:
    with pytest.raises(DataError, match="applicant id"):
        decisions_csv([decide(POLICY, 700.0, "A", [], None)])


def test_a_failed_rename_leaves_the_previous_file_whole_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "decisions.csv"
    path.write_text("previous\n", encoding="utf-8")

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)

    with pytest.raises(StorageError, match=r"decisions\.csv"):
        write_decisions_csv(path, sample())
    assert path.read_text(encoding="utf-8") == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decisions.csv"]


def test_writing_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "decisions.csv"
    path.write_text("previous\n", encoding="utf-8")

    write_decisions_csv(path, sample()[:1])

    assert [r["id"] for r in read_rows(path)] == ["c1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decisions.csv"]


def test_the_json_form_holds_the_same_fields_as_values() -> None:
    items = json.loads(decisions_json(sample()))

    assert items[0] == {
        "id": "c1", "score": 640.0, "grade": "B", "decision": "approve",
        "limit": 27500, "apr": 0.156, "instalments": [3, 6, 9, 12], "reasons": [],
    }  # fmt: skip
    assert items[3]["score"] is None
    assert items[1]["reasons"] == ["PAY_0", "partners"]
