"""Online scoring and decision latency: one applicant per call to the lender's Score and Decide
RPCs over mutual TLS.

    python benchmarks/scoring.py --json OUT.json [--requests 300] [--key-bits 2048] [--no-loans]
        [--no-trees]

Trains a small model on synthetic institutions (real nodes, one epoch), starts the scoring
nodes, then calls Score, and then Decide, for one applicant at a time from the lender's
operator: each call makes the partners encrypt their partial scores, the lender mask them, the
coordinator decrypt one packed ciphertext; Decide also applies the federation file's [policy].
Every party holds a synthetic loans book (unless ``--no-loans``), so the lender's node runs the
loan-stacking check in parallel with each call (docs/DEBT.md): ``debt_check`` in the JSON.
Then the same federation is trained as boosted trees (the demo's ``[trees]``: 4 trees, depth 3,
mix mode; ``fedcredit.cli.demo_trees``) and Score is called the same way: each partner walks its
own splits and answers which leaves the applicant reaches, in one round of partner calls
(docs/TREES.md, "Scoring"): ``trees_score`` in the JSON. The top-level ``p50_ms``/``p99_ms``
stay the logistic Score's.
Targets: Score p99 under 50 ms without the debt check (logistic and trees), Decide p99 under
100 ms with it, on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fedcredit.cli.demo import write_demo_federation
from fedcredit.cli.demo_trees import DEMO_TREES, write_trees_federation
from fedcredit.cli.jobs import run_job
from fedcredit.config import load_federation
from fedcredit.data.synthetic import write_institutions
from fedcredit.driver.scoring import scoring_service
from fedcredit.proto.v1 import scoring_pb2

LENDING = ("lender", "ecommerce", "payments")


def add_loans_and_policy(path: Path, data: dict[str, Path], ids: list[str]) -> None:
    """Give every party a synthetic loans book (about half the customers, each) and the
    federation file an empty [policy] (the defaults)."""
    rng = random.Random(5)
    text = path.read_text(encoding="utf-8")
    for name in LENDING:
        book = path.parent / f"{name}-loans.csv"
        rows = [f"{pid},{rng.randint(1, 5_000_000) / 100:.2f}" for pid in ids if rng.random() < 0.5]
        book.write_text("id,outstanding_balance\n" + "\n".join(rows) + "\n", encoding="utf-8")
        line = f'data = "{data[name]}"\n'
        text = text.replace(line, f'{line}loans = "{book}"\n')
    path.write_text(text + "\n[policy]\n", encoding="utf-8")


def timed(call: Callable[[str], Any], ids: list[str], requests: int) -> tuple[np.ndarray, int]:
    """Latencies in ms of ``requests`` calls, one applicant each, and the errors."""
    latencies, errors = [], 0
    for i in range(requests):
        started = time.perf_counter()
        try:
            errors += int(not call(ids[i % len(ids)]))
        except Exception:
            errors += 1
        latencies.append((time.perf_counter() - started) * 1000)
    return np.array(latencies), errors


def summary(ms: np.ndarray, errors: int) -> dict[str, Any]:
    return {
        "requests": len(ms),
        "errors": errors,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def trees_run(
    folder: Path, path: Path, ids: list[str], requests: int, small: bool
) -> dict[str, Any]:
    """The same federation trained as trees (the demo's settings), then Score timed alike."""
    fed = load_federation(write_trees_federation(path), allow_small_keys=small)
    print("training a small trees model ...", file=sys.stderr)
    metrics = run_job(fed, folder / "run-trees", resume=False, quiet=True, allow_small_keys=small)
    with scoring_service(
        fed, folder / "run-trees" / "model", folder / "scoring-trees", allow_small_keys=small
    ) as stub:
        for warm in ids[:5]:
            stub.Score(scoring_pb2.ScoreRequest(ids=[warm]), timeout=120)

        def score(pid: str) -> bool:
            reply = stub.Score(scoring_pb2.ScoreRequest(ids=[pid]), timeout=30)
            return not reply.applicants[0].error

        ms, errors = timed(score, ids, requests)
    return {
        **summary(ms, errors),
        "settings": dict(DEMO_TREES),
        "trees_kept": metrics.get("trees_kept"),
        "auc": metrics.get("auc"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument("--requests", type=int, default=300, help="calls per run (default 300)")
    parser.add_argument("--key-bits", type=int, default=2048, help="below 2048 allows small keys")
    parser.add_argument(
        "--no-loans", action="store_true", help="no loans books: no debt check in either run"
    )
    parser.add_argument("--no-trees", action="store_true", help="no trees run")
    args = parser.parse_args()
    small = args.key_bits < 2048
    with tempfile.TemporaryDirectory(prefix="fedcredit-scoring-") as tmp:
        folder = Path(tmp)
        data = write_institutions(folder / "data", 5000, seed=11)
        ids = [line.split(",")[0] for line in data["lender"].read_text().splitlines()[1:]]
        path = write_demo_federation(folder, data, key_bits=args.key_bits, epochs=1)
        if args.no_loans:
            path.write_text(path.read_text(encoding="utf-8") + "\n[policy]\n", encoding="utf-8")
        else:
            add_loans_and_policy(path, data, ids)
        fed = load_federation(path, allow_small_keys=small)
        print("training a small model ...", file=sys.stderr)
        run_job(fed, folder / "run", resume=False, quiet=True, allow_small_keys=small)
        with scoring_service(
            fed, folder / "run" / "model", folder / "scoring", allow_small_keys=small
        ) as stub:
            for warm in ids[:5]:  # Key, DJN tables, channels, the consortium's books.
                stub.Score(scoring_pb2.ScoreRequest(ids=[warm]), timeout=120)
                stub.scoring.Decide(scoring_pb2.DecideRequest(ids=[warm]), timeout=120)

            def score(pid: str) -> bool:
                reply = stub.Score(scoring_pb2.ScoreRequest(ids=[pid]), timeout=30)
                return not reply.applicants[0].error

            def decide(pid: str) -> bool:
                reply = stub.scoring.Decide(scoring_pb2.DecideRequest(ids=[pid]), timeout=30)
                return reply.decisions[0].score > 0

            score_ms, score_errors = timed(score, ids, args.requests)
            decide_ms, decide_errors = timed(decide, ids, args.requests)
        trees = None if args.no_trees else trees_run(folder, path, ids, args.requests, small)
    report = {
        "benchmark": "online_scoring",
        "key_bits": args.key_bits,
        "transport": "grpc mutual TLS on 127.0.0.1",
        "debt_check": not args.no_loans,
        **summary(score_ms, score_errors),
        "decide": summary(decide_ms, decide_errors),
        **({} if trees is None else {"trees_score": trees}),
        "cores": os.cpu_count(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
