"""Pooled references and the statistics of benchmarks/quality.py.

The references see every party's columns at once and train on exactly the customers the
federation trained on (its own training rows), with the federation's L2 strength
(``C = 1 / (l2 * n_train)``: the federation minimizes the mean log-loss plus ``l2/2 |w|^2``,
intercept unpenalized, as scikit-learn does):
- ``plain_lr``: scikit-learn LogisticRegression on standardized columns clipped to ±8 as the
  parties clip theirs, text columns one-hot (``plain_lr_unclipped``: the same without the clip);
- ``woe_lr``: every party's columns WOE-coded with the bins, monotonic merges and selection the
  federated binning makes, recomputed in plaintext by the same functions
  (``fedcredit.protocol.binning``) on the parties' own files as the nodes load them;
- ``same_encoding_lr``: the same bins with the federation's encoding (lender WOE, partners
  one-hot), which separates the cost of the encoding from that of the training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from quality_data import Dataset

from fedcredit.config import Federation
from fedcredit.data.loader import load_party_csv
from fedcredit.model.metrics import auc, ks
from fedcredit.model.woe import select_by_correlation
from fedcredit.protocol.binning import (
    MAX_CORRELATION,
    BinEncoder,
    EncodedColumn,
    fit_columns,
    partner_encoder,
    plain_stats,
    plan_columns,
    train_raw,
    with_category_codes,
)
from fedcredit.protocol.binning.settings import BinningSettings
from fedcredit.protocol.fixedpoint import CLIP
from fedcredit.protocol.logistic.lender import LabelParty
from fedcredit.protocol.logistic.partner import FeatureParty

BOOTSTRAP_DRAWS = 1000
BOOTSTRAP_SEED = 7
Z_95 = 1.959964
# Scores are written with six decimals, so a probability of 0 or 1 means "below 5e-7".
LOG_LOSS_EPS = 1e-6


# -- statistics -----------------------------------------------------------------------------
def _midranks(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return np.asarray(rankdata(values), dtype=np.float64)


def delong(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    """AUC and DeLong's 95 % interval (Sun and Xu's midrank form)."""
    pos, neg = p[y == 1], p[y == 0]
    m, n = len(pos), len(neg)
    ranks = _midranks(np.concatenate([pos, neg]))
    v10 = (ranks[:m] - _midranks(pos)) / n
    v01 = 1.0 - (ranks[m:] - _midranks(neg)) / m
    value = float(v10.mean())
    se = math.sqrt(float(v10.var(ddof=1)) / m + float(v01.var(ddof=1)) / n)
    return value, max(0.0, value - Z_95 * se), min(1.0, value + Z_95 * se)


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    q = np.clip(p, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


def figures(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """AUC with its DeLong interval, KS, and the rows and defaults they rest on."""
    value, lo, hi = delong(y, p)
    return {
        "auc": round(value, 4),
        "auc_ci95": [round(lo, 4), round(hi, 4)],
        "ks": round(ks(y, p)[0], 4),
        "rows": len(y),
        "defaults": int(y.sum()),
    }


def paired_gap(y: np.ndarray, federated: np.ndarray, pooled: np.ndarray) -> dict[str, Any]:
    """AUC(federated) - AUC(pooled) with a 95 % paired bootstrap interval over the rows."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    gaps = []
    for _ in range(BOOTSTRAP_DRAWS):
        rows = rng.integers(0, len(y), len(y))
        if 0 < y[rows].sum() < len(rows):
            gaps.append(auc(y[rows], federated[rows]) - auc(y[rows], pooled[rows]))
    lo, hi = np.percentile(gaps, [2.5, 97.5])
    return {
        "auc": round(auc(y, federated) - auc(y, pooled), 4),
        "ci95": [round(float(lo), 4), round(float(hi), 4)],
        "draws": len(gaps),
        "seed": BOOTSTRAP_SEED,
    }


