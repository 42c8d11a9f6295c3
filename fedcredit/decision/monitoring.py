"""What ``fedcredit monitor`` writes: ``monitor.json``, the score distributions' PNG and an HTML
page linking it, in one folder.

Every file goes through a temporary file in the same folder and a rename, the page and the
figure first and ``monitor.json`` last, so a reader that finds ``monitor.json`` finds the rest,
and a crash leaves the previous run's files whole. Every text on the page is escaped (feature
names come from the parties' files).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fedcredit.decision.stability import ACT, STABLE, WATCH, StabilityReport
from fedcredit.errors import StorageError
from fedcredit.model.report import Section, page, paragraph, table
from fedcredit.model.stability_plots import plot_score_distributions

MONITOR_JSON: Final = "monitor.json"
MONITOR_HTML: Final = "monitor.html"
SCORE_PNG: Final = "score_distribution.png"
_SEVERITY: Final = {STABLE: 0, WATCH: 1, ACT: 2}


@dataclass(frozen=True)
class Population:
    """How many applicants were asked about, and how many the lender could score."""

    applicants: int
    scored: int


def overall_status(report: StabilityReport) -> str:
    """The worst status among the score and every column."""
    statuses = [report.score.status, *(f.status for f in report.features)]
    return max(statuses, key=lambda s: _SEVERITY[s])


def monitor_dict(report: StabilityReport, population: Population) -> dict[str, Any]:
    """``monitor.json``'s content: the report, the population's size, the status, the files."""
    return {
        **report.to_dict(),
        "status": overall_status(report),
        "applicants": population.applicants,
        "scored": population.scored,
        "files": {"html": MONITOR_HTML, "score_plot": SCORE_PNG},
    }


def write_monitor(out: Path, report: StabilityReport, population: Population) -> dict[str, Any]:
    """Write the three files into ``out`` (atomically each, ``monitor.json`` last); returns
    what ``monitor.json`` holds."""
    content = monitor_dict(report, population)
    s = report.score
    png = plot_score_distributions(
        s.labels, s.baseline_share, s.new_share, f"score PSI {s.psi:.4f} ({s.status})"
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the output folder {out}: {exc.strerror}") from exc
    _replace(out / SCORE_PNG, png)
    _replace(out / MONITOR_HTML, monitor_html(content).encode("utf-8"))
    _replace(out / MONITOR_JSON, (json.dumps(content, indent=2) + "\n").encode("utf-8"))
    return content


def monitor_html(content: Mapping[str, Any]) -> str:
    """The page, in the report's style (``fedcredit.model.report``): the verdict, the score's
    bins and figure, every column's index worst first (the ones not stable marked)."""
    t = content["thresholds"]
    verdict = (
        f"Overall: {content['status']}. {content['scored']:,} of {content['applicants']:,} "
        f"applicants scored. Thresholds: below {t['stable_below']} stable, up to "
        f"{t['watch_up_to']} watch, above act."
    )
    bins = [
        {
            "bin": str(b["bin"]),
            "training": f"{b['baseline_share']:.1%}",
            "monitored": f"{b['new_share']:.1%}",
            "term": f"{b['term']:.4f}",
        }
        for b in content["score_bins"]
    ]
    worst_first = sorted(content["csi"], key=lambda f: -float(f["csi"]))
    columns = [
        {
            "party": str(f["party"]),
            "column": str(f["feature"]),
            "CSI": f"{f['csi']:.4f}",
            "status": str(f["status"]),
        }
        for f in worst_first
    ]
    unstable = [k for k, f in enumerate(worst_first) if f["status"] != STABLE]
    alt = html.escape("score distributions: training and monitored population")
    image = f'<figure class="wide"><img src="{html.escape(SCORE_PNG)}" alt="{alt}"></figure>'
    score = f"Score: PSI {content['score_psi']:.4f} ({content['score_status']})"
    sections = [
        Section(score, "score", [image, table(bins, caption="Share of applicants per bin")]),
        Section(
            "Columns: characteristic stability index",
            "columns",
            [
                paragraph("Each computed by the party holding the column; worst first."),
                table(columns, marked=unstable),
            ],
        ),
    ]
    data = f'<p>Data: <a href="{html.escape(MONITOR_JSON)}">{html.escape(MONITOR_JSON)}</a></p>'
    return page("Stability monitoring", sections, lead=[paragraph(verdict, css="summary"), data])


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {exc.strerror}") from exc


__all__ = [
    "MONITOR_HTML",
    "MONITOR_JSON",
    "SCORE_PNG",
    "Population",
    "monitor_dict",
    "monitor_html",
    "overall_status",
    "write_monitor",
]
