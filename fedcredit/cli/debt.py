"""``fedcredit debt-check``: ask, as one lender, how many other lenders each applicant owes.

The command runs the consortium locally: it reads every lending party's ``loans`` file named
in the federation file, starts one ``DebtService`` server per lender and one for the
coordinator in this process (on 127.0.0.1, ephemeral ports, mutual TLS with the federation's
certificates, or a throwaway CA when the file has no [tls] table), uploads every table over
gRPC and runs the query as ``--lender``. In a deployment each lender serves
``DebtLenderServicer`` from its own node and the coordinator ``DebtCoordinatorServicer``; the
messages are the same.
"""

from __future__ import annotations

import csv
import io
import json
import random
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from fedcredit.config import load_federation
from fedcredit.data.loans import load_loans
from fedcredit.debt import DebtResult
from fedcredit.driver.debt import COORDINATOR, CertSource, LocalConsortium
from fedcredit.errors import ConfigError, DataError
from fedcredit.node.transport.tls import init_certs

OUT_COLUMNS = ("id", "other_lenders", "total_outstanding", "reason")


def read_applicants(path: Path) -> list[str]:
    """Applicant ids from a CSV (``id`` column, or the first column; one clear error each)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise DataError(f"{path}: cannot read the applicants file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: the applicants file is not UTF-8 text") from exc
    if not rows:
        raise DataError(f"{path}: the applicants file is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    column = header.index("id") if "id" in header else 0
    ids: list[str] = []
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        value = row[column].strip() if column < len(row) else ""
        if not value:
            raise DataError(f"{path}: row {number}, column 'id': the id is missing")
        ids.append(value)
    if not ids:
        raise DataError(f"{path}: no applicant ids below the header")
    return ids


def write_results(out: Path | None, ids: Sequence[str], results: Sequence[DebtResult]) -> None:
    """One row per applicant in input order; stdout when ``out`` is None."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(OUT_COLUMNS)
    for pid, result in zip(ids, results, strict=True):
        writer.writerow([pid, result.other_lenders, result.total_outstanding, result.reason])
    if out is None:
        sys.stdout.write(buffer.getvalue())
        return
    try:
        out.write_text(buffer.getvalue(), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}") from exc


def debt_check(
    federation_path: Path,
    lender: str,
    applicants_csv: Path,
    out_csv: Path | None,
    json_mode: bool,
    min_count_for_total: int = 2,
) -> int:
    """Run ``fedcredit debt-check``; writes the results and returns the exit status (0)."""
    if min_count_for_total < 1:
        raise ConfigError("--min-count-for-total must be at least 1")
    fed = load_federation(federation_path, allow_small_keys=True)
    lending = {p.name: p.loans for p in fed.parties if p.loans is not None}
    columns = {p.name: dict(p.loans_columns) for p in fed.parties}
    if lender not in lending:
        names = ", ".join(sorted(lending)) or "none"
        raise ConfigError(f"{lender!r} has no loans file in {federation_path} (lenders: {names})")
    books = {name: load_loans(path, columns[name]).outstanding() for name, path in lending.items()}
    ids = read_applicants(applicants_csv)
    with tempfile.TemporaryDirectory(prefix="fedcredit-debt-") as tmp:
        certs: CertSource = fed.tls or init_certs(tmp, [*lending, COORDINATOR])
        with LocalConsortium(
            list(lending), certs, key_bits=fed.key_bits, min_count_floor=min_count_for_total
        ) as consortium:
            for name, balances in books.items():
                consortium.upload(name, balances)
            results = consortium.querier(lender).ask(ids, min_count_for_total)
    write_results(out_csv, ids, results)
    summary = {
        "applicants": len(ids),
        "with_other_lenders": sum(r.other_lenders > 0 for r in results),
        "totals_withheld": sum(r.total_outstanding_cents is None for r in results),
        "min_count_for_total": min_count_for_total,
        "out": str(out_csv) if out_csv else None,
    }
    if json_mode:
        print(json.dumps(summary))
    elif out_csv is not None:
        print(
            f"{summary['applicants']} applicants checked against {len(lending) - 1} other "
            f"lenders: {summary['with_other_lenders']} owe another lender; totals are shown only "
            f"when {min_count_for_total} or more other lenders match; written to {out_csv}"
        )
    return 0


def run_debt_demo(folder: Path, *, quiet: bool = False, customers: int = 300) -> dict[str, object]:
    """Five synthetic lenders with overlapping books; lender-1 checks 50 applicants."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    names = [f"lender-{i}" for i in range(1, 6)]
    people = [f"P{i:05d}" for i in range(customers)]
    books = {
        name: {pid: rng.randint(1_000, 5_000_000) for pid in people if rng.random() < 0.3}
        for name in names
    }
    ids = people[:50]
    certs = init_certs(folder / "certs", [*names, COORDINATOR], overwrite=True)
    with LocalConsortium(names, certs) as consortium:
        for name, balances in books.items():
            consortium.upload(name, balances)
        results = consortium.querier(names[0]).ask(ids)
    write_results(folder / "debt_check.csv", ids, results)
    summary: dict[str, object] = {
        "lenders": len(names),
        "applicants": len(ids),
        "with_other_lenders": sum(r.other_lenders > 0 for r in results),
        "out": str(folder / "debt_check.csv"),
    }
    stacked = sorted(
        ((pid, r) for pid, r in zip(ids, results, strict=True) if r.other_lenders >= 2),
        key=lambda item: (-item[1].other_lenders, item[0]),
    )
    summary["stacked"] = [
        {"id": pid, "other_lenders": r.other_lenders, "total_outstanding": r.total_outstanding}
        for pid, r in stacked[:5]
    ]
    if not quiet:
        print(f"   {summary['with_other_lenders']} of {len(ids)} applicants owe another lender;")
        print(f"   {len(stacked)} owe two or more (loan stacking). The first of them:")
        print(f"   {'applicant':<10} {'other lenders':>13} {'total outstanding':>18}")
        for pid, r in stacked[:5]:
            print(f"   {pid:<10} {r.other_lenders:>13} {r.total_outstanding:>18}")
        print(f"   {names[0]} learned only these two aggregates per applicant: {summary['out']}")
    return summary