# -- fitting ----------------------------------------------------------------------------------
def fit_lr(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, l2: float, *, scale: bool, clip: bool = True
) -> np.ndarray:
    """Probabilities of default for every row of ``x``, fitted on rows ``train``.

    ``scale`` standardizes the columns on the training rows and, with ``clip``, clips them to
    the federation's ``±CLIP`` (a party clips its standardized columns before the fixed-point
    encoding: on heavy-tailed columns such as Give Me Some Credit's that matters).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if scale:
        x = StandardScaler().fit(x[train]).transform(x)
        if clip:
            x = np.clip(x, -CLIP, CLIP)
    model = LogisticRegression(C=1.0 / (l2 * len(train)), max_iter=5000)
    model.fit(x[train], y[train])
    return np.asarray(model.predict_proba(x)[:, 1])


def plain_design(data: Dataset, train: np.ndarray) -> np.ndarray:
    """Every party's columns side by side; text columns one-hot (categories of ``train``)."""
    parts = []
    for party in data.parties:
        for name, cells in party.cells.items():
            if name in party.text:
                column = np.array(cells, dtype=object)
                for category in sorted(set(column[train].tolist())):
                    parts.append((column == category).astype(np.float64))
            else:
                parts.append(np.array([float(v) for v in cells]))
    return np.column_stack(parts)


def _load(fed: Federation, text: Mapping[str, Sequence[str]]) -> dict[str, FeatureParty]:
    """The parties as their nodes load them (text columns as category codes), not aligned."""
    parties: dict[str, FeatureParty] = {}
    for config in fed.parties:
        data = load_party_csv(
            config.data,
            id_column=config.id_column,
            label_column=config.label_column,
            categorical=tuple(text[config.name]),
        )
        x, names = with_category_codes(data.X, data.feature_names, data.categorical)
        if config.is_lender and data.y is not None:
            parties[config.name] = LabelParty(config.name, data.ids, x, names, data.y, fed.train)
        elif config.is_lender:
            raise ValueError(f"{config.data}: no label column {config.label_column!r}")
        else:
            parties[config.name] = FeatureParty(config.name, data.ids, x, names, fed.train)
    return parties


def _encoders(
    party: FeatureParty,
    y_train: np.ndarray,
    settings: BinningSettings,
    text: Sequence[str],
    lender: bool,
) -> tuple[BinEncoder, BinEncoder, int]:
    """(all-WOE encoder, the federation's encoder, columns kept) of one aligned party."""
    columns = fit_columns(party, settings, text)
    raw = train_raw(party)
    stats = plain_stats(party.name, raw, y_train, columns)
    plans, reports = plan_columns(stats, text, float(settings.iv_threshold))
    kept = [
        EncodedColumn(c.name, c.index, c.binning.regroup(p.groups), c.categorical, "woe", r.woe)
        for c, p, r in zip(columns, plans, reports, strict=True)
        if p.keep
    ]
    woe = BinEncoder(kept, raw.shape[1])
    if lender and len(kept) > 1:
        # The lender drops the weaker of its own columns correlated beyond MAX_CORRELATION.
        iv = {r.column: r.iv for r in reports if r.kept}
        names = [c.name for c in kept]
        chosen = set(select_by_correlation(woe.transform(raw), names, iv, MAX_CORRELATION))
        woe = BinEncoder([c for c in kept if c.name in chosen], raw.shape[1])
    same = woe if lender else partner_encoder(party, columns, plans)
    return woe, same, len(woe.columns)


def binned_designs(
    fed: Federation,
    scoring: Federation,
    text: Mapping[str, Sequence[str]],
    settings: BinningSettings,
    ids: Sequence[str],
) -> dict[str, Any]:
    """WOE and same-encoding design matrices for customers ``ids``, bins fitted as the run does,
    with the columns kept and the design columns of each party (to compare with the run's).

    ``fed`` names the files the federation trained on, ``scoring`` files holding ``ids``.
    """
    parties = _load(fed, text)
    common = sorted(set.intersection(*(set(p.ids) for p in parties.values())))
    for party in parties.values():
        party.align(common)
    lender = parties[fed.lender.name]
    if not isinstance(lender, LabelParty) or lender.split is None:
        raise ValueError(f"{fed.lender.name}: the lender holds no aligned labels")
    y_train = lender.labels(lender.split.train)
    everyone = _load(scoring, text)
    woe_parts, same_parts, kept, columns = [], [], {}, {}
    for name, party in parties.items():
        woe, same, kept[name] = _encoders(
            party, y_train, settings, text[name], name == fed.lender.name
        )
        source = everyone[name]
        at = {cid: i for i, cid in enumerate(source.ids)}
        raw = source.raw[[at[cid] for cid in ids]]
        woe_parts.append(woe.transform(raw))
        same_parts.append(same.transform(raw))
        columns[name] = same_parts[-1].shape[1]
    return {
        "woe": np.hstack(woe_parts),
        "same": np.hstack(same_parts),
        "kept": kept,
        "columns": columns,
    }
