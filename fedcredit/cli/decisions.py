"""``fedcredit decide`` and ``fedcredit invite``: the lender's decisions, from local nodes.

Both start the federation's local nodes loaded with a model, as ``fedcredit score`` does, and
call the lender's ``Decide`` RPC (score, debt check and the federation file's [policy] at the
lender's node). ``decide`` writes one row per applicant in input order; ``invite`` writes the
approved ones with their offers and, with ``--deliver-to``, sends that partner's node the
invited ids alone. Files are written through a temporary file and a rename (never half-written),
and only once every applicant is decided.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedcredit.cli.progress import Progress
from fedcredit.config import Federation
from fedcredit.decision import DECISIONS, Decision, write_decisions_csv
from fedcredit.driver.decisions import approved, decide_chunk, decide_common, deliver_invitations
from fedcredit.driver.scoring import ScoringSession, scoring_session
from fedcredit.errors import ConfigError, DataError
from fedcredit.node.invitations import FOLDER

DECIDE_CHUNK = 2000
HEADER_NAMES = frozenset({"id", "ids", "applicant", "applicant_id", "customer_id"})
MAX_ID_CHARS = 256


@dataclass(frozen=True)
class NodeRun:
    """How to start the local nodes (the common options of the command)."""

    quiet: bool
    insecure: bool = False
    allow_small_keys: bool = False


def read_applicant_ids(path: Path) -> list[str]:
    """Applicant ids from a CSV: its ``id`` column when the header names one, else the first
    column (a first row naming id/ids/applicant/customer_id is a header). Blank lines are
    skipped; ``DataError`` names the file, the row and the column of a bad cell."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [(number, row) for number, row in enumerate(csv.reader(handle), start=1)]
    except OSError as exc:
        raise DataError(f"{path}: cannot read the ids file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: the ids file is not UTF-8 text") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: not a CSV file: {exc}") from exc
    rows = [(n, row) for n, row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise DataError(f"{path}: no applicant ids")
    header = [cell.strip().lower() for cell in rows[0][1]]
    column, name = 0, "1"
    if "id" in header:
        column, name = header.index("id"), "'id'"
        rows = rows[1:]
    elif header[0] in HEADER_NAMES:
        name = repr(rows[0][1][0].strip())
        rows = rows[1:]
    ids = []
    for number, row in rows:
        value = row[column].strip() if column < len(row) else ""
        if not value:
            raise DataError(f"{path}: row {number}, column {name}: the id is empty")
        if len(value) > MAX_ID_CHARS or not value.isprintable():
            raise DataError(
                f"{path}: row {number}, column {name}: an id is 1-{MAX_ID_CHARS} printable "
                "characters"
            )
        ids.append(value)
    if not ids:
        raise DataError(f"{path}: no applicant ids below the header")
    return ids


def decide_batch(
    fed: Federation, model_dir: Path, ids: Sequence[str], out_csv: Path, run: NodeRun
) -> list[Decision]:
    """Decide every applicant of ``ids`` and write DECISIONS.csv; the decisions, in order."""
    _require_policy(fed)
    progress = Progress(quiet=run.quiet)
    run_dir = out_csv.parent / f".{out_csv.stem}-nodes"
    decisions: list[Decision] = []
    with _session(fed, model_dir, run_dir, run, align=False) as session:
        for start in range(0, len(ids), DECIDE_CHUNK):
            decisions += decide_chunk(session, ids[start : start + DECIDE_CHUNK])
            progress("phase", {"message": f"  decided {len(decisions):,}/{len(ids):,}"})
    write_decisions_csv(out_csv, decisions)
    shutil.rmtree(run_dir, ignore_errors=True)
    return decisions


def invite_batch(
    fed: Federation,
    model_dir: Path,
    ids: Sequence[str] | None,
    out_csv: Path,
    run: NodeRun,
    deliver_to: str | None = None,
) -> dict[str, Any]:
    """Decide the common customers (or ``ids``), write the approved ones with their offers
    and, with ``deliver_to``, send that partner the invited ids; a summary."""
    _require_policy(fed)
    if deliver_to is not None and deliver_to not in [p.name for p in fed.hosts]:
        partners = ", ".join(p.name for p in fed.hosts)
        raise ConfigError(f"--deliver-to {deliver_to!r}: not a partner of {fed.path.name} "
                          f"({partners})")  # fmt: skip
    progress = Progress(quiet=run.quiet)
    run_dir = out_csv.parent / f".{out_csv.stem}-nodes"
    with _session(fed, model_dir, run_dir, run, align=ids is None) as session:
        if ids is None:
            progress("phase", {"message": "  deciding the common customers"})
            decisions = decide_common(session)
        else:
            decisions = []
            for start in range(0, len(ids), DECIDE_CHUNK):
                decisions += decide_chunk(session, ids[start : start + DECIDE_CHUNK])
        invited = approved(decisions)
        write_decisions_csv(out_csv, invited)
        receipt = None
        if deliver_to is not None:
            receipt = deliver_invitations(session, deliver_to, [d.applicant_id for d in invited])
    if receipt is None:
        shutil.rmtree(run_dir, ignore_errors=True)
    # A local partner's node folder is kept: the invitation list lives there.
    summary: dict[str, Any] = {
        "decided": len(decisions),
        **{kind: sum(d.decision == kind for d in decisions) for kind in DECISIONS},
        "invited": len(invited),
        "out": str(out_csv),
    }
    if receipt is not None:
        summary["delivered_to"] = deliver_to
        summary["delivered"] = receipt.received
        local = run_dir / FOLDER / receipt.file  # LocalNodes: the run folder is every home
        summary["delivered_file"] = str(local) if local.is_file() else receipt.file
    return summary


def _require_policy(fed: Federation) -> None:
    if fed.policy is None:
        raise ConfigError(
            f"{fed.path.name}: no [policy] table: decisions need the lender's policy (an empty "
            "[policy] takes the defaults; parties/README.md lists the keys)"
        )


def _session(
    fed: Federation, model_dir: Path, run_dir: Path, run: NodeRun, *, align: bool
) -> AbstractContextManager[ScoringSession]:
    if not (model_dir / f"{fed.lender.name}.json").is_file():
        raise ConfigError(f"--model {model_dir}: no model of the lender {fed.lender.name!r} there")
    return scoring_session(
        fed,
        model_dir,
        run_dir,
        align=align,
        insecure=run.insecure,
        allow_small_keys=run.allow_small_keys,
    )


__all__ = ["NodeRun", "ScoringSession", "decide_batch", "invite_batch", "read_applicant_ids"]
