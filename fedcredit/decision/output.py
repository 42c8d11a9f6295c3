"""The decisions file: one CSV row per applicant, written atomically, safe to open in a sheet.

Columns (``CSV_COLUMNS``): ``id, score, grade, decision, limit, apr, instalments, reasons``.
``limit``, ``apr`` and ``instalments`` are empty unless approved; ``instalments`` and
``reasons`` hold their items joined by ``;``. A text cell a spreadsheet would run as a formula
gets a leading ``'`` (the guard of the IV report, ``FORMULA_STARTS``): ids come from the
lender's input file and reasons name columns, neither of which this module chose.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from fedcredit.decision.decide import Decision
from fedcredit.errors import DataError

# The CSV guard of the IV report and the atomic writer of the job state: the only two places
# fedcredit.decision names a protocol module (checkpoint.py says the writer may move to
# fedcredit.files one day).
from fedcredit.protocol.binning.report import FORMULA_STARTS
from fedcredit.protocol.checkpoint import write_text_atomic

CSV_COLUMNS: Final = ("id", "score", "grade", "decision", "limit", "apr", "instalments", "reasons")
SEPARATOR: Final = ";"


def guard_cell(text: str) -> str:
    """``text``, with a leading ``'`` when a spreadsheet would run it as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def decision_row(decision: Decision) -> dict[str, str]:
    """The CSV cells of one decision, text cells guarded (numbers cannot start a formula)."""
    if not decision.applicant_id:
        raise DataError("a decision without an applicant id cannot be written")
    return {
        "id": guard_cell(decision.applicant_id),
        "score": "" if decision.score is None else f"{decision.score:.2f}",
        "grade": guard_cell(decision.grade),
        "decision": decision.decision,
        "limit": "" if decision.limit is None else str(decision.limit),
        "apr": "" if decision.apr is None else f"{decision.apr:.3f}",
        "instalments": SEPARATOR.join(str(n) for n in decision.instalments),
        "reasons": guard_cell(SEPARATOR.join(decision.reasons)),
    }


def decisions_csv(decisions: Sequence[Decision]) -> str:
    """The decisions as CSV text, header first, rows in the order given.

    Lines end in CRLF (RFC 4180), so the csv module quotes any cell holding a CR or LF.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\r\n")
    writer.writeheader()
    for decision in decisions:
        writer.writerow(decision_row(decision))
    return buffer.getvalue()


def decisions_json(decisions: Sequence[Decision]) -> str:
    """The decisions as a JSON list of objects keyed like the CSV columns (for ``--json``)."""
    return json.dumps([d.to_dict() for d in decisions], indent=2)


def write_decisions_csv(path: Path, decisions: Sequence[Decision]) -> None:
    """Write the decisions file through a temporary file and a rename: a crash or a full disk
    leaves the previous file whole (``StorageError`` names the path)."""
    write_text_atomic(path, decisions_csv(decisions))


__all__ = [
    "CSV_COLUMNS",
    "SEPARATOR",
    "decision_row",
    "decisions_csv",
    "decisions_json",
    "guard_cell",
    "write_decisions_csv",
]
