"""A trees partner's histogram phase for one mix tree, on threads, processes and Ray.

    python benchmarks/histograms.py --json OUT.json [--key-bits 2048] [--rows N]

The UCI split's lender and its payments partner (12 columns; the partner with most columns),
``TreeSettings()`` defaults (depth 3, 32 bins). The lender makes its key and encrypts the tree's
g and h once (on the ``processes`` executor, not timed); then, for each executor in turn, the
same tree is grown: the partner's ``mix_histograms`` of every level (bin sums, candidates,
packing: the ``histograms`` phase of ``benchmarks/trees.py``) timed, the lender's choice and the
partner's ``mix_apply`` between them not timed. ``bin_sums_level0_s`` is the bin-sums kernel
alone over every training row and column. Executors: ``threads`` (two workers), ``processes``
(two worker processes; the bin sums stay on its threads), ``ray_2`` (a local Ray cluster of two
workers, default ``BlockSizes``). ``same_trees`` says every executor grew the same tree.
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

from fedcredit.crypto import bin_sums, set_workers
from fedcredit.crypto.executors import Executor, ThreadExecutor, set_executor
from fedcredit.crypto.executors.processes import ProcessExecutor
from fedcredit.protocol.trees.lender import TreesLender
from fedcredit.protocol.trees.partner import TreesPartner
from fedcredit.protocol.trees.settings import TreeSettings

TREE = 1  # owner_of(1) is the partner: the lender's own tree is tree 0


def _floats(cells: dict[str, list[str]]) -> tuple[list[str], np.ndarray]:
    names = list(cells)
    return names, np.array([[float(v) if v else np.nan for v in cells[n]] for n in names]).T


def _roles(rows: int | None) -> tuple[TreesLender, TreesPartner]:
    data = load_uci(data_dir())
    by_name = {p.name: p for p in data.parties}
    ids = data.ids[:rows] if rows else data.ids
    settings = TreeSettings(mode="mix")
    names, x = _floats(by_name["lender"].cells)
    count = len(ids)
    lender = TreesLender("lender", ids, x[:count], names, data.y[:count], settings)
    names, x = _floats(by_name["payments"].cells)
    partner = TreesPartner("payments", ids, x[:count], names, settings)
    for role in (lender, partner):
        role.align(ids)
    lender.partners = [partner.name]
    return lender, partner


def _grow(lender: TreesLender, partner: TreesPartner, message: Any) -> tuple[float, list[Any]]:
    """Seconds of the partner's ``mix_histograms`` over the tree's levels; the tree grown."""
    lender.begin_tree(TREE)
    seconds = 0.0
    for level in range(int(lender.settings.depth)):
        if not lender.open_nodes(level):
            break
        start = time.perf_counter()
        hist = partner.mix_histograms(message if level == 0 else None, TREE, level)
        seconds += time.perf_counter() - start
        partner.mix_apply(lender.mix_choose(hist))
    tree = partner.trees[TREE]
    return seconds, [tree.feature.tolist(), tree.threshold.tolist(), tree.exists.tolist()]


def _kernel(partner: TreesPartner, message: Any) -> float:
    bins = partner.train_bins
    start = time.perf_counter()
    bin_sums(message.values, None, bins, [n + 1 for n in partner.n_regular])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--rows", type=int, default=None, help="only the first N customers")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    set_workers(2)
    lender, partner = _roles(args.rows)
    key = lender.make_key(args.key_bits, allow_small=args.key_bits < 2048)
    partner.receive_key(key, allow_small=args.key_bits < 2048)
    lender.begin_tree(TREE)
    encrypting = ProcessExecutor(2)
    set_executor(encrypting)
    message = lender.mix_gradients(TREE)
    results: dict[str, Any] = {}
    trees = []
    from fedcredit.crypto.executors.ray_executor import RayExecutor

    makers: list[tuple[str, Any]] = [
        ("threads", ThreadExecutor),
        ("processes", lambda: encrypting),
        ("ray_2", lambda: RayExecutor("local", workers=2)),
    ]
    for name, make in makers:
        executor: Executor = make()
        set_executor(executor)
        _kernel(partner, message)  # warm: Ray's workers start, the pool's threads too
        seconds, tree = _grow(lender, partner, message)
        results[name] = {
            "histograms_s": round(seconds, 3),
            "bin_sums_level0_s": round(_kernel(partner, message), 3),
        }
        trees.append(tree)
        print(name, results[name], file=sys.stderr, flush=True)
        set_executor(None)
        if executor is not encrypting:
            executor.close()
    encrypting.close()
    out = {
        "command": " ".join(sys.argv),
        "key_bits": args.key_bits,
        "train_rows": len(lender.split.train) if lender.split else 0,
        "partner_columns": len(partner.n_regular),
        "executors": results,
        "same_trees": all(t == trees[0] for t in trees),
        "load_average_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "cores": os.cpu_count(),
    }
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
