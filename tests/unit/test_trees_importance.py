"""Feature importance of a trees model: split gains as the split finding saw them, the lender's
own columns by name and each partner as one line, a partner's counts with no gain."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from fedcredit.model.trees import TreeParams, candidates, gains, grow_tree, histogram
from fedcredit.protocol.trees.importance import (
    ALL_COLUMNS,
    lender_csv,
    lender_importance,
    partner_csv,
    split_gains,
)
from fedcredit.protocol.trees.scoring import LenderTree


def _tree(seed: int) -> tuple[LenderTree, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    bins = rng.integers(0, 6, size=(400, 3))
    g = rng.normal(size=400) + 0.8 * (bins[:, 1] > 2)
    h = rng.uniform(0.1, 0.3, size=400)
    params = TreeParams(depth=2, l2=1.0, min_child_weight=0.5)
    tree = grow_tree(bins, [6, 6, 6], g, h, params)
    record = LenderTree("", tree, ["lender" if f >= 0 else "" for f in tree.feature.tolist()])
    return record, tree.leaf_of(bins, [6, 6, 6]), g, h, bins


@pytest.mark.parametrize("seed", range(4))
def test_the_root_gain_is_the_best_candidates_gain(seed: int) -> None:
    record, leaves, g, h, bins = _tree(seed)
    total = (float(g.sum()), float(h.sum()), len(g))
    params = TreeParams(depth=2, l2=1.0, min_child_weight=0.5)
    best = max(
        float(np.max(gains(c.g, c.h, c.n, total, params)))
        for c in (candidates(histogram(bins[:, f], g, h, 7), 6) for f in range(3))
    )

    gain = split_gains(record, leaves, g, h, 1.0)

    assert gain[0] == pytest.approx(best, abs=1e-9)
    assert np.all(gain[[j for j, by in enumerate(record.split_by) if not by]] == 0.0)
    assert np.all(gain[[j for j, by in enumerate(record.split_by) if by]] > 0.0)


def test_the_lender_sees_its_columns_by_name_and_each_partner_as_one_line() -> None:
    record, leaves, g, h, _ = _tree(0)
    record.gain = split_gains(record, leaves, g, h, 1.0)
    joint = LenderTree("", record.own, list(record.split_by), cover=None)
    joint.split_by[0] = "bank"  # a partner's split at the root of a joint tree
    joint.gain = record.gain.copy()
    mix = LenderTree("shop", record.own, ["shop" if by else "" for by in record.split_by])
    mix.gain = record.gain

    rows = lender_importance([record, joint, mix], "lender", ["a", "b", "c"], ["bank", "shop"])
    table = {(p, c): (n, v) for p, c, n, v in rows}

    inner = [j for j, by in enumerate(record.split_by) if by]
    assert table[("bank", ALL_COLUMNS)] == (1, pytest.approx(record.gain[0]))
    assert table[("shop", ALL_COLUMNS)] == (len(inner), pytest.approx(record.gain.sum()))
    own = sum(n for (p, _), (n, _) in table.items() if p == "lender")
    assert own == 2 * len(inner) - 1
    assert {c for p, c in table if p == "lender"} == {"a", "b", "c"}
    parsed = list(csv.DictReader(io.StringIO(lender_csv(rows))))
    assert [r["party"] for r in parsed] == ["lender"] * 3 + ["bank", "shop"]


def test_a_partners_file_has_counts_and_no_gain() -> None:
    text = partner_csv("splits", {"x,1": 2, "y": 0})
    assert list(csv.reader(io.StringIO(text))) == [["column", "splits"], ["x,1", "2"], ["y", "0"]]
