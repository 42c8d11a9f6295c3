"""``fedcredit run`` and ``fedcredit score``: start the local nodes, drive the job, stop them."""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fedcredit.cli.progress import Progress
from fedcredit.config import Federation
from fedcredit.errors import ConfigError, DataError
from fedcredit.node.driver import Driver
from fedcredit.node.launcher import LocalNodes
from fedcredit.node.transport.client import call, open_channel, wait_for_ready
from fedcredit.node.transport.peers import COORDINATOR, Peers, PeerStubs
from fedcredit.node.transport.tls import init_certs, load_channel_credentials, pins_in
from fedcredit.proto.v1 import (
    common_pb2,
    coordinator_pb2,
    scoring_pb2,
)

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
READY_TIMEOUT_S = 60.0
SCORE_CHUNK = 2000
SCORE_COLUMNS = ("id", "probability", "score", "grade", "reasons", "error")
DEBT_COLUMNS = ("other_lenders", "total_outstanding", "debt_reason")


def local_names(fed: Federation) -> list[str]:
    """Nodes whose address is on this machine: `run` starts them as separate processes."""
    return [n for n in fed.all_names if fed.endpoint(n).host in LOCAL_HOSTS]


def prepare_certs(fed: Federation, out: Path, *, insecure: bool) -> Path | None:
    """The certificate folder: the file's [tls], or a throwaway CA for an all-local run."""
    if insecure:
        return None
    if fed.tls is not None:
        return fed.tls.cert_dir
    if len(local_names(fed)) != len(fed.all_names):
        raise ConfigError(
            f"{fed.path.name}: some nodes are remote, so the file must name certificates in [tls]"
        )
    cert_dir = out / "certs"
    if not (cert_dir / "ca.pem").exists():
        init_certs(cert_dir, list(fed.all_names))
    return cert_dir


def _driver_credentials(fed: Federation, cert_dir: Path | None, as_party: str) -> Any:
    if cert_dir is None:
        return None
    ca = fed.tls.ca if fed.tls is not None else cert_dir / "ca.pem"
    cert, key = cert_dir / f"{as_party}.pem", cert_dir / f"{as_party}.key"
    return load_channel_credentials(ca, cert, key, pins_in(cert_dir, fed.cert_pins()))


def _wait_all(addresses: dict[str, str], credentials: Any, self_name: str) -> None:
    for name, address in addresses.items():
        channel = open_channel(
            address, party_name=name, credentials=credentials, self_name=self_name
        )
        try:
            wait_for_ready(channel, name, READY_TIMEOUT_S)
        finally:
            channel.close()


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
        credentials = _driver_credentials(fed, cert_dir, COORDINATOR)
        _wait_all(addresses, credentials, COORDINATOR)
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


@contextlib.contextmanager
def scoring_service(
    fed: Federation,
    model_dir: Path,
    run_dir: Path,
    *,
    insecure: bool = False,
    allow_small_keys: bool = False,
) -> Iterator[PeerStubs]:
    """Local nodes loaded with a model, a fresh coordinator key, and a stub of the lender's
    Score RPC opened with the lender's own certificate (scores go to the lender only)."""
    cert_dir = prepare_certs(fed, model_dir.parent, insecure=insecure)
    names = local_names(fed)
    lender = fed.lender.name
    with LocalNodes(
        fed.path,
        names,
        run_dir,
        cert_dir=cert_dir,
        insecure=insecure,
        allow_small_keys=allow_small_keys,
        model_dir=model_dir,
    ) as nodes:
        addresses = {n: fed.endpoint(n).address for n in fed.all_names}
        addresses.update(nodes.start(last=lender))
        coord_creds = _driver_credentials(fed, cert_dir, COORDINATOR)
        _wait_all(addresses, coord_creds, COORDINATOR)
        operator = Peers(addresses, lender, credentials=coord_creds, own_name=COORDINATOR)
        env = common_pb2.Envelope(job_id=f"scoring-{uuid.uuid4().hex[:8]}", seq=1)
        operator.call_coordinator(
            "StartJob", coordinator_pb2.StartJobRequest(env=env, key_bits=fed.key_bits), 120.0
        )
        operator.close()
        credentials = _driver_credentials(fed, cert_dir, lender)
        channel = open_channel(
            addresses[lender], party_name=lender, credentials=credentials, self_name=lender
        )
        try:
            yield PeerStubs(channel)
        finally:
            channel.close()


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
            reply = call(
                stub.Score, scoring_pb2.ScoreRequest(ids=chunk), party=lender, timeout_s=600.0
            )
            if debt is None:
                debt = any(has_debt(item) for item in reply.applicants)
                writer.writerow([*SCORE_COLUMNS, *(DEBT_COLUMNS if debt else ())])
            for item in reply.applicants:
                writer.writerow(score_row(item, debt))
                written += 1
            progress("phase", {"message": f"  scored {written:,}/{len(ids):,} applicants"})
    os.replace(tmp, out_csv)
    shutil.rmtree(run_dir, ignore_errors=True)
    return written


def has_debt(item: scoring_pb2.ScoredApplicant) -> bool:
    """Whether the lender's node ran (or tried) the loan-stacking check for this applicant."""
    return item.HasField("other_lenders") or bool(item.debt_reason)


def score_row(item: scoring_pb2.ScoredApplicant, debt: bool) -> list[str]:
    """One SCORES.csv row; the debt columns only when ``debt``."""
    if item.error:
        row = [item.id, "", "", "", "", item.error]
    else:
        row = [
            item.id,
            f"{item.probability:.12g}",
            f"{item.score:.1f}",
            item.grade,
            item.reasons,
            "",
        ]
    if debt:
        lenders = str(item.other_lenders) if item.HasField("other_lenders") else ""
        total = item.total_outstanding if item.HasField("total_outstanding") else ""
        row += [lenders, total, item.debt_reason]
    return row
