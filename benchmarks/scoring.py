"""Online scoring latency: one applicant per call to the lender's Score RPC over mutual TLS.

    python benchmarks/scoring.py --json OUT.json [--requests 300] [--key-bits 2048]

Trains a small model on synthetic institutions (real nodes, one epoch), starts the scoring
nodes, then calls Score for one applicant at a time from the lender's operator: each call makes
the partners encrypt their partial scores, the lender mask them, the coordinator decrypt one
packed ciphertext. Target: p99 under 50 ms on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fedcredit.cli.demo import write_demo_federation
from fedcredit.cli.jobs import run_job
from fedcredit.config import load_federation
from fedcredit.data.synthetic import write_institutions
from fedcredit.driver.scoring import scoring_service
from fedcredit.proto.v1 import scoring_pb2


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--key-bits", type=int, default=2048)
    args = parser.parse_args()
    small = args.key_bits < 2048
    with tempfile.TemporaryDirectory(prefix="fedcredit-scoring-") as tmp:
        folder = Path(tmp)
        data = write_institutions(folder / "data", 5000, seed=11)
        fed = load_federation(
            write_demo_federation(folder, data, key_bits=args.key_bits, epochs=1),
            allow_small_keys=small,
        )
        print("training a small model ...", file=sys.stderr)
        run_job(fed, folder / "run", resume=False, quiet=True, allow_small_keys=small)
        ids = [line.split(",")[0] for line in data["lender"].read_text().splitlines()[1:]]
        latencies = []
        errors = 0
        with scoring_service(
            fed, folder / "run" / "model", folder / "scoring", allow_small_keys=small
        ) as stub:
            for warm in ids[:5]:
                stub.Score(scoring_pb2.ScoreRequest(ids=[warm]), timeout=30)
            for i in range(args.requests):
                started = time.perf_counter()
                try:
                    reply = stub.Score(
                        scoring_pb2.ScoreRequest(ids=[ids[i % len(ids)]]), timeout=30
                    )
                    errors += int(bool(reply.applicants[0].error))
                except Exception:
                    errors += 1
                latencies.append((time.perf_counter() - started) * 1000)
    ms = np.array(latencies)
    report = {
        "benchmark": "online_scoring",
        "key_bits": args.key_bits,
        "transport": "grpc mutual TLS on 127.0.0.1",
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "cores": os.cpu_count(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
