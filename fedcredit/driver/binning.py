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
from pathlib import Path
from typing import Any

from fedcredit.driver.align import check_batches
from fedcredit.driver.context import BINNING_TIMEOUT_S, JobContext
from fedcredit.model.plots import plot_iv
from fedcredit.proto.v1 import binning_pb2
from fedcredit.protocol.binning import iv_by_column, report_csv, report_html
from fedcredit.protocol.checkpoint import write_json_atomic


def binning_phase(
    ctx: JobContext, aligned: Mapping[str, int], out_dir: Path, *, resumed: bool
) -> dict[str, Any]:
    """Run federated binning, or, when resuming, keep the binning of the interrupted run.

    Binning noise is fresh every run (so two runs cannot be differenced), so a resumed
    job cannot bin again: the parties restore their encoders from their checkpoints and
    the driver keeps the report it saved (``binning.json``). ``{}`` without ``[binning]``.
    """
    if ctx.fed.binning is None:
        return {}
    saved = out_dir / "binning.json"
    if resumed and saved.exists():
        binned: dict[str, Any] = json.loads(saved.read_text(encoding="utf-8"))
        return binned
    binned = run_binning(ctx, aligned, out_dir)
    write_json_atomic(saved, binned)
    return binned


def run_binning(
    ctx: JobContext, aligned: Mapping[str, int], out_dir: Path | None = None
) -> dict[str, Any]:
    """Bin, select and encode every party's columns; returns ``{"iv": rows, ...}`` for metrics.

    With ``out_dir``, writes ``iv.csv``, ``iv.html`` and ``iv.png`` there.
    """
    started = time.monotonic()
    lender, hosts = ctx.lender, ctx.hosts
    message = f"federated binning, WOE and IV over {len(hosts) + 1} parties"
    ctx.progress("phase", {"phase": "binning", "message": message})

    def step() -> binning_pb2.BinningStep:
        return binning_pb2.BinningStep(env=ctx.env())

    wait = BINNING_TIMEOUT_S
    ctx.call(lender, lambda s: s.binning.SendLabels, step(), timeout_s=wait)
    ctx.call_all(hosts, lambda s: s.binning.ComputeBinSums, lambda _: step(), timeout_s=wait)
    reply = ctx.call(lender, lambda s: s.binning.SelectBins, step(), timeout_s=wait)
    rows: list[dict[str, Any]] = json.loads(reply.report_json)
    features = {party: int(count) for party, count in reply.features.items()}
    # The batch-size rule of ``align.check_sizes`` for the encoded design columns.
    weights = {p: n + (1 if p == lender else 0) for p, n in features.items()}
    check_batches(ctx, aligned["train"], weights, "binned features")
    if out_dir is not None:
        write_iv_report(out_dir, rows)
    ctx.timings["binning"] = time.monotonic() - started
    kept = sum(1 for r in rows if r["kept"])
    ctx.progress(
        "phase", {"phase": "binning", "message": f"kept {kept} of {len(rows)} columns by IV"}
    )
    return {"iv": rows, "binned_features": features}


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
