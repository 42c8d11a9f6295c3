"""Credit decisions on the UCI three-institution split: batch throughput, online latency, and
the share of approvals per grade.

    python benchmarks/decisions.py --json OUT.json [--rows 30000] [--applicants 7500]
        [--requests 300] [--key-bits 2048] [--epochs 10]

``--policy approve_score=530`` (repeatable) sets a [policy] key instead of its default.

1. The UCI table (../shared/data, benchmarks/quality_data.py) split in three institutions;
   25 % of the customers held out (stratified, seed 7) before any federation sees them. The
   federation trains on ``--rows`` of the others (real nodes, mutual TLS, the [train]
   defaults), every party holding a synthetic loans book (benchmarks/scoring.py), so every
   decision runs the loan-stacking check; the lender's [policy] is the defaults.
2. Batch: ``--applicants`` held-out customers through the lender's Decide RPC, 2,000 per
   call, as ``fedcredit decide`` calls it (``decisions_per_s`` over the calls; the nodes'
   start is ``startup_s``).
3. Online: ``--requests`` calls of one applicant each to Decide (as benchmarks/scoring.py's
   decide run): p50 and p99.
4. Per grade of the batch's decisions: applicants, the share approved, referred and declined,
   and the default rate among the approved (the held-out labels).

Keys below 2048 bits are allowed (``--key-bits 1024``) for a quick run.
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
from quality_data import data_dir, holdout, load_uci, write_case_files
from scoring import add_loans_and_policy, summary, timed

from fedcredit.cli.jobs import run_job
from fedcredit.config import load_federation
from fedcredit.decision import DECISIONS, Decision
from fedcredit.driver.decisions import decide_chunk
from fedcredit.driver.scoring import scoring_session

CHUNK = 2000


def per_grade(decisions: list[Decision], labels: dict[str, int]) -> list[dict[str, Any]]:
    """Applicants, decision shares and the approved's default rate, per grade (best first)."""
    rows = []
    for grade in sorted({d.grade for d in decisions}):
        group = [d for d in decisions if d.grade == grade]
        shares = {k: round(sum(d.decision == k for d in group) / len(group), 4) for k in DECISIONS}
        approved = [labels[d.applicant_id] for d in group if d.decision == "approve"]
        rows.append({
            "grade": grade or "(unscored)",
            "applicants": len(group),
            **shares,
            "approved_default_rate": round(float(np.mean(approved)), 4) if approved else None,
        })  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument("--rows", type=int, default=0, help="training customers (0: all kept)")
    parser.add_argument("--applicants", type=int, default=0, help="held-out applicants (0: all)")
    parser.add_argument("--requests", type=int, default=300, help="online calls (default 300)")
    parser.add_argument("--key-bits", type=int, default=2048, help="below 2048 allows small keys")
    parser.add_argument("--epochs", type=int, default=0, help="[train] epochs (0: the default)")
    parser.add_argument(
        "--policy", action="append", default=[], metavar="KEY=VALUE",
        help="a [policy] key instead of its default, e.g. approve_score=530 (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    small = args.key_bits < 2048
    data = load_uci(data_dir())
    kept, held = holdout(data.y)
    rng = np.random.default_rng(7)
    if args.rows:
        kept = np.sort(rng.choice(kept, size=min(args.rows, len(kept)), replace=False))
    if args.applicants:
        held = np.sort(rng.choice(held, size=min(args.applicants, len(held)), replace=False))
    applicants = [data.ids[i] for i in held.tolist()]
    labels = {data.ids[i]: int(data.y[i]) for i in held.tolist()}
    with tempfile.TemporaryDirectory(prefix="fedcredit-decisions-") as tmp:
        folder = Path(tmp)
        train_path, score_path = write_case_files(
            data, folder, args.key_bits, True, {p.name: () for p in data.parties}, kept
        )
        for path, files in ((train_path, "federation"), (score_path, "scoring")):
            if args.epochs:
                text = path.read_text(encoding="utf-8")
                path.write_text(text.replace("[train]\n", f"[train]\nepochs = {args.epochs}\n"))
            parties = {p.name: folder / files / f"{p.name}.csv" for p in data.parties}
            add_loans_and_policy(path, parties, data.ids)
            with path.open("a", encoding="utf-8") as handle:
                handle.writelines(f"{item.replace('=', ' = ', 1)}\n" for item in args.policy)
        print(f"training on {len(kept):,} customers ...", file=sys.stderr)
        fed = load_federation(train_path, allow_small_keys=small)
        metrics = run_job(fed, folder / "run", resume=False, quiet=True, allow_small_keys=small)
        scoring = load_federation(score_path, allow_small_keys=small)
        started = time.perf_counter()
        with scoring_session(
            scoring, folder / "run" / "model", folder / "nodes", allow_small_keys=small
        ) as session:
            startup = time.perf_counter() - started
            decide_chunk(session, applicants[:5])  # key, DJN tables, channels, the books
            started = time.perf_counter()
            decisions: list[Decision] = []
            for start in range(0, len(applicants), CHUNK):
                decisions += decide_chunk(session, applicants[start : start + CHUNK])
            batch_s = time.perf_counter() - started
            online, errors = timed(
                lambda pid: decide_chunk(session, [pid])[0].score is not None,
                applicants,
                args.requests,
            )
    report = {
        "benchmark": "decisions",
        "data": "UCI credit card clients, three institutions (lender, e-commerce, payments)",
        "key_bits": args.key_bits,
        "transport": "grpc mutual TLS on 127.0.0.1",
        "debt_check": True,
        "policy": scoring.policy.__dict__ if scoring.policy else None,
        "training_rows": len(kept),
        "model_auc": round(float(metrics["auc"]), 4),
        "batch": {
            "applicants": len(decisions),
            "seconds": round(batch_s, 2),
            "decisions_per_s": round(len(decisions) / batch_s, 1),
            "startup_s": round(startup, 2),
            "chunk": CHUNK,
        },
        "online_decide": summary(online, errors),
        "mix": {
            k: round(sum(d.decision == k for d in decisions) / len(decisions), 4) for k in DECISIONS
        },
        "per_grade": per_grade(decisions, labels),
        "cores": os.cpu_count(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
