"""The evaluation files the driver accepts from the lender, and how it writes them into --out.

The lender is a peer: its ``Evaluate`` reply may name any file and hold any bytes. The driver
writes only the plots named in ``PLOTS``, each a PNG below ``MAX_FILE_BYTES``, and renders
``report.html`` itself from the lender's metrics (escaped), its own job metrics and those
plots: markup the lender put in its own report never reaches the operator's browser. The
training curve and the calibration plot are drawn here from figures, never taken from a
peer. Paths are built from the names below, never from the peer's strings, so nothing can
land outside the output folder.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedcredit.errors import ProtocolError, StorageError
from fedcredit.protocol.report import PLOTS, REPORT
from fedcredit.protocol.report_page import write_report

# Every name a lender may send (``evaluation_files``). Its report.html is accepted, not used.
EXPECTED = (*PLOTS, REPORT)
# The plots are about 50 KB and the lender's report about 150 KB; a few MB is ample.
MAX_FILE_BYTES = 4 * 1024 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_SHOWN_NAME_CHARS = 80


def _shown(name: str) -> str:
    """A peer's file name for an error message: quoted, control characters escaped, short."""
    if len(name) > _SHOWN_NAME_CHARS:
        return f"{name[:_SHOWN_NAME_CHARS]!r}... ({len(name):,} characters)"
    return repr(name)


def accepted_plots(lender: str, files: Mapping[str, bytes]) -> dict[str, bytes]:
    """The lender's plots the driver may write, keyed by the names in ``PLOTS``.

    Raises ``ProtocolError`` naming ``lender`` and the file for a name not in ``EXPECTED``
    (a path, ``..``, anything else), a file above ``MAX_FILE_BYTES`` or a plot that is not a
    PNG. The whole reply is checked before anything is written.
    """
    for name, data in files.items():
        if name not in EXPECTED:
            raise ProtocolError(
                f"lender {lender!r} sent an evaluation file named {_shown(name)}; the driver "
                f"writes only {', '.join(EXPECTED)}: nothing was written"
            )
        if len(data) > MAX_FILE_BYTES:
            raise ProtocolError(
                f"lender {lender!r} sent {name!r} of {len(data):,} bytes, above the limit of "
                f"{MAX_FILE_BYTES:,}: nothing was written"
            )
        if name in PLOTS and not data.startswith(PNG_MAGIC):
            raise ProtocolError(
                f"lender {lender!r} sent {name!r}, which is not a PNG image: nothing was written"
            )
    return {name: files[name] for name in PLOTS if name in files}


def model_points(model_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The points tables of the model parts in ``model_dir``, by party (an all-local run
    saves every part there; a distributed one only the manifest, and this is empty).

    The parts were written by the nodes, so each is read only below ``MAX_FILE_BYTES`` and
    kept only when its table is well formed: a ``column`` and ``label`` (text) and finite
    ``points`` per row. Anything else is left out, never an error.
    """
    tables: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(model_dir.glob("*.json")) if model_dir.is_dir() else []:
        if path.name == "manifest.json" or path.stat().st_size > MAX_FILE_BYTES:
            continue
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))["encoder"]["points"]["rows"]
            table = [
                {"column": str(r["column"]), "label": str(r["label"]), "points": r["points"]}
                for r in rows
            ]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if table and all(_finite(r["points"]) for r in table):
            tables[path.stem] = table
    return tables


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def write_evaluation_files(
    out_dir: Path,
    lender: str,
    files: Mapping[str, bytes],
    metrics: Mapping[str, Any],
    *,
    decisions: Mapping[str, Mapping[str, int]] | None = None,
    monitoring: str | None = None,
) -> list[str]:
    """Write the lender's accepted plots, the plots drawn here and a ``report.html`` rendered
    here (``report_page.write_report``) into ``out_dir``; returns the names written.

    ``metrics`` are the lender's evaluation metrics (shown escaped) with the driver's own job
    metrics. ``decisions`` and ``monitoring`` are passed to ``write_report``; points tables
    come from ``out_dir/model`` (``model_points``). Every file is staged next to its target
    and renamed, so each is whole or absent; a refused reply (see ``accepted_plots``) writes
    nothing.
    """
    plots = accepted_plots(lender, files)
    try:
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".evaluation-") as tmp:
            staged = Path(tmp)
            for name, data in plots.items():
                (staged / name).write_bytes(data)
            drawn = write_report(
                staged,
                metrics,
                list(plots),
                decisions=decisions,
                monitoring=monitoring,
                points=model_points(out_dir / "model"),
                links_from=out_dir,
            )
            written = [*plots, *drawn]
            for name in written:
                (staged / name).replace(out_dir / name)
    except OSError as exc:
        raise StorageError(f"cannot write the evaluation files in {out_dir}: {exc}") from exc
    return written


def rewrite_report(
    out_dir: Path,
    *,
    decisions: Mapping[str, Mapping[str, int]] | None = None,
    monitoring: str | None = None,
) -> list[str]:
    """Render ``out_dir/report.html`` again from the run's ``metrics.json`` and its plots,
    for instance once a policy's decisions or a monitoring page exist. Nothing is asked of
    any party. Returns the names written."""
    try:
        metrics = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read {out_dir / 'metrics.json'}: {exc}") from exc
    files: dict[str, bytes] = {}
    for name in PLOTS:
        if (out_dir / name).is_file():
            files[name] = (out_dir / name).read_bytes()
    return write_evaluation_files(
        out_dir, "(this run's folder)", files, metrics, decisions=decisions, monitoring=monitoring
    )
