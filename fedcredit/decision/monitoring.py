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
    """The page: the verdict, the score's bins, every column's index; the figure linked."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(str(b['bin']))}</td><td>{b['baseline_share']:.2%}</td>"
        f"<td>{b['new_share']:.2%}</td><td>{b['term']:.4f}</td></tr>"
        for b in content["score_bins"]
    )
    features = "".join(
        f"<tr><td>{e(str(f['party']))}</td><td>{e(str(f['feature']))}</td>"
        f'<td>{f["csi"]:.4f}</td><td class="{e(f["status"])}">{e(f["status"])}</td></tr>'
        for f in content["csi"]
    )
    t = content["thresholds"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Stability monitoring</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 60em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.stable {{ color: #176117; }} .watch {{ color: #8a5a00; }} .act {{ color: #a31515; }}
</style></head><body>
<h1>Stability monitoring</h1>
<p>Overall: <strong class="{e(content["status"])}">{e(content["status"])}</strong>.
{content["scored"]:,} of {content["applicants"]:,} applicants scored.
Thresholds: below {t["stable_below"]} stable, up to {t["watch_up_to"]} watch, above act.</p>
<h2>Score: PSI {content["score_psi"]:.4f}
(<span class="{e(content["score_status"])}">{e(content["score_status"])}</span>)</h2>
<p><img src="{e(SCORE_PNG)}" alt="score distributions: training and monitored population"></p>
<table><tr><th>bin</th><th>training</th><th>monitored</th><th>term</th></tr>{rows}</table>
<h2>Columns: characteristic stability index, computed by the party holding each</h2>
<table><tr><th>party</th><th>feature</th><th>CSI</th><th>status</th></tr>{features}</table>
<p>Data: <a href="{e(MONITOR_JSON)}">{e(MONITOR_JSON)}</a></p>
</body></html>
"""


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
