"""Federated model quality against pooling, on real public credit data.

    python benchmarks/quality.py --json OUT.json [--key-bits 2048] [--epochs 8] [--quick]

For the UCI default-of-credit-card table split three ways (lending, e-commerce, payments; see
../shared/data/README.md) and FATE's two-party split of the same data, it runs, in one go:
- the federated model: real node processes, mutual TLS, Paillier keys (`fedcredit run`);
- scikit-learn LogisticRegression on the pooled columns, with the same train/test rows and
  the same L2 strength (C = 1 / (l2 * n_train));
- the lender's columns alone, likewise.
Target: federated AUC within 0.005 of pooled; clearly above the lender alone on FATE's split.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fedcredit.cli.jobs import run_job
from fedcredit.config import load_federation
from fedcredit.model.metrics import auc, ks
from fedcredit.protocol.split import split_rows

UCI_LABEL = "default.payment.next.month"
UCI_SPLIT = {
    "lender": ["LIMIT_BAL", "PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6"],
    "ecommerce": ["SEX", "EDUCATION", "MARRIAGE", "AGE"],
    "payments": [f"BILL_AMT{i}" for i in range(1, 7)] + [f"PAY_AMT{i}" for i in range(1, 7)],
}


def data_dir() -> Path:
    env = os.environ.get("FEDCREDIT_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def read_table(path: Path) -> dict[str, list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [h.strip().strip('"') for h in next(reader)]
        columns: dict[str, list[str]] = {h: [] for h in header}
        for row in reader:
            for h, v in zip(header, row, strict=True):
                columns[h].append(v)
    return columns


def write_party(
    path: Path, ids: list[str], columns: dict[str, list[str]], names: list[str]
) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ID", *names])
        for i, pid in enumerate(ids):
            writer.writerow([pid, *(columns[n][i] for n in names)])


def federation_text(
    parties: dict[str, tuple[str, Path, str | None]], args: argparse.Namespace
) -> str:
    lines = [
        f'[federation]\nname = "quality"\nkey_bits = {args.key_bits}\n',
        '[coordinator]\naddress = "127.0.0.1:50050"\n',
    ]
    for i, (name, (role, path, label)) in enumerate(parties.items()):
        lines.append(
            f'[[party]]\nname = "{name}"\nrole = "{role}"\naddress = "127.0.0.1:{50051 + i}"\ndata = "{path}"\nid_column = "ID"'
        )
        if label:
            lines.append(f'label_column = "{label}"')
        lines.append("")
    lines.append(
        f"[train]\nepochs = {args.epochs}\nbatch_size = {args.batch_size}\nlearning_rate = {args.learning_rate}\n"
        f"l2 = {args.l2}\ntest_fraction = 0.25\nvalidation_fraction = 0.0\nseed = 7\ntol = 0.0\n"
        f"x_scale_bits = {args.x_scale_bits}\n"
    )
    return "\n".join(lines)


def pooled_baselines(
    x: dict[str, np.ndarray], y: np.ndarray, lender: str, l2: float
) -> dict[str, Any]:
    """sklearn on exactly the federated train/test rows (aligned order: ids sorted as text)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    split = split_rows(len(y), test_fraction=0.25, validation_fraction=0.0, seed=7)
    out: dict[str, Any] = {}
    for label, parts in (("pooled", list(x)), ("lender_alone", [lender])):
        matrix = np.hstack([x[p] for p in parts])
        scaler = StandardScaler().fit(matrix[split.train])
        model = LogisticRegression(C=1.0 / (l2 * len(split.train)), max_iter=2000)
        model.fit(scaler.transform(matrix[split.train]), y[split.train])
        z = model.decision_function(scaler.transform(matrix[split.test]))
        out[label] = {
            "auc": round(auc(y[split.test], z), 4),
            "ks": round(ks(y[split.test], z)[0], 4),
        }
    return out


