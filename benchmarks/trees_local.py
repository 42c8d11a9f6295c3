"""Federated boosted trees in one process on the UCI three-institution split (docs/TREES.md).

    python benchmarks/trees_local.py --json benchmarks/results/trees_local.json [--key-bits 1024]

For each mode the federated protocol (``fedcredit.protocol.trees.local``) grows its first trees
at the given key size, timed per tree and per phase (all parties on this machine, one after the
other, no network); those trees are checked equal to the plaintext mirror's
(``fedcredit.model.trees.fit`` with the same quantized g and h), which grows all the trees for
the AUC (``--full`` grows every tree federated instead). References: pooled XGBoost with the same
settings (its own 32-bin sketch, and on our bins), and the lender's columns alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quality_data import data_dir, load_uci

from fedcredit.model import trees as T
from fedcredit.model.metrics import auc
from fedcredit.protocol.trees.lender import TreesLender
from fedcredit.protocol.trees.local import LocalTrees
from fedcredit.protocol.trees.partner import TreesPartner
from fedcredit.protocol.trees.settings import TreeSettings


def _floats(cells: dict[str, list[str]]) -> tuple[list[str], np.ndarray]:
    names = list(cells)
    return names, np.array([[float(v) if v else np.nan for v in cells[n]] for n in names]).T


def _roles(settings: TreeSettings) -> tuple[TreesLender, list[TreesPartner], list[str]]:
    data = load_uci(data_dir())
    lender_party, *others = data.parties
    names, x = _floats(lender_party.cells)
    lender = TreesLender(lender_party.name, data.ids, x, names, data.y, settings)
    partners = []
    for p in others:
        n, xp = _floats(p.cells)
        partners.append(TreesPartner(p.name, data.ids, xp, n, settings))
    for role in (lender, *partners):
        role.align(data.ids)
    return lender, partners, data.ids


def _pooled(
    lender: TreesLender, partners: list[TreesPartner]
) -> tuple[np.ndarray, list[int], list[list[int]]]:
    bins = np.concatenate([lender.bins, *(p.bins for p in partners)], axis=1)
    n_regular = lender.n_regular + [n for p in partners for n in p.n_regular]
    groups, at = [], 0
    for role in (lender, *partners):
        width = len(role.n_regular)
        groups.append(list(range(at, at + width)))
        at += width
    return bins, n_regular, groups


def _xgboost(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, s: TreeSettings, max_bin: int
) -> float:
    import xgboost as xgb

    rate = float(y[train].mean())
    params = {
        "objective": "binary:logistic", "tree_method": "hist", "max_depth": s.depth,
        "eta": s.learning_rate, "reg_lambda": s.l2, "min_child_weight": s.min_child_weight,
        "max_bin": max_bin, "base_score": rate, "nthread": 2,
    }  # fmt: skip
    booster = xgb.train(params, xgb.DMatrix(x[train], label=y[train]), s.trees)
    return auc(y[test], booster.predict(xgb.DMatrix(x[test])))


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    settings = TreeSettings(mode=mode)
    lender, partners, ids = _roles(settings)
    split = lender.split
    assert split is not None
    y = lender.labels(np.arange(len(ids)))
    bins, n_regular, groups = _pooled(lender, partners)
    timed = settings.trees if args.full else (args.mix_trees if mode == "mix" else args.joint_trees)
    local = LocalTrees(lender, partners, key_bits=args.key_bits, allow_small=args.key_bits < 2048)
    run = local.train(trees=timed)
    cycle = len(groups)
    plan = T.BoostPlan(
        trees=settings.trees,
        features=(lambda t: groups[t % cycle]) if mode == "mix" else (lambda t: None),
    )
    mirror = T.fit(bins, n_regular, y, split.train, split.validation, settings.params, plan)
    first = T.Booster(mirror.base, mirror.trees[:timed], timed)
    identical = bool(np.array_equal(first.margin(bins, n_regular), lender.margin))
    margin = lender.margin if args.full else mirror.margin(bins, n_regular)
    owners = [lender.owner_of(t) if mode == "mix" else "every party" for t in range(timed)]
    phases = {k: round(v / timed, 3) for k, v in run.seconds.items() if k != "key"}
    federated = [s for s, o in zip(run.tree_seconds, owners, strict=True) if o != lender.name]
    return {
        "auc": round(auc(y[split.test], margin[split.test]), 4),
        "auc_source": "federated" if args.full else "plaintext mirror (first trees checked equal)",
        "timed_trees": timed,
        "timed_trees_identical_to_plain": identical,
        "tree_owners": owners,
        "seconds_per_tree": {
            "each": [round(s, 2) for s in run.tree_seconds],
            "mean": round(float(np.mean(run.tree_seconds)), 2),
            "mean_partner_or_joint_tree": round(float(np.mean(federated)), 2) if federated else 0.0,
            "per_phase_mean": phases,
        },
        "messages": len(run.messages),
        "_sets": (bins, n_regular, groups, y, split),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument(
        "--mix-trees", type=int, default=3, help="federated trees timed in mix mode"
    )
    parser.add_argument(
        "--joint-trees", type=int, default=2, help="federated trees timed in joint mode"
    )
    parser.add_argument("--full", action="store_true", help="grow every tree federated")
    args = parser.parse_args()
    started = time.time()
    out: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "key_bits": args.key_bits,
        "cores": os.cpu_count(),
    }
    settings = TreeSettings()
    out["settings"] = {
        k: getattr(settings, k)
        for k in (
            "trees",
            "depth",
            "learning_rate",
            "bins",
            "l2",
            "min_child_weight",
            "min_rows",
            "subsample",
            "test_fraction",
            "gh_scale_bits",
        )
    }
    modes = {}
    for mode in ("mix", "joint"):
        modes[mode] = run_mode(mode, args)
        print(mode, {k: v for k, v in modes[mode].items() if k != "_sets"}, flush=True)
    bins, n_regular, groups, y, split = modes["mix"].pop("_sets")
    modes["joint"].pop("_sets")
    lender_only = T.fit(
        bins,
        n_regular,
        y,
        split.train,
        split.validation,
        settings.params,
        T.BoostPlan(trees=settings.trees, features=lambda t: groups[0]),
    )
    pooled_ours = T.fit(
        bins,
        n_regular,
        y,
        split.train,
        split.validation,
        settings.params,
        T.BoostPlan(trees=settings.trees),
    )
    xb = np.where(bins >= np.array(n_regular), np.nan, bins).astype(np.float64)
    data = load_uci(data_dir())
    raw = np.concatenate([_floats(p.cells)[1] for p in data.parties], axis=1)
    lender = TreesLender(
        "x", data.ids, raw, [f"c{i}" for i in range(raw.shape[1])], data.y, settings
    )
    lender.align(data.ids)
    raw_aligned = raw[lender.aligned_rows]
    out["references"] = {
        "pooled_xgboost_own_sketch": round(
            _xgboost(raw_aligned, y, split.train, split.test, settings, settings.bins), 4
        ),
        "pooled_xgboost_our_bins": round(
            _xgboost(xb, y, split.train, split.test, settings, 256), 4
        ),
        "pooled_plain_trees": round(
            auc(y[split.test], pooled_ours.margin(bins, n_regular)[split.test]), 4
        ),
        "lender_columns_alone": round(
            auc(y[split.test], lender_only.margin(bins, n_regular)[split.test]), 4
        ),
        "lender_columns_alone_xgboost": round(
            _xgboost(
                raw_aligned[:, groups[0]], y, split.train, split.test, settings, settings.bins
            ),
            4,
        ),
    }
    out["modes"] = modes
    out["seconds"] = round(time.time() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
