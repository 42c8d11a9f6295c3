"""The demo's "why join": the federated model next to the lender's own-columns model.

The own-columns model is the lender's ``LabelParty`` of the run, trained alone in plaintext
(``fedcredit.protocol.logistic.alone``): the same aligned customers in the same order, the same
train/validation/test split, the lender's bins and WOE from the run's model part, the same
[train] settings and optimizer, the same kept-epoch rule. Only the partners' part of the score
is missing. Both are measured on the run's held-out customers: the federated model from the
lender's ``evaluation.csv`` (the scores the run's evaluation decrypted), the own model from its
own weights.

The demo plays all three institutions, so it finds the common customers by intersecting the
three files (what the private alignment computed, ids sorted as strings); it then checks that
their count is the run's and that the held-out customers are exactly the run's, so the own
model cannot be trained or measured on other rows.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from fedcredit.config import Federation
from fedcredit.data.loader import load_party_csv
from fedcredit.decision.policy import Policy
from fedcredit.errors import ProtocolError
from fedcredit.model.logistic import sigmoid
from fedcredit.model.metrics import auc, ks
from fedcredit.model.scorecard import Scorecard
from fedcredit.node.runtime import load_columns
from fedcredit.protocol.logistic.alone import own_logits, train_alone
from fedcredit.protocol.logistic.encoding import encoder_from_dict
from fedcredit.protocol.logistic.lender import LabelParty

HOW = (
    "the lender's own columns only, trained in plaintext in this run the way the federation "
    "trains: same customers and split, same bins and WOE, same [train] settings and optimizer, "
    "same kept-epoch rule (fedcredit/protocol/logistic/alone.py)"
)


def compare_with_own_columns(
    fed: Federation, run_dir: Path, metrics: dict[str, Any], policy: Policy
) -> dict[str, Any]:
    """AUC and KS of both models on the held-out customers, and the approval rate of each at
    the same default rate: the one the federated model has among those the policy approves
    (``approval_rate_at_policy``); each model's cut-off is the lowest that keeps to it."""
    common = _common_ids(fed)
    if len(common) != metrics["rows_aligned"]:
        raise ProtocolError(
            f"the three files have {len(common):,} common ids, the run aligned "
            f"{metrics['rows_aligned']:,}: the own-columns model would not see the run's rows"
        )
    party = _lender_party(fed, run_dir / "model", common)
    test = party.rows_of("test", 0, 0)
    held_out, y, p_fed = _evaluation(run_dir / "state" / fed.lender.name / "evaluation.csv")
    if held_out != [common[i] for i in test.tolist()]:
        raise ProtocolError("the held-out customers differ from the run's evaluation rows")
    fit = train_alone(party)
    z_own = own_logits(party, test)
    p_own = sigmoid(z_own)
    scorecard = Scorecard(**dataclasses.asdict(fed.scorecard))
    fed_scores = scorecard.score(p_fed)
    approved = fed_scores >= policy.approve_score
    default_rate = float(y[approved].mean()) if approved.any() else 0.0
    # Both cut-offs are chosen the same way, on the same rows: the most approvals whose
    # default rate stays at the federated model's under the policy.
    fed_rate = approval_at_default_rate(y, -np.log(p_fed / (1 - p_fed)), default_rate)
    own_rate = approval_at_default_rate(y, -z_own, default_rate)
    return {
        "how": HOW,
        "held_out": len(test),
        "federated": {
            "auc": round(auc(y, p_fed), 4),
            "ks": round(ks(y, p_fed)[0], 4),
            "approval_rate": round(fed_rate, 4),
            "approval_rate_at_policy": round(float(approved.mean()), 4),
        },
        "lender_alone": {
            "auc": round(auc(y, p_own), 4),
            "ks": round(ks(y, p_own)[0], 4),
            "approval_rate": round(own_rate, 4),
            "features": len(party.feature_names),
            "epochs_run": fit.epochs_run,
            "kept_epoch": fit.kept_epoch,
        },
        "default_rate": round(default_rate, 4),
        "approve_score": policy.approve_score,
    }


def approval_at_default_rate(y: np.ndarray, goodness: np.ndarray, rate: float) -> float:
    """The largest share of rows approved best first (by ``goodness``, cutting only between
    distinct values) whose default rate is at most ``rate``."""
    order = np.argsort(-goodness, kind="stable")
    g, bad = goodness[order], np.cumsum(y[order])
    count = np.arange(1, len(y) + 1)
    cut = np.r_[g[1:] != g[:-1], True]  # a cut after position i keeps ties together
    ok = cut & (bad <= rate * count + 1e-12)
    return float(count[ok].max() / len(y)) if ok.any() else 0.0


def _common_ids(fed: Federation) -> list[str]:
    sets = [set(load_party_csv(p.data, id_column=p.id_column).ids) for p in fed.parties]
    return sorted(set.intersection(*sets))


def _lender_party(fed: Federation, model_dir: Path, common: list[str]) -> LabelParty:
    config = fed.lender
    data, x, names = load_columns(config)
    if data.y is None:
        raise ProtocolError(f"party {config.name!r} names no label column")
    party = LabelParty(config.name, data.ids, x, names, data.y, fed.train)
    party.categorical = tuple(data.categorical)
    party.one_hot_categories = fed.binning is None
    party.align(common)
    part = json.loads((model_dir / f"{config.name}.json").read_text(encoding="utf-8"))
    if part.get("encoder") is not None:
        party.set_encoder(encoder_from_dict(part["encoder"], party))
    return party


def _evaluation(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    y = np.array([int(r["label"]) for r in rows], dtype=np.int64)
    p = np.array([float(r["probability"]) for r in rows], dtype=np.float64)
    return [r["id"] for r in rows], y, p
