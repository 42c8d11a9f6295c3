"""Model report figures as PNG files (matplotlib, Agg backend).

matplotlib is imported inside each function, and the Agg backend is selected there,
so importing this module has no side effect and needs no display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedcredit.errors import DataError
from fedcredit.model.metrics import auc, ks, ks_curve, roc_curve


def _figure() -> tuple[Any, Any]:
    """A new figure and axes drawn with the Agg backend, outside pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot(1, 1, 1)


def _save(figure: Any, path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(target, format="png")
    return target


def plot_roc(y: npt.ArrayLike, p: npt.ArrayLike, path: str | Path) -> Path:
    """ROC curve with its AUC in the title; returns the PNG path."""
    fpr, tpr, _ = roc_curve(y, p)
    figure, axes = _figure()
    axes.plot(fpr, tpr, color="tab:blue", label="model")
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", label="chance")
    axes.set_xlabel("false positive rate (goods flagged)")
    axes.set_ylabel("true positive rate (defaults caught)")
    axes.set_title(f"ROC, AUC = {auc(y, p):.4f}")
    axes.legend(loc="lower right")
    return _save(figure, path)


def plot_ks(y: npt.ArrayLike, p: npt.ArrayLike, path: str | Path) -> Path:
    """Cumulative default and good shares against the share of rows flagged, with KS marked."""
    thresholds, tpr, fpr = ks_curve(y, p)
    del thresholds
    ks_value, _ = ks(y, p)
    y_arr = np.asarray(y)
    share = (tpr * y_arr.sum() + fpr * (y_arr.size - y_arr.sum())) / y_arr.size
    best = int(np.argmax(tpr - fpr))
    figure, axes = _figure()
    axes.plot(share, tpr, label="defaults (cumulative)", color="tab:red")
    axes.plot(share, fpr, label="goods (cumulative)", color="tab:green")
    axes.vlines(share[best], fpr[best], tpr[best], colors="black", linestyles=":")
    axes.set_xlabel("share of rows flagged, riskiest first")
    axes.set_ylabel("cumulative share")
    axes.set_title(f"KS = {ks_value:.4f}")
    axes.legend(loc="lower right")
    return _save(figure, path)


def plot_score_hist(y: npt.ArrayLike, scores: npt.ArrayLike, path: str | Path) -> Path:
    """Histograms of scores for goods and defaults."""
    y_arr = np.asarray(y)
    s_arr = np.asarray(scores, dtype=np.float64)
    if y_arr.shape != s_arr.shape or s_arr.ndim != 1 or s_arr.size == 0:
        raise DataError("labels and scores must be 1-D, non-empty and of the same length")
    bins = np.linspace(s_arr.min(), s_arr.max() + 1e-9, 31)
    figure, axes = _figure()
    axes.hist(s_arr[y_arr == 0], bins=bins, alpha=0.6, label="good", color="tab:green")
    axes.hist(s_arr[y_arr == 1], bins=bins, alpha=0.6, label="default", color="tab:red")
    axes.set_xlabel("score")
    axes.set_ylabel("rows")
    axes.set_title("Score distribution")
    axes.legend()
    return _save(figure, path)


def plot_iv(iv_by_column: Mapping[str, float], path: str | Path) -> Path:
    """Horizontal bars of information value per column, strongest on top."""
    if not iv_by_column:
        raise DataError("no information values to plot")
    items = sorted(iv_by_column.items(), key=lambda item: item[1])
    figure, axes = _figure()
    figure.set_size_inches(6.0, max(3.0, 0.3 * len(items) + 1.0))
    axes.barh([name for name, _ in items], [value for _, value in items], color="tab:blue")
    axes.axvline(0.02, color="grey", linestyle="--", linewidth=0.8)
    axes.set_xlabel("information value")
    axes.set_title("Information value by column")
    return _save(figure, path)


def plot_training(
    train_loss: Sequence[float],
    validation_loss: Sequence[float],
    kept_epoch: int | None,
    path: str | Path,
) -> Path:
    """Taylor loss and validation log-loss per epoch (1-based), the kept epoch marked."""
    if not train_loss and not validation_loss:
        raise DataError("no losses to plot")
    figure, axes = _figure()
    if train_loss:
        epochs = np.arange(1, len(train_loss) + 1)
        axes.plot(epochs, train_loss, marker="o", color="tab:blue", label="Taylor loss (train)")
    if validation_loss:
        epochs = np.arange(1, len(validation_loss) + 1)
        axes.plot(
            epochs, validation_loss, marker="s", color="tab:orange", label="log-loss (validation)"
        )
    if kept_epoch is not None:
        axes.axvline(kept_epoch, color="black", linestyle=":", label=f"kept: epoch {kept_epoch}")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_title("Training curve")
    axes.legend()
    return _save(figure, path)


def plot_calibration(
    predicted: Sequence[float], observed: Sequence[float], path: str | Path
) -> Path:
    """Observed against mean predicted default rate per band, with the diagonal."""
    if not predicted or len(predicted) != len(observed):
        raise DataError("calibration needs as many observed as predicted rates, at least one")
    top = max(max(predicted), max(observed)) * 1.05 or 1.0
    figure, axes = _figure()
    axes.plot([0, top], [0, top], color="grey", linestyle="--", label="perfect calibration")
    axes.plot(predicted, observed, marker="o", color="tab:red", label="model, by band")
    axes.set_xlim(0, top)
    axes.set_ylim(0, top)
    axes.set_xlabel("predicted default rate (mean of the band)")
    axes.set_ylabel("observed default rate")
    axes.set_title("Calibration")
    axes.legend(loc="upper left")
    return _save(figure, path)
