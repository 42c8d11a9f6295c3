"""Federated binned (scorecard) model quality against pooled WOE logistic regression.

    python benchmarks/quality_binned.py --json OUT.json [--key-bits 2048] [--epochs 8] [--quick]

On the UCI table split three ways and on FATE's two-party split (see benchmarks/quality.py),
it runs, in one go:
- the federated binned model: real node processes, mutual TLS, Paillier keys, `[binning]` on
  (`fedcredit run`): federated WOE/IV, selection, monotonic merges, partners one-hot, lender WOE;
- pooled WOE logistic regression (scikit-learn) with exactly the same bins, merges and selected
  columns (recomputed in plaintext by the same functions) and the same train/test rows
  (``split_rows`` over the ids sorted as text), same L2 strength (C = 1 / (l2 * n_train));
- pooled LR on the same bins with the federated encoding (lender WOE, partners one-hot);
- plain pooled LR on standardized raw columns, for reference.
Target: federated AUC within 0.005 of pooled WOE LR.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import data_dir, federation_text, prepare_fate, prepare_uci

from fedcredit.cli.jobs import run_job
from fedcredit.config import BinningSettings, TrainSettings, load_federation
from fedcredit.model.metrics import auc, ks
from fedcredit.protocol.binning import (
    MAX_CORRELATION,
    fit_columns,
    partner_encoder,
    plain_stats,
    plan_columns,
    train_raw,
)
from fedcredit.protocol.lender import LabelParty
from fedcredit.protocol.party import FeatureParty
from fedcredit.protocol.split import split_rows


def binning_text(settings: BinningSettings) -> str:
    return (
        f'\n[binning]\nmethod = "{settings.method}"\nbins = {settings.bins}\n'
        f"min_bin_share = {settings.min_bin_share}\niv_threshold = {settings.iv_threshold}\n"
    )


def _fit(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, l2: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0 / (l2 * len(y_train)), max_iter=5000)
    model.fit(x_train, y_train)
    return np.asarray(model.decision_function(x_test))


def _score(y: np.ndarray, z: np.ndarray) -> dict[str, float]:
    return {"auc": round(auc(y, z), 4), "ks": round(ks(y, z)[0], 4)}


def pooled_binned(
    x: dict[str, np.ndarray], y: np.ndarray, lender: str, settings: BinningSettings, l2: float
) -> dict[str, Any]:
    """The same bins, merges and selection as the federated run, computed in plaintext."""
    from sklearn.preprocessing import StandardScaler

    train = TrainSettings(test_fraction=0.25, validation_fraction=0.0, seed=7)
    split = split_rows(len(y), test_fraction=0.25, validation_fraction=0.0, seed=7)
    ids = [f"{i:08d}" for i in range(len(y))]
    woe_parts, mixed_parts = [], []
    for name, matrix in x.items():
        names = [f"c{j}" for j in range(matrix.shape[1])]
        if name == lender:
            party: FeatureParty = LabelParty(name, ids, matrix, names, y, train)
        else:
            party = FeatureParty(name, ids, matrix, names, train)
        party.align(ids)
        columns = fit_columns(party, settings, ())
        stats = plain_stats(name, train_raw(party), y[split.train], columns)
        plans, reports = plan_columns(stats, (), settings.iv_threshold)
        woe = {r.column: np.asarray(r.woe) for r in reports}
        kept = [(c, p) for c, p in zip(columns, plans, strict=True) if p.keep]
        coded = np.column_stack(
            [
                woe[c.name][c.binning.regroup(p.groups).transform(matrix[:, c.index])]
                for c, p in kept
            ]
        )
        if name == lender and coded.shape[1] > 1:
            from fedcredit.model.woe import select_by_correlation

            iv = {r.column: r.iv for r in reports}
            names_kept = [c.name for c, _ in kept]
            chosen = select_by_correlation(coded[split.train], names_kept, iv, MAX_CORRELATION)
            coded = coded[:, [names_kept.index(n) for n in names_kept if n in chosen]]
        woe_parts.append(coded)
        if name == lender:
            mixed_parts.append(coded)
        else:
            mixed_parts.append(partner_encoder(party, columns, plans).transform(matrix))
    out: dict[str, Any] = {}
    for label, parts in (("pooled_woe_lr", woe_parts), ("pooled_same_encoding", mixed_parts)):
        matrix = np.hstack(parts)
        z = _fit(matrix[split.train], y[split.train], matrix[split.test], l2)
        out[label] = {**_score(y[split.test], z), "columns": int(matrix.shape[1])}
    raw = np.hstack(list(x.values()))
    scaler = StandardScaler().fit(raw[split.train])
    z = _fit(
        scaler.transform(raw[split.train]), y[split.train], scaler.transform(raw[split.test]), l2
    )
    out["pooled_plain_lr"] = _score(y[split.test], z)
    return out


def run_case(name: str, prepare: Any, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    settings = BinningSettings()
    with tempfile.TemporaryDirectory(prefix=f"fedcredit-binned-{name}-") as tmp:
        folder = Path(tmp)
        parties, x, y = prepare(root, folder)
        fed_path = folder / "federation.toml"
        text = federation_text(parties, args)
        if args.sigmoid:
            text += f'sigmoid = "{args.sigmoid}"\n'
        fed_path.write_text(text + binning_text(settings), encoding="utf-8")
        small = args.key_bits < 2048
        fed = load_federation(fed_path, allow_small_keys=small)
        started = time.monotonic()
        quiet = args.json is not None and not sys.stderr.isatty()
        metrics = run_job(fed, folder / "run", resume=False, quiet=quiet, allow_small_keys=small)
        federated = {
            "auc": round(metrics["auc"], 4),
            "ks": round(metrics["ks"], 4),
            "epochs": metrics["epochs"],
            "columns_kept": sum(1 for r in metrics["iv"] if r["kept"]),
            "design_columns": metrics["binned_features"],
            "seconds": round(time.monotonic() - started, 1),
            "seconds_binning": round(metrics["seconds_per_phase"].get("binning", 0.0), 1),
        }
    lender = next(n for n, p in parties.items() if p[2])
    baselines = pooled_binned(x, y, lender, settings, args.l2)
    return {
        "dataset": name,
        "rows": len(y),
        "federated_binned": federated,
        **baselines,
        "gap_to_pooled_woe_lr": round(baselines["pooled_woe_lr"]["auc"] - federated["auc"], 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--learning-rate", type=float, default=0.15)
    parser.add_argument("--l2", type=float, default=0.001)
    parser.add_argument("--x-scale-bits", type=int, default=8)
    parser.add_argument("--sigmoid", choices=["local", "taylor"], default=None)
    parser.add_argument("--only", choices=["uci", "fate"], default=None)
    parser.add_argument("--quick", action="store_true", help="1024-bit keys, 3 epochs (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.key_bits, args.epochs = 1024, 3
    root = data_dir()
    if not (root / "uci_default_credit" / "UCI_Credit_Card.csv").exists():
        print(f"skipped: shared data not found at {root} (set FEDCREDIT_DATA)", file=sys.stderr)
        return 0
    cases = [("uci_three_institutions", prepare_uci), ("fate_two_party", prepare_fate)]
    if args.only:
        cases = [c for c in cases if c[0].startswith(args.only)]
    results = [run_case(name, prepare, root, args) for name, prepare in cases]
    report = {
        "benchmark": "quality_binned",
        "key_bits": args.key_bits,
        "epochs": args.epochs,
        "l2": args.l2,
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
