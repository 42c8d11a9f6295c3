"""The plain-phe reference of one partner tree (benchmarks/trees.py, key ``ratio``).

The same mix-mode tree a partner builds from the lender's encrypted g and h, written the way a
first implementation with plain ``phe`` objects would: one ``encrypt`` per g and per h of every
row, one ``+`` per row, column and level into its node's bin, one ``decrypt`` per bin sum. A full
tree at 2048 bits takes many minutes, so each kind of work is timed on a sample and scaled to the
tree's own counts (``scaled = true``): encryptions and additions on ``rows`` training rows,
decryptions on ``decrypts`` bin sums. The counts are those of the real tree (every level's open
nodes, the partner's columns and bins).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from phe import paillier


def tree_counts(
    rows: int, columns: list[int], depth: int, nodes_per_level: list[int]
) -> dict[str, int]:
    """The phe work of one partner tree: ``columns`` holds each column's bin count (missing
    included), ``nodes_per_level`` the open nodes at each level."""
    bins = sum(columns)
    return {
        "encryptions": 2 * rows,
        # Every row's g and h go into one bin of every column at every level (rows of the
        # level's open nodes: every training row while all nodes are open).
        "additions": 2 * rows * len(columns) * depth,
        "decryptions": 2 * bins * sum(nodes_per_level[:depth]),
    }


def phe_tree_seconds(
    key_bits: int,
    g: np.ndarray,
    h: np.ndarray,
    bins: np.ndarray,
    n_bins: list[int],
    counts: dict[str, int],
    *,
    sample_rows: int,
    sample_decrypts: int,
) -> dict[str, Any]:
    """Time each kind of phe work on a sample and scale it to ``counts``."""
    public, private = paillier.generate_paillier_keypair(n_length=key_bits)
    rows = min(sample_rows, len(g))
    started = time.perf_counter()
    eg = [public.encrypt(float(v)) for v in g[:rows]]
    eh = [public.encrypt(float(v)) for v in h[:rows]]
    encrypt = time.perf_counter() - started
    add = 0.0
    sums: list[Any] = []
    for f, width in enumerate(n_bins):
        hist_g: list[Any] = [public.encrypt(0.0) for _ in range(width)]
        hist_h: list[Any] = [public.encrypt(0.0) for _ in range(width)]
        started = time.perf_counter()  # the zero encryptions above are not additions
        for i in range(rows):
            b = int(bins[i, f])
            hist_g[b] = hist_g[b] + eg[i]
            hist_h[b] = hist_h[b] + eh[i]
        add += time.perf_counter() - started
        sums.extend(hist_g + hist_h)
    picked = sums[: max(1, min(sample_decrypts, len(sums)))]
    started = time.perf_counter()
    for s in picked:
        private.decrypt(s)
    decrypt = time.perf_counter() - started
    per = {
        "encryptions": encrypt / (2 * rows),
        "additions": add / (2 * rows * len(n_bins)),
        "decryptions": decrypt / len(picked),
    }
    seconds = {k: per[k] * counts[k] for k in per}
    return {
        "scaled": True,
        "sample_rows": rows,
        "sample_decryptions": len(picked),
        "counts": counts,
        "seconds_each_ms": {k: round(v * 1000, 4) for k, v in per.items()},
        "seconds_per_kind": {k: round(v, 2) for k, v in seconds.items()},
        "seconds": round(sum(seconds.values()), 2),
    }
