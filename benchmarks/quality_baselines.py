"""Centralized quality baselines on the shared credit data, printed as JSON.

What a federated model must match: scikit-learn logistic regression on pooled,
standardized columns and on the lender's columns alone, for the UCI three-institution
split and FATE's two-party split; a pooled WOE logistic regression (quantile bins);
and fedcredit's own plaintext Taylor training (``fit_plain``) on the same split, which
shows what the Taylor approximation costs in AUC.

Holdout: 25 % of rows, stratified on the label, ``random_state=7``. Standardization and
binning are fitted on the training rows only.

Run: ``python benchmarks/quality_baselines.py`` (data from $FEDCREDIT_DATA or
``../shared/data`` next to the repository).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from fedcredit.model.binning import bin_counts, fit_bins, merge_monotonic
from fedcredit.model.logistic import fit_plain
from fedcredit.model.metrics import auc, ks
from fedcredit.model.woe import apply_woe, woe_iv
from fedcredit.protocol.logistic.settings import TrainSettings, reference_settings

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SEED = 7
TEST_SIZE = 0.25
LABEL = "default.payment.next.month"
LENDING = ["LIMIT_BAL", "PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6"]
PAYMENTS = [f"BILL_AMT{i}" for i in range(1, 7)] + [f"PAY_AMT{i}" for i in range(1, 7)]
ECOMMERCE = ["SEX", "EDUCATION", "MARRIAGE", "AGE"]


def data_dir() -> Path:
    """$FEDCREDIT_DATA, or the ``shared/data`` folder next to the repository."""
    env = os.environ.get("FEDCREDIT_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def read_csv(path: Path) -> tuple[list[str], FloatArray]:
    """Header and an all-numeric body of a CSV file."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [[float(value) for value in row] for row in reader if row]
    return header, np.asarray(rows, dtype=np.float64)


@dataclass(frozen=True)
class Dataset:
    """Columns by name, the label, and the holdout split shared by every baseline."""

    columns: dict[str, FloatArray]
    y: IntArray
    train: IntArray
    test: IntArray

    def matrix(self, names: list[str]) -> FloatArray:
        return np.column_stack([self.columns[name] for name in names])


def _split(y: IntArray) -> tuple[IntArray, IntArray]:
    rows = np.arange(y.size)
    train, test = train_test_split(rows, test_size=TEST_SIZE, stratify=y, random_state=SEED)
    return np.sort(train), np.sort(test)


def load_uci(root: Path) -> Dataset:
    """The UCI Default of Credit Card Clients data with named columns."""
    header, body = read_csv(root / "uci_default_credit" / "UCI_Credit_Card.csv")
    columns = {name: body[:, i] for i, name in enumerate(header)}
    y = columns.pop(LABEL).astype(np.int64)
    return Dataset(columns, y, *_split(y))


def load_fate(root: Path) -> tuple[Dataset, list[str], list[str]]:
    """FATE's two-party split joined on id: ``(data, guest columns, host columns)``."""
    folder = root / "fate_examples"
    g_header, guest = read_csv(folder / "default_credit_hetero_guest.csv")
    h_header, host = read_csv(folder / "default_credit_hetero_host.csv")
    host_row = {int(i): r for r, i in enumerate(host[:, 0])}
    host = host[[host_row[int(i)] for i in guest[:, 0]]]
    columns = {f"guest_{n}": guest[:, i] for i, n in enumerate(g_header) if n.startswith("x")}
    columns |= {f"host_{n}": host[:, i] for i, n in enumerate(h_header) if n.startswith("x")}
    y = guest[:, g_header.index("y")].astype(np.int64)
    guest_cols = [n for n in columns if n.startswith("guest_")]
    host_cols = [n for n in columns if n.startswith("host_")]
    return Dataset(columns, y, *_split(y)), guest_cols, host_cols


def _scores(y: IntArray, z: FloatArray) -> dict[str, float]:
    ks_value, _ = ks(y, z)
    return {"auc": round(auc(y, z), 4), "ks": round(ks_value, 4)}


def sklearn_lr(data: Dataset, names: list[str]) -> dict[str, float]:
    """scikit-learn LogisticRegression on standardized columns; holdout AUC and KS."""
    x = data.matrix(names)
    scaler = StandardScaler().fit(x[data.train])
    model = LogisticRegression(max_iter=1000).fit(
        scaler.transform(x[data.train]), data.y[data.train]
    )
    return _scores(data.y[data.test], model.decision_function(scaler.transform(x[data.test])))


def taylor_lr(data: Dataset, names: list[str], config: TrainSettings) -> dict[str, float]:
    """fedcredit's plaintext Taylor training (the federation's maths) on the same split."""
    x = data.matrix(names)
    scaler = StandardScaler().fit(x[data.train])
    result = fit_plain(scaler.transform(x[data.train]), data.y[data.train], config)
    z = result.decision_function(scaler.transform(x[data.test]))
    return {**_scores(data.y[data.test], z), "epochs": result.epochs_run}


