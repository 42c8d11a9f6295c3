"""The report a credit committee reads: ``report.html``, from figures the job already has.

``write_report`` renders the lender's evaluation (AUC and KS with their intervals, the
confusion counts, the gains, calibration and grade tables, the three plots) and, in the
driver's copy, the driver's own job metrics (parties, rows aligned, features, key size,
seconds per phase, the training curve, the IV report). It computes nothing from rows: the
page shows only what those metrics hold, and says so. Any figure may come from a peer (a
lender that deviates from the code), so every value is escaped, and a section whose figures
are malformed says that it is not available instead of failing the job.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fedcredit.model.metrics import summarize
from fedcredit.model.plots import plot_calibration, plot_training
from fedcredit.model.report import Section, paragraph, write_page
from fedcredit.protocol import report_sections as body
from fedcredit.protocol.report_sections import (
    CALIBRATION_PLOT,
    FILES,
    MONITORING_PAGES,
    TRAINING_PLOT,
    UNUSABLE,
    number,
    table_rows,
)

__all__ = ["DRIVER_PLOTS", "FILES", "MONITORING_PAGES", "REPORT", "write_report"]

REPORT = "report.html"
DRIVER_PLOTS = (TRAINING_PLOT, CALIBRATION_PLOT)
"""The plots the report's writer draws itself, from the figures (never a peer's image)."""
DISCLOSURE = (
    "This page shows only figures the job already produced: the lender's evaluation of the "
    "held-out customers (aggregates: curves, counts per band, no row) and the driver's own "
    "job metrics. Writing it sends nothing to any party and asks no party for anything."
)
Builder = Callable[[], list[str]]


def _section(title: str, anchor: str, build: Builder, missing: str) -> Section:
    """A section of ``build``'s fragments, or of one note when its figures are unusable."""
    try:
        body = build()
    except UNUSABLE:
        body = [paragraph(missing, css="note")]
    return Section(title, anchor, body)


def _driver_plots(folder: Path, metrics: Mapping[str, Any]) -> dict[str, Path]:
    """Draw the training curve and the calibration plot from the figures, where they are
    usable; returns the names drawn and their paths."""
    drawn: dict[str, Path] = {}
    try:
        rows = table_rows(metrics, "calibration", ("predicted", "observed"))
        predicted = [number(r["predicted"]) for r in rows]
        observed = [number(r["observed"]) for r in rows]
        drawn[CALIBRATION_PLOT] = plot_calibration(predicted, observed, folder / CALIBRATION_PLOT)
    except UNUSABLE:
        pass
    try:
        train = [number(v) for v in metrics.get("train_taylor_loss") or []]
        validation = [number(v) for v in metrics.get("validation_log_loss") or []]
        kept = metrics.get("kept_epoch")
        kept_epoch = int(number(kept)) if kept is not None else None
        drawn[TRAINING_PLOT] = plot_training(train, validation, kept_epoch, folder / TRAINING_PLOT)
    except UNUSABLE:
        pass
    return drawn


def write_report(
    folder: Path,
    metrics: Mapping[str, Any],
    plots: Sequence[str],
    *,
    decisions: Mapping[str, Mapping[str, int]] | None = None,
    monitoring: str | None = None,
    points: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    links_from: Path | None = None,
) -> list[str]:
    """Write ``folder/report.html`` and the plots it draws (``DRIVER_PLOTS``, when their
    figures are there); returns the names of the files written.

    ``plots`` are names of PNG files already in ``folder`` (the lender's ROC, KS and score
    plots). ``decisions`` maps a grade to its count of each decision under a policy (by default
    the lender's ``decisions`` metric, ``fedcredit.node.evaluation``; the section says how to
    get it without either); ``monitoring`` is a monitoring page's path
    relative to ``folder`` (by default the first of ``MONITORING_PAGES`` that exists);
    ``points`` maps a party to the rows of its points table (``column``, ``label``, ``points``).
    Links name only files that exist in ``links_from`` (by default ``folder``; the folder the
    page will end up in when it is staged elsewhere first).
    """
    base = links_from if links_from is not None else folder
    mix = decisions if decisions is not None else metrics.get("decisions")
    images = {name: folder / name for name in plots}
    drawn = _driver_plots(folder, metrics)
    images.update(drawn)
    driver = "parties" in metrics
    sections = [
        _section("Job", "job", lambda: body.job(metrics), "The job's figures are not available."),
        _section(
            "Discrimination: AUC and KS",
            "discrimination",
            lambda: body.discrimination(metrics, images),
            "The lender's evaluation holds no usable AUC or KS.",
        ),
        _section(
            "Gains by score band",
            "gains",
            lambda: body.gains(metrics, images),
            "The lender's evaluation holds no usable gains table.",
        ),
        _section(
            "Calibration",
            "calibration",
            lambda: body.calibration(metrics, images),
            "The lender's evaluation holds no usable calibration table.",
        ),
        _section(
            "Confusion matrix",
            "confusion",
            lambda: body.confusion(metrics),
            "The lender's evaluation holds no usable confusion counts.",
        ),
        _section(
            "Grades",
            "grades",
            lambda: body.grades(metrics),
            "The lender's evaluation holds no usable grade table.",
        ),
        _section(
            "Decision mix per grade",
            "decisions",
            lambda: body.decision_mix(mix),
            "The lender's decision mix per grade is not usable.",
        ),
        _section(
            "Training curve",
            "training",
            lambda: body.training(metrics, images),
            "No losses per epoch were recorded.",
        ),
    ]
    if "iv" in metrics:
        sections.append(
            _section(
                "Binning: information value and points",
                "binning",
                lambda: body.binning(metrics, points or {}),
                "The IV report is not available.",
            )
        )
    sections.append(
        _section(
            "Monitoring",
            "monitoring",
            lambda: body.monitoring(base, monitoring),
            "The monitoring page named for this report is not a file in its folder.",
        )
    )
    if driver:
        sections.append(
            _section("Files of this run", "files", lambda: body.files(base), "No other files.")
        )
    sections.append(Section("Every figure", "figures", body.other(metrics)))
    if not driver:
        sections = [s for s in sections if s.anchor not in ("job", "training")]
    lead = [paragraph(DISCLOSURE, css="note")]
    with contextlib.suppress(*UNUSABLE):
        lead.insert(0, paragraph(summarize(metrics), css="summary"))
    write_page(folder, "fedcredit model report", sections, lead=lead, filename=REPORT)
    return [*drawn, REPORT]
