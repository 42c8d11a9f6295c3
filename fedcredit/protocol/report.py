"""The lender's evaluation files: ROC, KS and score-histogram plots and a short HTML report.

They show aggregates of the held-out customers only (curves and histograms), never a row.
The report opens with a one-line summary that gives AUC and KS with their 95% intervals
and the rows and defaults they rest on, so a reader sees how sure the figures are.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fedcredit.model.metrics import evaluate, summarize
from fedcredit.model.plots import plot_ks, plot_roc, plot_score_hist
from fedcredit.model.report import write_html_report
from fedcredit.model.scorecard import Scorecard

PLOTS = ("roc.png", "ks.png", "scores.png")
REPORT = "report.html"


def shown_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What ``report.html`` shows: the one-line summary first, then every metric."""
    return {"summary": summarize(metrics), **metrics}


def evaluation_files(y: np.ndarray, p: np.ndarray, scorecard: Scorecard) -> dict[str, bytes]:
    """PNG plots and ``report.html`` as bytes, keyed by file name."""
    with tempfile.TemporaryDirectory(prefix="fedcredit-eval-") as tmp:
        folder = Path(tmp)
        plot_roc(y, p, folder / "roc.png")
        plot_ks(y, p, folder / "ks.png")
        plot_score_hist(y, scorecard.score(p), folder / "scores.png")
        metrics = evaluate(y, p)
        write_html_report(folder, shown_metrics(metrics), [str(folder / name) for name in PLOTS])
        return {name: (folder / name).read_bytes() for name in (*PLOTS, REPORT)}
