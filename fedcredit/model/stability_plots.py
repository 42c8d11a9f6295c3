"""The monitoring figure: the training and the new population's score distributions as PNG.

matplotlib is imported inside the function with the Agg backend, outside pyplot's global state,
so importing this module has no side effect and needs no display.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from fedcredit.errors import DataError


def plot_score_distributions(
    labels: Sequence[str],
    baseline_share: Sequence[float],
    new_share: Sequence[float],
    title: str,
) -> bytes:
    """Side-by-side bars of each score bin's share in the two populations; the PNG's bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not len(labels) == len(baseline_share) == len(new_share) or not labels:
        raise DataError("score distributions need one share per bin in each population")
    figure = Figure(figsize=(7.5, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    x = np.arange(len(labels))
    width = 0.4
    axes.bar(x - width / 2, baseline_share, width, label="training (held-out rows)", color="grey")
    axes.bar(x + width / 2, new_share, width, label="monitored population", color="tab:blue")
    axes.set_xticks(x)
    axes.set_xticklabels(list(labels), rotation=35, ha="right", fontsize=8)
    axes.set_xlabel("score bin (deciles of the training scores)")
    axes.set_ylabel("share of applicants")
    axes.set_title(title)
    # Headroom above the tallest bar for the legend, which would otherwise cover bars.
    top = max(max(baseline_share), max(new_share))
    axes.set_ylim(0.0, top * 1.3 if top > 0 else 1.0)
    axes.legend(loc="upper center", ncol=2, fontsize=8, frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


__all__ = ["plot_score_distributions"]
