"""The lender's evaluation: its metrics and files (ROC, KS and score-histogram plots, a report).

They show aggregates of the held-out customers only (curves, histograms, counts and mean
probabilities per band of about a tenth of the rows, counts per grade), never a row. The
report opens with a one-line summary that gives AUC and KS with their 95% intervals and the
rows and defaults they rest on, so a reader sees how sure the figures are.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fedcredit.model.gains import calibration_table, gains_table, grade_table
from fedcredit.model.metrics import evaluate, summarize
from fedcredit.model.plots import plot_ks, plot_roc, plot_score_hist
from fedcredit.model.scorecard import Scorecard
from fedcredit.protocol.report_page import REPORT, write_report

PLOTS = ("roc.png", "ks.png", "scores.png")
__all__ = ["PLOTS", "REPORT", "evaluation_files", "evaluation_metrics", "shown_metrics"]


def shown_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The one-line summary first, then every metric (the table of every figure)."""
    return {"summary": summarize(metrics), **metrics}


def evaluation_metrics(
    y: np.ndarray, p: np.ndarray, scorecard: Scorecard, threshold: float = 0.5
) -> dict[str, Any]:
    """``evaluate``'s figures and the committee's tables: ``gains`` (by score band),
    ``calibration`` (predicted against observed, by band) and ``grades`` (per grade)."""
    metrics = evaluate(y, p, threshold=threshold)
    metrics["gains"] = gains_table(y, p, scorecard)
    metrics["calibration"] = calibration_table(y, p)
    metrics["grades"] = grade_table(y, p, scorecard)
    return metrics


def evaluation_files(
    y: np.ndarray, p: np.ndarray, scorecard: Scorecard, metrics: Mapping[str, Any] | None = None
) -> dict[str, bytes]:
    """PNG plots and ``report.html`` as bytes, keyed by file name (``metrics`` by default
    ``evaluation_metrics`` of ``y`` and ``p``)."""
    shown = metrics if metrics is not None else evaluation_metrics(y, p, scorecard)
    with tempfile.TemporaryDirectory(prefix="fedcredit-eval-") as tmp:
        folder = Path(tmp)
        plot_roc(y, p, folder / "roc.png")
        plot_ks(y, p, folder / "ks.png")
        plot_score_hist(y, scorecard.score(p), folder / "scores.png")
        write_report(folder, shown, PLOTS)
        return {name: (folder / name).read_bytes() for name in (*PLOTS, REPORT)}
