"""Trees on Statlog German credit: categorical columns by category groups against ordinal codes.

Plain pooled trees in process (``fedcredit.model.trees``), the same settings for every variant,
over several random 75/25 splits of the 997 rows:

- ``ordinal``: category codes binned by quantile edges, as before category maps;
- ``ordered``: one bin per category (most frequent first), cut in that order (a partner's way);
- ``groups``: one bin per category, split by category groups (the lender's way), ``cat_smooth``
  10 (the default) and 0.

``--shuffle-codes`` gives every categorical column's categories codes in a random order first
(German's own codes follow the documented order of most attributes; names of regions or
occupations would not), which is what ordinal codes cut in the general case.

    python benchmarks/tree_categories.py [--json OUT] [--splits 5] [--min-rows 5] [--shuffle-codes]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from fedcredit.model import trees as T
from fedcredit.model.metrics import auc
from fedcredit.model.tree_categories import bin_categories, fit_categories
from fedcredit.protocol.categories import category_code


def load(root: Path) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    lines = (root / "statlog_german" / "german.data").read_text().splitlines()
    rows = [line.split() for line in lines[1:] if line.strip()]
    cells = [r[:-1] for r in rows]
    text = [not cells[0][j].lstrip("-").replace(".", "").isdigit() for j in range(len(cells[0]))]
    x = np.array(
        [[category_code(v) if t else float(v) for v, t in zip(r, text, strict=True)] for r in cells]
    )
    y = np.array([1.0 if r[-1] == "2" else 0.0 for r in rows])
    return x, y, text


def binned(x: np.ndarray, train: np.ndarray, text: list[bool], variant: str, bins: int, floor: int):  # type: ignore[no-untyped-def]
    cols, n_regular = [], []
    for j, is_text in enumerate(text):
        if is_text and variant != "ordinal":
            kept = fit_categories(x[train, j], floor)
            cols.append(bin_categories(x[:, j], kept))
            n_regular.append(len(kept) + 1)
        else:
            edges = T.fit_edges(x[train, j], bins, floor)
            cols.append(T.bin_column(x[:, j], edges))
            n_regular.append(len(edges) + 1)
    return np.stack(cols, axis=1), n_regular


def shuffle(x: np.ndarray, text: list[bool], rng: np.random.Generator) -> None:
    """Each categorical column's categories recoded in a random order (in place)."""
    for j in (j for j, t in enumerate(text) if t):
        cats = np.unique(x[:, j])
        codes = category_code("c") + rng.permutation(len(cats)).astype(np.float64)
        x[:, j] = codes[np.searchsorted(cats, x[:, j])]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--min-rows", type=int, default=5)
    parser.add_argument("--shuffle-codes", action="store_true")
    args = parser.parse_args()
    root = Path(os.environ.get("FEDCREDIT_DATA", Path(__file__).parents[1] / "../shared/data"))
    x, y, text = load(root)
    if args.shuffle_codes:
        shuffle(x, text, np.random.default_rng(99))
    groups = frozenset(j for j, t in enumerate(text) if t)
    variants = {
        "ordinal": ("ordinal", frozenset(), 10.0),
        "ordered": ("categories", frozenset(), 10.0),
        "groups": ("categories", groups, 10.0),
        "groups_cat_smooth_0": ("categories", groups, 0.0),
    }
    out: dict[str, list[float]] = {k: [] for k in variants}
    for seed in range(args.splits):
        order = np.random.default_rng(seed).permutation(len(y))
        test, train = np.sort(order[: len(y) // 4]), np.sort(order[len(y) // 4 :])
        for name, (how, cat, smooth) in variants.items():
            bins, n_regular = binned(x, train, text, how, 32, args.min_rows)
            params = T.TreeParams(
                depth=3, learning_rate=0.3, min_rows=args.min_rows, cat_smooth=smooth
            )
            plan = T.BoostPlan(trees=30, groups=cat)
            model = T.fit(bins, n_regular, y, train, np.zeros(0, np.int64), params, plan)
            out[name].append(auc(y[test], model.margin(bins[test], n_regular)))
    report = {
        "data": "statlog_german",
        "shuffled_codes": bool(args.shuffle_codes),
        "rows": len(y),
        "categorical_columns": len(groups),
        "settings": {"trees": 30, "depth": 3, "learning_rate": 0.3, "bins": 32,
                     "min_rows": args.min_rows, "test_fraction": 0.25, "splits": args.splits},
        "auc": {k: {"mean": float(np.mean(v)), "per_split": v} for k, v in out.items()},
    }  # fmt: skip
    text_out = json.dumps(report, indent=2)
    print(text_out)
    if args.json:
        Path(args.json).write_text(text_out + "\n")


if __name__ == "__main__":
    main()
