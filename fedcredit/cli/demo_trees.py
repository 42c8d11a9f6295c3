"""The demo's tree model: the same federation, nodes and customers, trained as boosted trees.

``write_trees_federation`` turns the demo's federation file into a trees one (``[model] family =
"trees"``, a small ``[trees]`` table, no ``[binning]``: trees bin their own columns); the
benchmarks use it too. Mix mode (each tree on one party's columns; the lender's trees need no
encryption) with four trees and a learning rate of 0.5 keeps the added time small at the demo's key size:
a partner's tree costs one encryption of every training row's (g, h), the lender's nothing.
The run uses the same ``[train]`` seed and fractions, so it holds out the same customers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedcredit.cli.jobs import run_job
from fedcredit.cli.progress import say
from fedcredit.config import load_federation

#: The demo's trees: 4 in mix mode, round robin (lender, ecommerce, payments, lender): two
#: partner trees, the only ones that cost encryption.
DEMO_TREES: dict[str, Any] = {
    "trees": 4,
    "depth": 3,
    "learning_rate": 0.5,
    "bins": 16,
    "mode": "mix",
}


def write_trees_federation(path: Path, trees: dict[str, Any] | None = None) -> Path:
    """``federation-trees.toml`` next to ``path``: the same file, trained as trees."""
    table = DEMO_TREES if trees is None else trees
    lines = [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in table.items()]
    text = path.read_text(encoding="utf-8").replace("[binning]\n", "")
    text += '\n[model]\nfamily = "trees"\n\n[trees]\n' + "\n".join(lines) + "\n"
    out = path.with_name(f"{path.stem}-trees.toml")
    out.write_text(text, encoding="utf-8")
    return out


def run_trees(
    fed_path: Path,
    folder: Path,
    scorecard: dict[str, Any],
    *,
    quiet: bool,
    allow_small_keys: bool,
) -> dict[str, Any]:
    """Train the trees over the same nodes and customers; print their AUC and KS beside the
    scorecard's (``scorecard``: the logistic run's metrics)."""
    say(
        f"   the same federation as gradient-boosted trees ({DEMO_TREES['trees']} trees, "
        f"depth {DEMO_TREES['depth']}, {DEMO_TREES['mode']} mode)",
        quiet=quiet,
    )
    fed = load_federation(write_trees_federation(fed_path), allow_small_keys=allow_small_keys)
    metrics = run_job(fed, folder, resume=False, quiet=quiet, allow_small_keys=allow_small_keys)
    say(f"     {'':<14}{'AUC':>8}{'KS':>8}", quiet=quiet)
    for label, row in (("scorecard", scorecard), ("trees", metrics)):
        say(f"     {label:<14}{float(row['auc']):>8.4f}{float(row['ks']):>8.4f}", quiet=quiet)
    return {
        "auc": round(float(metrics["auc"]), 4),
        "ks": round(float(metrics["ks"]), 4),
        "trees_kept": metrics.get("trees_kept"),
        "rows_test": metrics.get("rows_test"),
        "seconds": metrics.get("seconds_per_phase"),
        "settings": dict(DEMO_TREES),
    }


__all__ = ["DEMO_TREES", "run_trees", "write_trees_federation"]
