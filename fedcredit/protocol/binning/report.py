"""The IV report: what leaves the lender after binning (per column IV and bin counts only)."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

from fedcredit.protocol.binning.plan import ColumnReport

REPORT_FIELDS = ("party", "column", "iv", "iv_fine", "fine_bins", "bins", "kept")


def report_rows(reports: Sequence[ColumnReport]) -> list[dict[str, Any]]:
    """What leaves the lender: per column IV and bin counts (no per-bin figure), best first."""
    rows = [
        {
            "party": r.party,
            "column": r.column,
            "iv": round(r.iv, 6),
            "iv_fine": round(r.iv_fine, 6),
            "fine_bins": r.fine_bins,
            "bins": r.bins,
            "kept": r.kept,
        }
        for r in reports
    ]
    return sorted(rows, key=lambda row: (-float(row["iv"]), str(row["party"]), str(row["column"])))


# A text cell starting with one of these is run as a formula by spreadsheets (OWASP, CSV
# injection). Column names are the partners' own text and the rows come from the lender.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """``value``, with a leading ``'`` when it is text a spreadsheet would run; numbers stay."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def report_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The IV report as CSV; every text cell is defused against formula injection.

    Lines end in CRLF (RFC 4180), so the csv module quotes any cell holding a CR or LF.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(REPORT_FIELDS), lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row[k]) for k in REPORT_FIELDS})
    return buffer.getvalue()


def report_html(rows: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(k)}</th>" for k in REPORT_FIELDS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row[k]))}</td>" for k in REPORT_FIELDS) + "</tr>"
        for row in rows
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Information value</title></head>"
        f"<body><h1>Information value by column</h1><img src='iv.png' alt='IV chart'>"
        f"<table border='1'><tr>{head}</tr>{body}</table></body></html>\n"
    )


def iv_by_column(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Column -> IV for the chart; a column name used by two parties is prefixed by the party."""
    names = [str(r["column"]) for r in rows]
    return {
        (
            str(r["column"])
            if names.count(str(r["column"])) == 1
            else f"{r['party']}:{r['column']}"
        ): float(r["iv"])
        for r in rows
    }
