"""The evaluation files the driver accepts from the lender, and how it writes them into --out.

The lender is a peer: its ``Evaluate`` reply may name any file and hold any bytes. The driver
writes only the plots named in ``PLOTS``, each a PNG below ``MAX_FILE_BYTES``, and renders
``report.html`` itself from the lender's metrics (escaped) and those plots: markup the lender
put in its own report never reaches the operator's browser. Paths are built from the names
below, never from the peer's strings, so nothing can land outside the output folder.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedcredit.errors import ProtocolError, StorageError
from fedcredit.model.report import write_html_report
from fedcredit.protocol.report import PLOTS, REPORT, shown_metrics

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


def _shown_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The report's rows as the lender renders them; without the summary line when the
    lender's metrics cannot make one (a lender of another release, or a deviating one)."""
    try:
        return shown_metrics(metrics)
    except (KeyError, IndexError, TypeError, ValueError):
        return dict(metrics)


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


def write_evaluation_files(
    out_dir: Path, lender: str, files: Mapping[str, bytes], metrics: Mapping[str, Any]
) -> list[str]:
    """Write the lender's accepted plots and a ``report.html`` rendered here into ``out_dir``.

    ``metrics`` are the lender's evaluation metrics (shown escaped). Returns the names written.
    Every file is staged next to its target and renamed, so each is whole or absent; a refused
    reply (see ``accepted_plots``) writes nothing.
    """
    plots = accepted_plots(lender, files)
    try:
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".evaluation-") as tmp:
            staged = Path(tmp)
            for name, data in plots.items():
                (staged / name).write_bytes(data)
            write_html_report(staged, _shown_metrics(metrics), [str(staged / n) for n in plots])
            written = [*plots, REPORT]
            for name in written:
                (staged / name).replace(out_dir / name)
    except OSError as exc:
        raise StorageError(f"cannot write the evaluation files in {out_dir}: {exc}") from exc
    return written
