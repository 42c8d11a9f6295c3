"""``fedcredit run`` and ``fedcredit score``: start the local nodes, drive the job, stop them."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path
from typing import Any

from fedcredit.cli.progress import Progress
from fedcredit.config import COORDINATOR, Federation
from fedcredit.driver.families import family_driver
from fedcredit.driver.job import Driver
from fedcredit.driver.launcher import (
    LocalNodes,
    channel_credentials,
    local_names,
    prepare_certs,
    wait_all,
)
from fedcredit.driver.scoring import score_chunk, score_header, scoring_service
from fedcredit.errors import ConfigError, DataError

SCORE_CHUNK = 2000


def run_job(
    fed: Federation,
    out: Path,
    *,
    resume: bool,
    quiet: bool,
    insecure: bool = False,
    allow_small_keys: bool = False,
    align_only: bool = False,
) -> dict[str, Any]:
    """Align, train, evaluate; writes DIR/metrics.json, the model and the plots.

    With ``align_only`` the job stops after the private alignment and returns the
    aligned row counts and the PSI's seconds (``align_seconds``); nothing is written.
    """
    family_driver(fed)  # a family the nodes cannot train over gRPC is refused before any work
    _check_writable(out)
    cert_dir = prepare_certs(fed, out, insecure=insecure)
    progress = Progress(quiet=quiet)
    names = local_names(fed)
    with LocalNodes(
        fed.path,
        names,
        out,
        cert_dir=cert_dir,
        insecure=insecure,
        allow_small_keys=allow_small_keys,
    ) as nodes:
        progress("phase", {"message": f"starting {len(names)} local nodes: {', '.join(names)}"})
        addresses = {n: fed.endpoint(n).address for n in fed.all_names}
        addresses.update(nodes.start())
        credentials = channel_credentials(fed, cert_dir, COORDINATOR)
        wait_all(addresses, credentials, COORDINATOR)
        driver = Driver(
            fed,
            addresses,
            credentials=credentials,
            progress=progress,
            state_dirs={n: str(nodes.state_dir(n)) for n in names if n != COORDINATOR},
            liveness=nodes.check_alive,
        )
        if align_only:
            aligned: dict[str, Any] = dict(driver.align_only())
            aligned["align_seconds"] = driver.timings["align"]
            aligned["align_phases"] = {
                k: round(v, 3) for k, v in driver.timings.items() if k.startswith("align_")
            }
            return aligned
        return driver.run(out, resume=resume)


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {out}: {exc.strerror}") from exc
    if not os.access(out, os.W_OK):
        raise ConfigError(f"output folder {out} is not writable")


def read_ids(path: Path) -> list[str]:
    """Applicant ids from a CSV's first column (a header row named id/ID is skipped)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror}") from exc
    if rows and rows[0][0].strip().lower() in {"id", "ids", "applicant", "customer_id"}:
        rows = rows[1:]
    ids = [row[0].strip() for row in rows]
    for number, value in enumerate(ids, start=2):
        if not value:
            raise DataError(f"{path}: row {number}: empty id")
    if not ids:
        raise DataError(f"{path}: no applicant ids")
    return ids


def score_batch(
    fed: Federation,
    model_dir: Path,
    ids: list[str],
    out_csv: Path,
    *,
    quiet: bool,
    insecure: bool = False,
    allow_small_keys: bool = False,
) -> int:
    """Batch scoring through the lender's Score RPC, as the lender's operator.

    SCORES.csv is written through a temporary file and renamed: never half-written. When the
    lender's node runs the loan-stacking check (docs/DEBT.md), three more columns follow:
    ``other_lenders``, ``total_outstanding`` (empty when withheld) and ``debt_reason``.
    """
    progress = Progress(quiet=quiet)
    run_dir = out_csv.parent / f".{out_csv.stem}-nodes"
    lender = fed.lender.name
    tmp = out_csv.with_name(f".{out_csv.name}.tmp")
    written = 0
    with (
        scoring_service(
            fed, model_dir, run_dir, insecure=insecure, allow_small_keys=allow_small_keys
        ) as stub,
        open(tmp, "w", newline="", encoding="utf-8") as handle,
    ):
        writer = csv.writer(handle)
        debt: bool | None = None  # Whether the lender's node answers the debt columns.
        for start in range(0, len(ids), SCORE_CHUNK):
            chunk = ids[start : start + SCORE_CHUNK]
            first = debt is None
            debt, rows = score_chunk(stub, chunk, lender=lender, debt=debt)
            if first:
                writer.writerow(score_header(debt))
            writer.writerows(rows)
            written += len(rows)
            progress("phase", {"message": f"  scored {written:,}/{len(ids):,} applicants"})
    os.replace(tmp, out_csv)
    shutil.rmtree(run_dir, ignore_errors=True)
    return written