def prepare_uci(
    root: Path, folder: Path
) -> tuple[dict[str, tuple[str, Path, str | None]], dict[str, np.ndarray], np.ndarray]:
    table = read_table(root / "uci_default_credit" / "UCI_Credit_Card.csv")
    ids = table["ID"]
    parties: dict[str, tuple[str, Path, str | None]] = {}
    for name, cols in UCI_SPLIT.items():
        path = folder / f"{name}.csv"
        names = cols + ([UCI_LABEL] if name == "lender" else [])
        write_party(path, ids, table, names)
        parties[name] = (
            "lending" if name == "lender" else name,
            path,
            UCI_LABEL if name == "lender" else None,
        )
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    x = {
        n: np.array([[float(table[c][i]) for c in cols] for i in order])
        for n, cols in UCI_SPLIT.items()
    }
    y = np.array([int(float(table[UCI_LABEL][i])) for i in order])
    return parties, x, y


def prepare_fate(
    root: Path, folder: Path
) -> tuple[dict[str, tuple[str, Path, str | None]], dict[str, np.ndarray], np.ndarray]:
    guest = read_table(root / "fate_examples" / "default_credit_hetero_guest.csv")
    host = read_table(root / "fate_examples" / "default_credit_hetero_host.csv")
    g_cols = [c for c in guest if c not in ("id", "y")]
    h_cols = [c for c in host if c != "id"]
    guest["ID"], host["ID"] = guest["id"], host["id"]
    write_party(folder / "guest.csv", guest["id"], guest, [*g_cols, "y"])
    write_party(folder / "host.csv", host["id"], host, h_cols)
    parties: dict[str, tuple[str, Path, str | None]] = {
        "guest": ("lending", folder / "guest.csv", "y"),
        "host": ("other", folder / "host.csv", None),
    }
    ids = guest["id"]
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    h_index = {v: i for i, v in enumerate(host["id"])}
    x = {
        "guest": np.array([[float(guest[c][i]) for c in g_cols] for i in order]),
        "host": np.array([[float(host[c][h_index[ids[i]]]) for c in h_cols] for i in order]),
    }
    y = np.array([int(float(guest["y"][i])) for i in order])
    return parties, x, y


def run_case(name: str, prepare: Any, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"fedcredit-quality-{name}-") as tmp:
        folder = Path(tmp)
        parties, x, y = prepare(root, folder)
        fed_path = folder / "federation.toml"
        fed_path.write_text(federation_text(parties, args), encoding="utf-8")
        fed = load_federation(fed_path, allow_small_keys=args.key_bits < 2048)
        started = time.monotonic()
        metrics = run_job(
            fed,
            folder / "run",
            resume=False,
            quiet=args.json is not None and not sys.stderr.isatty(),
            allow_small_keys=args.key_bits < 2048,
        )
        federated = {
            "auc": round(metrics["auc"], 4),
            "ks": round(metrics["ks"], 4),
            "epochs": metrics["epochs"],
            "seconds": round(time.monotonic() - started, 1),
        }
    lender = next(n for n, p in parties.items() if p[2])
    baselines = pooled_baselines(x, y, lender, args.l2)
    return {
        "dataset": name,
        "rows": len(y),
        "federated": federated,
        **baselines,
        "gap_to_pooled": round(baselines["pooled"]["auc"] - federated["auc"], 4),
        "gain_over_lender_alone": round(federated["auc"] - baselines["lender_alone"]["auc"], 4),
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
    parser.add_argument(
        "--quick", action="store_true", help="1024-bit keys, 3 epochs (a smoke run)"
    )
    args = parser.parse_args()
    if args.quick:
        args.key_bits, args.epochs = 1024, 3
    root = data_dir()
    if not (root / "uci_default_credit" / "UCI_Credit_Card.csv").exists():
        print(f"skipped: shared data not found at {root} (set FEDCREDIT_DATA)", file=sys.stderr)
        return 0
    results = [
        run_case("uci_three_institutions", prepare_uci, root, args),
        run_case("fate_two_party", prepare_fate, root, args),
    ]
    report = {
        "benchmark": "quality",
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
