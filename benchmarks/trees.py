"""Federated boosted trees, measured (issue 14; docs/TREES.md, "Measured").

    python benchmarks/trees.py --json OUT.json [--quick] [--key-bits 2048] [--trees 3] [--rows N]

For the UCI three-institution split and FATE's two-party split, in each mode (mix, joint):
- ``auc``: the 30 trees of the plaintext mirror (``fedcredit.model.trees.fit`` on the parties'
  bins with the same quantized g and h), whose first trees are checked bit-identical to the
  federated ones grown in process; ``references``: pooled XGBoost with the same settings on the
  same rows, and the lender's columns alone.
- ``seconds_per_tree``: ``in_process`` (the protocol's parties in one process, one after the
  other, seconds per phase) and ``nodes`` (``fedcredit run``'s code: node processes on
  127.0.0.1, mutual TLS, the driver; the train phase over the number of trees, which includes
  the lender's key); ``network`` is what the nodes took beyond the in-process run. The nodes'
  AUC after those trees is checked equal to the mirror's (``nodes.auc_equals_mirror``).
- ``ratio`` (UCI): a partner's mix tree written with plain phe objects
  (``benchmarks/trees_phe.py``, timed on a sample and scaled) over fedcredit's same tree.
- ``growth``: one partner tree (mix) on 10k and 100k synthetic customers (the demo's generator).

Progress goes to stderr on a terminal; ``--json`` alone keeps it quiet. Figures taken while other
jobs load the machine are not figures of record: the file says ``cores`` and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quality_data import Dataset, data_dir, load_fate, load_uci, write_party
from trees_local import _floats, _pooled, _xgboost
from trees_phe import phe_tree_seconds, tree_counts

from fedcredit.crypto.djn import set_table_budget
from fedcredit.crypto.executors import use_executor
from fedcredit.model import trees as T
from fedcredit.model.metrics import auc
from fedcredit.protocol.trees.lender import TreesLender
from fedcredit.protocol.trees.local import LocalTrees
from fedcredit.protocol.trees.partner import TreesPartner
from fedcredit.protocol.trees.settings import TreeSettings

ARGS: argparse.Namespace


def say(*parts: object) -> None:
    if not ARGS.quiet:
        print(*parts, file=sys.stderr, flush=True)


def _subset(data: Dataset, rows: int | None) -> Dataset:
    """The first ``rows`` customers (``--rows``), all of them when None."""
    if rows is None or rows >= len(data.ids):
        return data
    from dataclasses import replace

    keep = slice(0, rows)
    parties = tuple(
        replace(p, cells={k: v[keep] for k, v in p.cells.items()}) for p in data.parties
    )
    return replace(data, ids=data.ids[keep], y=data.y[keep], parties=parties)


def roles(
    data: Dataset, settings: TreeSettings, order: list[str] | None = None
) -> tuple[TreesLender, list[TreesPartner]]:
    """The lender (first) and its partners on ``data``, aligned in ``order`` (data's own)."""
    first, *others = data.parties
    names, x = _floats(first.cells)
    lender = TreesLender(first.name, data.ids, x, names, data.y, settings)
    partners = [TreesPartner(p.name, data.ids, *_swap(_floats(p.cells)), settings) for p in others]
    for role in (lender, *partners):
        role.align(order or data.ids)
    return lender, partners


def _swap(pair: tuple[list[str], np.ndarray]) -> tuple[np.ndarray, list[str]]:
    return pair[1], pair[0]


def plan(mode: str, groups: list[list[int]], trees: int) -> T.BoostPlan:
    cycle = len(groups)
    return T.BoostPlan(
        trees=trees, features=(lambda t: groups[t % cycle]) if mode == "mix" else (lambda t: None)
    )


def in_process(data: Dataset, mode: str, timed: int) -> dict[str, Any]:
    """The first ``timed`` trees federated in one process, the mirror's 30 for the AUC."""
    settings = TreeSettings(mode=mode)
    lender, partners = roles(data, settings)
    split = lender.split
    assert split is not None
    y = lender.labels(np.arange(len(lender.aligned_rows)))
    bins, n_regular, groups = _pooled(lender, partners)
    local = LocalTrees(lender, partners, key_bits=ARGS.key_bits, allow_small=ARGS.key_bits < 2048)
    run = local.train(trees=timed)
    mirror = T.fit(
        bins,
        n_regular,
        y,
        split.train,
        split.validation,
        settings.params,
        plan(mode, groups, settings.trees),
    )
    first = T.Booster(mirror.base, mirror.trees[:timed], timed)
    owners = [lender.owner_of(t) if mode == "mix" else "every party" for t in range(timed)]
    federated = [s for s, o in zip(run.tree_seconds, owners, strict=True) if o != lender.name]
    return {
        "auc": round(auc(y[split.test], mirror.margin(bins, n_regular)[split.test]), 4),
        "auc_source": "plaintext mirror, its first trees checked equal to the federated ones",
        "timed_trees": timed,
        "timed_trees_identical_to_mirror": bool(
            np.array_equal(first.margin(bins, n_regular), lender.margin)
        ),
        "tree_owners": owners,
        "each": [round(s, 2) for s in run.tree_seconds],
        "mean": round(float(np.mean(run.tree_seconds)), 2),
        "mean_partner_or_joint_tree": round(float(np.mean(federated)), 2) if federated else 0.0,
        "per_phase_mean": {k: round(v / timed, 3) for k, v in run.seconds.items() if k != "key"},
        "key_seconds": round(run.seconds.get("key", 0.0), 2),
        "_sets": (bins, n_regular, groups, y, split, lender, partners),
    }


def federation_file(data: Dataset, folder: Path, mode: str, trees: int) -> Path:
    """Every customer's files and a trees federation on 127.0.0.1 (mutual TLS, real nodes)."""
    lines = [
        "[federation]",
        f'name = "trees-{data.key}"',
        f"key_bits = {ARGS.key_bits}",
        "",
        "[coordinator]",
        'address = "127.0.0.1:50150"',
        "",
    ]
    everyone = np.arange(len(data.ids))
    for i, party in enumerate(data.parties):
        path = folder / f"{party.name}.csv"
        write_party(path, data, party, everyone)
        lines += [
            "[[party]]",
            f"name = {json.dumps(party.name)}",
            f"role = {json.dumps(party.role)}",
            f'address = "127.0.0.1:{50151 + i}"',
            f"data = {json.dumps(str(path))}",
            'id_column = "ID"',
        ]
        if ARGS.table_mib:
            lines.append(f"table_mib = {ARGS.table_mib}")
        if ARGS.executor != "threads":
            lines.append(f"executor = {json.dumps(ARGS.executor)}")
        if party is data.lender:
            lines.append(f"label_column = {json.dumps(data.label)}")
        lines.append("")
    lines += [
        "[train]",
        "test_fraction = 0.25",
        "validation_fraction = 0.0",
        "",
        "[model]",
        'family = "trees"',
        "",
        "[trees]",
        f"trees = {trees}",
        f'mode = "{mode}"',
    ]
    if len(data.parties) == 2:
        lines += ["", "[scoring]", "allow_single_partner = true"]
    out = folder / "federation.toml"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def on_nodes(data: Dataset, mode: str, trees: int) -> dict[str, Any]:
    """``trees`` trees over real nodes; their AUC against the mirror on the nodes' order."""
    from fedcredit.cli.jobs import run_job
    from fedcredit.config import load_federation

    with tempfile.TemporaryDirectory(prefix="fedcredit-trees-") as tmp:
        folder = Path(tmp)
        path = federation_file(data, folder, mode, trees)
        fed = load_federation(path, allow_small_keys=ARGS.key_bits < 2048)
        started = time.perf_counter()
        metrics = run_job(
            fed, folder / "run", resume=False, quiet=True, allow_small_keys=ARGS.key_bits < 2048
        )
        seconds = time.perf_counter() - started
        settings = fed.family_settings
    # The nodes align in PSI's order (sorted ids) and read the same numbers from the CSVs.
    lender, partners = roles(data, settings, sorted(data.ids))
    split = lender.split
    assert split is not None
    bins, n_regular, groups = _pooled(lender, partners)
    y = lender.labels(np.arange(len(lender.aligned_rows)))
    grown = int(metrics["epochs"])
    mirror = T.fit(
        bins,
        n_regular,
        y,
        split.train,
        split.validation,
        settings.params,
        plan(mode, groups, grown),
    )
    mirror_auc = auc(y[split.test], mirror.margin(bins, n_regular)[split.test])
    train = float(metrics["seconds_per_phase"]["train"])
    return {
        "trees": grown,
        "train_seconds": round(train, 2),
        "seconds_per_tree": round(train / max(1, grown), 2),
        "job_seconds": round(seconds, 1),
        "seconds_per_phase": {
            k: round(float(v), 2) for k, v in metrics["seconds_per_phase"].items()
        },
        "auc": round(float(metrics["auc"]), 6),
        "auc_equals_mirror": bool(abs(float(metrics["auc"]) - mirror_auc) < 1e-9),
    }


def references(sets: tuple[Any, ...], data: Dataset) -> dict[str, float]:
    bins, n_regular, groups, y, split, lender, _ = sets
    settings = TreeSettings()
    alone = T.fit(
        bins,
        n_regular,
        y,
        split.train,
        split.validation,
        settings.params,
        T.BoostPlan(trees=settings.trees, features=lambda t: groups[0]),
    )
    raw = np.concatenate([_floats(p.cells)[1] for p in data.parties], axis=1)[lender.aligned_rows]
    return {
        "pooled_xgboost": round(
            _xgboost(raw, y, split.train, split.test, settings, settings.bins), 4
        ),
        "lender_columns_alone": round(
            auc(y[split.test], alone.margin(bins, n_regular)[split.test]), 4
        ),
        "lender_columns_alone_xgboost": round(
            _xgboost(raw[:, groups[0]], y, split.train, split.test, settings, settings.bins), 4
        ),
    }


def ratio(mix: dict[str, Any], sets: tuple[Any, ...]) -> dict[str, Any]:
    """phe seconds of the first partner's tree over fedcredit's same tree (in process)."""
    _, _, _, y, split, lender, partners = sets
    partner = max(partners, key=lambda p: len(p.n_regular))  # the most columns: most work
    g, h = T.gradients(y[split.train], np.full(len(split.train), lender.base), None)
    n_bins = [n + 1 for n in partner.n_regular]
    levels = [2**d for d in range(TreeSettings().depth)]
    counts = tree_counts(len(split.train), n_bins, TreeSettings().depth, levels)
    phe = phe_tree_seconds(
        ARGS.key_bits,
        g,
        h,
        partner.train_bins,
        n_bins,
        counts,
        sample_rows=ARGS.phe_rows,
        sample_decrypts=ARGS.phe_decrypts,
    )
    ours = mix["each"][mix["tree_owners"].index(partner.name)]
    return {
        "tree": f"mix, {partner.name}'s first tree",
        "phe": phe,
        "fedcredit_seconds": ours,
        "ratio": round(phe["seconds"] / ours, 1),
    }


def growth(sizes: list[int]) -> dict[str, Any]:
    """One lender tree and one partner tree (mix) per size of synthetic customers."""
    from fedcredit.data.loader import load_party_csv
    from fedcredit.data.synthetic import write_institutions

    out: dict[str, Any] = {}
    for customers in sizes:
        say(f"growth: {customers} synthetic customers")
        with tempfile.TemporaryDirectory(prefix="fedcredit-trees-growth-") as tmp:
            paths = write_institutions(tmp, customers, seed=3)
            settings = TreeSettings(mode="mix")
            data = load_party_csv(paths["lender"], id_column="id", label_column="default")
            assert data.y is not None
            lender = TreesLender("lender", data.ids, data.X, data.feature_names, data.y, settings)
            partners = []
            for name in ("ecommerce", "payments"):
                d = load_party_csv(paths[name], id_column="id")
                partners.append(TreesPartner(name, d.ids, d.X, d.feature_names, settings))
        common = sorted(set(lender.ids).intersection(*(set(p.ids) for p in partners)))
        for role in (lender, *partners):
            role.align(common)
        run = LocalTrees(
            lender, partners, key_bits=ARGS.key_bits, allow_small=ARGS.key_bits < 2048
        ).train(trees=2)
        out[str(customers)] = {
            "aligned_rows": len(common),
            "train_rows": len(lender.split.train) if lender.split else 0,
            "partner_tree_seconds": round(run.tree_seconds[1], 2),
            "lender_tree_seconds": round(run.tree_seconds[0], 3),
            "per_phase": {k: round(v, 2) for k, v in run.seconds.items()},
        }
    return out


def split_report(data: Dataset) -> dict[str, Any]:
    report: dict[str, Any] = {"rows": len(data.ids), "parties": [p.name for p in data.parties]}
    modes: dict[str, Any] = {}
    sets = None
    for mode in ("mix", "joint"):
        timed = ARGS.trees if mode == "mix" else max(1, ARGS.trees - 1)
        if mode == "mix":
            timed = max(timed, len(data.parties))  # every party's first tree
        say(f"{data.key} {mode}: {timed} trees in process at {ARGS.key_bits} bits")
        local = in_process(data, mode, timed)
        sets = local.pop("_sets") if mode == "mix" else sets
        local.pop("_sets", None)
        nodes_trees = timed if mode == "mix" else 1
        say(f"{data.key} {mode}: {nodes_trees} trees over real nodes")
        nodes = on_nodes(data, mode, nodes_trees)
        network = nodes["seconds_per_tree"] - float(np.mean(local["each"][:nodes_trees]))
        auc_value = local.pop("auc")
        modes[mode] = {
            "auc": auc_value,
            "auc_source": local.pop("auc_source"),
            "seconds_per_tree": {
                "in_process": local,
                "nodes": nodes,
                "network": round(max(0.0, network), 2),
            },
        }
        say(
            f"  auc {auc_value}, in process {local['mean']} s/tree, nodes "
            f"{nodes['seconds_per_tree']} s/tree, nodes equal mirror {nodes['auc_equals_mirror']}"
        )
    assert sets is not None
    report["modes"] = modes
    report["references"] = references(sets, data)
    if data.key == "uci" and not ARGS.no_ratio:
        say("ratio: the phe reference tree")
        report["ratio"] = ratio(modes["mix"]["seconds_per_tree"]["in_process"], sets)
    return report


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, help="write the results here (quiet on stderr)")
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--trees", type=int, default=3, help="federated trees timed per mode")
    parser.add_argument("--rows", type=int, help="only the first N customers of each split")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1024 bits, 3000 rows, UCI only, growth 2k/5k: proves it runs",
    )
    parser.add_argument(
        "--table-mib",
        type=float,
        default=64,
        help="comb tables' memory per party ([[party]] table_mib; 0: the default window)",
    )
    parser.add_argument(
        "--executor",
        choices=("threads", "processes"),
        default="processes",
        help="[[party]] executor of every party (processes: encryption on every core, no GIL)",
    )
    parser.add_argument("--splits", default="uci,fate", help="uci, fate or both")
    parser.add_argument("--growth", default="10000,100000", help="synthetic sizes")
    parser.add_argument("--phe-rows", type=int, default=300)
    parser.add_argument("--phe-decrypts", type=int, default=100)
    parser.add_argument("--no-ratio", action="store_true")
    ARGS = parser.parse_args()
    if ARGS.quick:
        ARGS.key_bits, ARGS.rows = min(ARGS.key_bits, 1024), ARGS.rows or 3000
        ARGS.growth, ARGS.phe_rows, ARGS.phe_decrypts = "2000,5000", 60, 30
    ARGS.quiet = ARGS.json is not None or not sys.stderr.isatty()
    if ARGS.table_mib:
        # What [[party]] table_mib does in a node, for the parties of this process.
        set_table_budget(ARGS.table_mib)
    # What [[party]] executor does in a node, for the parties of this process.
    use_executor(ARGS.executor)
    started = time.time()
    out: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "table_mib": ARGS.table_mib or None,
        "executor": ARGS.executor,
        "key_bits": ARGS.key_bits,
        "cores": os.cpu_count(),
        "settings": TreeSettings().__dict__.copy(),
    }
    loaders = {"uci": load_uci, "fate": load_fate}
    chosen = ["uci"] if ARGS.quick else [k for k in ARGS.splits.split(",") if k]
    out["splits"] = {}
    out["load_average_start"] = [round(v, 2) for v in os.getloadavg()]
    for key in chosen:
        data = _subset(loaders[key](data_dir()), ARGS.rows)
        out["splits"][data.key] = split_report(data)
    out["growth"] = growth([int(s) for s in ARGS.growth.split(",") if s])
    out["seconds"] = round(time.time() - started, 1)
    out["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    text = json.dumps(out, indent=2, default=str) + "\n"
    if ARGS.json:
        ARGS.json.parent.mkdir(parents=True, exist_ok=True)
        ARGS.json.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
