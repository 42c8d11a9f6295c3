"""Feature precision (``x_scale_bits``) against AUC: how coarse may X be for ``X.T @ [[d]]``?

    python benchmarks/precision.py --json OUT.json

The cost of the encrypted gradient grows with the bits of the plaintext features (see
docs/CRYPTO.md), so the fixed-point scale of X is a lever. This measures its effect on model
quality: standardized columns clipped to +-8 exactly as a party node does
(``fedcredit.protocol.fixedpoint``), rounded to ``2**-s`` for each scale ``s``, then
scikit-learn logistic regression on the pooled columns (same holdout as
``quality_baselines.py``), holdout AUC and KS against unquantized float64. Plain arithmetic:
encryption is exact on integers, so the quantization is the only effect of the scale.

JSON: ``cases`` (one per dataset), each with ``float64`` and ``by_scale_bits``
({s: {auc, ks, auc_loss}}).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quality_baselines import (
    ECOMMERCE,
    LENDING,
    PAYMENTS,
    Dataset,
    _scores,
    data_dir,
    load_fate,
    load_uci,
)

from fedcredit.protocol.fixedpoint import CLIP, quantize

SCALES = (2, 4, 6, 8, 10, 12, 16)


def evaluate(data: Dataset, names: list[str], scale_bits: int | None) -> dict[str, float]:
    x = data.matrix(names)
    scaler = StandardScaler().fit(x[data.train])
    z = np.clip(scaler.transform(x), -CLIP, CLIP)
    if scale_bits is not None:
        z = quantize(z, scale_bits).astype(np.float64) / float(1 << scale_bits)
    model = LogisticRegression(max_iter=2000).fit(z[data.train], data.y[data.train])
    return _scores(data.y[data.test], model.decision_function(z[data.test]))


def run_case(name: str, data: Dataset, names: list[str]) -> dict[str, Any]:
    exact = evaluate(data, names, None)
    by_scale: dict[str, dict[str, float]] = {}
    for s in SCALES:
        got = evaluate(data, names, s)
        got["auc_loss"] = round(exact["auc"] - got["auc"], 4)
        by_scale[str(s)] = got
        print(f"{name:24s} x_scale_bits={s:2d}  AUC {got['auc']:.4f}  KS {got['ks']:.4f}")
    print(f"{name:24s} float64            AUC {exact['auc']:.4f}  KS {exact['ks']:.4f}")
    return {"name": name, "columns": len(names), "float64": exact, "by_scale_bits": by_scale}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    root = data_dir()
    if not (root / "uci_default_credit" / "UCI_Credit_Card.csv").exists():
        print(f"skipped: shared data not found at {root} (set FEDCREDIT_DATA)", file=sys.stderr)
        return 0
    uci = load_uci(root)
    fate, guest, host = load_fate(root)
    cases = [
        run_case("uci_three_institutions", uci, LENDING + ECOMMERCE + PAYMENTS),
        run_case("fate_two_party", fate, guest + host),
    ]
    result = {"benchmark": "precision", "scales": list(SCALES), "cases": cases}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