def taylor_optimum(data: Dataset, names: list[str], l2: float = 0.0) -> dict[str, float]:
    """The exact minimizer of the Taylor loss (plus ``l2 / 2 ||w||^2``), in closed form.

    The Taylor loss ``log 2 - 0.5 y' z + z^2 / 8`` is quadratic in the weights, so its
    minimum solves ``(X'X / 4n + l2 I) w = X'y' / 2n`` (intercept unpenalized): a ridge
    regression of ``2 y'`` on the columns. Its AUC is the best any Taylor-trained model
    can do, separating the cost of the approximation from that of the optimizer.
    """
    x = data.matrix(names)
    scaler = StandardScaler().fit(x[data.train])
    x_train = np.c_[scaler.transform(x[data.train]), np.ones(data.train.size)]
    y_signed = 2.0 * data.y[data.train] - 1.0
    penalty = l2 * np.eye(x_train.shape[1])
    penalty[-1, -1] = 0.0
    n = data.train.size
    w = np.linalg.solve(x_train.T @ x_train / (4 * n) + penalty, x_train.T @ y_signed / (2 * n))
    z = np.c_[scaler.transform(x[data.test]), np.ones(data.test.size)] @ w
    return _scores(data.y[data.test], z)


def woe_features(data: Dataset, names: list[str], monotonic: bool) -> FloatArray:
    """WOE coding of every column with quantile bins (10, at least 5 % of rows each)
    fitted on the training rows; with ``monotonic`` the bins are merged first."""
    coded = []
    train_y = data.y[data.train]
    for name in names:
        values = data.columns[name]
        binning = fit_bins(values[data.train], "quantile", n_bins=10, min_share=0.05)
        counts, events = bin_counts(binning.transform(values[data.train]), train_y, binning.n_bins)
        if monotonic:
            binning = binning.regroup(merge_monotonic(counts[:-1], events[:-1]))
            index = binning.transform(values[data.train])
            counts, events = bin_counts(index, train_y, binning.n_bins)
        woe, _ = woe_iv(counts, events)
        coded.append(apply_woe(binning.transform(values), woe))
    return np.column_stack(coded)


def woe_lr(data: Dataset, names: list[str], monotonic: bool = False) -> dict[str, float]:
    """scikit-learn LogisticRegression on WOE-coded columns; holdout AUC and KS."""
    x = woe_features(data, names, monotonic)
    model = LogisticRegression(max_iter=1000).fit(x[data.train], data.y[data.train])
    return _scores(data.y[data.test], model.decision_function(x[data.test]))


def woe_taylor(data: Dataset, names: list[str], config: TrainSettings) -> dict[str, float]:
    """fedcredit's Taylor training on WOE-coded columns (the federated scorecard pipeline)."""
    x = woe_features(data, names, monotonic=False)
    result = fit_plain(x[data.train], data.y[data.train], config)
    z = result.decision_function(x[data.test])
    return {**_scores(data.y[data.test], z), "epochs": result.epochs_run}


def run(root: Path) -> dict[str, Any]:
    """Every baseline, as a JSON-ready dict."""
    uci = load_uci(root)
    everything = LENDING + PAYMENTS + ECOMMERCE
    taylor = reference_settings()
    # The default Adam (lr 0.15, no decay) ends on a noisy iterate; decay 1.0 settles it.
    taylor_decay = reference_settings(decay=1.0, tol=0.0)
    taylor_sgd = reference_settings(optimizer="sgd", tol=0.0)
    views = {"lender": LENDING, "lender+payments": LENDING + PAYMENTS, "all": everything}
    results: dict[str, Any] = {
        "holdout": {"test_size": TEST_SIZE, "seed": SEED, "stratified": True},
        "uci_three_way": {
            "rows": int(uci.y.size),
            "sklearn_lr": {view: sklearn_lr(uci, names) for view, names in views.items()},
            "taylor_adam_default": {v: taylor_lr(uci, n, taylor) for v, n in views.items()},
            "taylor_adam_decay_1": {v: taylor_lr(uci, n, taylor_decay) for v, n in views.items()},
            "taylor_sgd_momentum": {v: taylor_lr(uci, n, taylor_sgd) for v, n in views.items()},
            "taylor_exact_optimum": {v: taylor_optimum(uci, n) for v, n in views.items()},
            "woe_lr_quantile": {
                "lender": woe_lr(uci, LENDING),
                "all": woe_lr(uci, everything),
            },
            "woe_lr_monotonic": {
                "lender": woe_lr(uci, LENDING, monotonic=True),
                "all": woe_lr(uci, everything, monotonic=True),
            },
            "woe_taylor_adam_default": {
                "lender": woe_taylor(uci, LENDING, taylor),
                "all": woe_taylor(uci, everything, taylor),
            },
        },
    }
    fate, guest, host = load_fate(root)
    results["fate_two_way"] = {
        "rows": int(fate.y.size),
        "sklearn_lr": {"guest": sklearn_lr(fate, guest), "all": sklearn_lr(fate, guest + host)},
        "taylor_adam_default": {
            "guest": taylor_lr(fate, guest, taylor),
            "all": taylor_lr(fate, guest + host, taylor),
        },
        "taylor_adam_decay_1": {
            "guest": taylor_lr(fate, guest, taylor_decay),
            "all": taylor_lr(fate, guest + host, taylor_decay),
        },
        "taylor_exact_optimum": {
            "guest": taylor_optimum(fate, guest),
            "all": taylor_optimum(fate, guest + host),
        },
        "woe_lr_quantile": {"all": woe_lr(fate, guest + host)},
        "woe_taylor_adam_default": {"all": woe_taylor(fate, guest + host, taylor)},
    }
    return results


def main() -> int:
    root = data_dir()
    if not (root / "uci_default_credit" / "UCI_Credit_Card.csv").is_file():
        print(f"shared credit data not found in {root}; set FEDCREDIT_DATA", file=sys.stderr)
        return 2
    print(json.dumps(run(root), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
