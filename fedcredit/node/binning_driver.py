"""The driver's side of federated binning: three steps between alignment and training.

1. SendLabels at the lender: it makes its own key pair for the job, encrypts its training labels
   and sends them to every partner directly.
2. ComputeBinSums at every partner: it bins its own columns, sums the labels per bin under the
   lender's key and sends the packed sums to the lender directly.
3. SelectBins at the lender: WOE and IV of every column, selection, monotonic merges; each
   partner gets only its keep/merge plan and encodes its bins one-hot, the lender by WOE.
The driver (the coordinator's operator, who does not hold the lender's key) sees only
acknowledgements and the IV report: one IV and two bin counts per column, no per-bin figure.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedcredit.model.plots import plot_iv
from fedcredit.node.transport.client import call
from fedcredit.proto.v1 import binning_pb2, binning_pb2_grpc
from fedcredit.protocol.binning import iv_by_column, report_csv, report_html
from fedcredit.protocol.split import check_batch_rule

if TYPE_CHECKING:
    from fedcredit.node.driver import Driver

STEP_TIMEOUT_S = 900.0


def _call(driver: Driver, party: str, method: str, request: Any) -> Any:
    driver.liveness()
    try:
        stub = binning_pb2_grpc.BinningStub(driver.peers.channel(party))
        return call(
            getattr(stub, method), request, party=party, timeout_s=STEP_TIMEOUT_S, idempotent=True
        )
    finally:
        driver.liveness()


def run_binning(
    driver: Driver, aligned: Mapping[str, int], out_dir: Path | None = None
) -> dict[str, Any]:
    """Bin, select and encode every party's columns; returns ``{"iv": rows, ...}`` for metrics.

    With ``out_dir``, writes ``iv.csv``, ``iv.html`` and ``iv.png`` there.
    """
    started = time.monotonic()
    lender, hosts = driver.peers.lender, driver.peers.hosts
    message = f"federated binning, WOE and IV over {len(hosts) + 1} parties"
    driver.progress("phase", {"phase": "binning", "message": message})
    _call(driver, lender, "SendLabels", binning_pb2.BinningStep(env=driver.env()))
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        futures = [
            pool.submit(
                _call, driver, h, "ComputeBinSums", binning_pb2.BinningStep(env=driver.env())
            )
            for h in hosts
        ]
        for future in futures:
            future.result()
    reply = _call(driver, lender, "SelectBins", binning_pb2.BinningStep(env=driver.env()))
    rows: list[dict[str, Any]] = json.loads(reply.report_json)
    features = {party: int(count) for party, count in reply.features.items()}
    _check_features(driver, aligned, features)
    if out_dir is not None:
        write_iv_report(out_dir, rows)
    driver.timings["binning"] = time.monotonic() - started
    kept = sum(1 for r in rows if r["kept"])
    driver.progress(
        "phase", {"phase": "binning", "message": f"kept {kept} of {len(rows)} columns by IV"}
    )
    return {"iv": rows, "binned_features": features}


def _check_features(driver: Driver, aligned: Mapping[str, int], features: dict[str, int]) -> None:
    """The batch-size rule of ``Driver._check_sizes`` for the encoded design columns."""
    weights = {p: n + (1 if p == driver.peers.lender else 0) for p, n in features.items()}
    driver.fed.check_batch_size(weights)
    check_batch_rule(weights, aligned["train"], driver.fed.train.batch_size, what="binned features")


def write_iv_report(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    """``iv.csv``, ``iv.html`` and the ``iv.png`` bar chart of the report rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # newline="": the CSV's own CRLF line ends, never translated.
    (out_dir / "iv.csv").write_text(report_csv(rows), encoding="utf-8", newline="")
    (out_dir / "iv.html").write_text(report_html(rows), encoding="utf-8")
    if rows:
        # Written next to the output and renamed, so a crash never leaves half a PNG.
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".iv-") as tmp:
            plot_iv(iv_by_column(rows), Path(tmp) / "iv.png")
            (Path(tmp) / "iv.png").replace(out_dir / "iv.png")
