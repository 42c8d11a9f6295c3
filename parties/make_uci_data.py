"""Write lender.csv, ecommerce.csv and payments.csv for uci.toml from the shared UCI table.

    python parties/make_uci_data.py [--data ../shared/data] [--out parties/]

Each institution gets the ID column and its own columns (see ../shared/data/README.md); only
the lender gets the default label. Then: fedcredit certs init --out parties/certs --parties
lender,ecommerce,payments,coordinator && fedcredit run parties/uci.toml --out out/
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

LABEL = "default.payment.next.month"
SPLIT = {
    "lender": ["LIMIT_BAL", "PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6", LABEL],
    "ecommerce": ["SEX", "EDUCATION", "MARRIAGE", "AGE"],
    "payments": [f"BILL_AMT{i}" for i in range(1, 7)] + [f"PAY_AMT{i}" for i in range(1, 7)],
}


def main() -> int:
    here = Path(__file__).resolve().parent
    default_data = Path(os.environ.get("FEDCREDIT_DATA", here.parents[1] / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--out", type=Path, default=here)
    args = parser.parse_args()
    source = args.data / "uci_default_credit" / "UCI_Credit_Card.csv"
    with open(source, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for party, columns in SPLIT.items():
        with open(args.out / f"{party}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["ID", *columns])
            for row in rows:
                writer.writerow([row["ID"], *(row[c] for c in columns)])
    print(f"wrote {len(rows):,} rows for {', '.join(SPLIT)} into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
