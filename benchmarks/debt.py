"""Loan-stacking benchmark: five lenders over real gRPC with mutual TLS on 127.0.0.1.

    python benchmarks/debt.py --json OUT.json [--quick]

Full run: five lenders with 100,000 customers each, drawn from 250,000 people (so books
overlap), 2048-bit Paillier keys; one batch of 10,000 applicants; 200 single-applicant
queries. ``--quick``: 2,000 customers per lender, a batch of 500, 30 single queries.
``--customers`` and ``--batch`` override the sizes (the people drawn from: 2.5 times the
customers per lender).
All nodes run in this process (one gRPC server each, ephemeral ports), so the figures include
the nodes competing for the same cores.

JSON keys: ``upload_s`` (mean one-off upload per lender: tagging, encryption, streaming),
``upload_s_per_lender``, ``batch_s``, ``batch_cpu_s`` (CPU seconds of this process during the
batch), ``batch_size``, ``single_p50_ms``, ``single_p99_ms``,
``bytes_per_query`` (single applicant, every message of the query: querier <-> lenders,
querier <-> coordinator, coordinator <-> lenders), ``bytes_per_batch``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fedcredit.driver.debt import COORDINATOR, LocalConsortium
from fedcredit.node.transport.tls import init_certs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument(
        "--customers", type=int, default=None, help="customers per lender (overrides the default)"
    )
    parser.add_argument("--batch", type=int, default=None, help="batch size (overrides)")
    args = parser.parse_args()
    customers, universe, batch, singles = (
        (2_000, 5_000, 500, 30) if args.quick else (100_000, 250_000, 10_000, 200)
    )
    if args.batch is not None:
        batch = args.batch
    if args.customers is not None:
        customers = args.customers
    if args.customers is not None or args.batch is not None:
        universe = max(customers * 5 // 2, batch)
    rng = random.Random(1)
    names = [f"lender-{i}" for i in range(1, 6)]
    people = [f"{i:012d}" for i in range(universe)]
    books = {n: {p: rng.randint(100, 10**8) for p in rng.sample(people, customers)} for n in names}
    figures: dict[str, object] = {"lenders": len(names), "customers_per_lender": customers}
    with tempfile.TemporaryDirectory() as tmp:
        certs = init_certs(tmp, [*names, COORDINATOR])
        with LocalConsortium(names, certs, key_bits=args.key_bits) as consortium:
            uploads = []
            for name in names:
                start = time.perf_counter()
                consortium.upload(name, books[name])
                uploads.append(time.perf_counter() - start)
                print(f"uploaded {name} in {uploads[-1]:.1f}s", file=sys.stderr)
            querier = consortium.querier(names[0])
            applicants = rng.sample(people, batch)
            start, cpu = time.perf_counter(), time.process_time()
            querier.ask(applicants)
            figures["batch_s"] = time.perf_counter() - start
            # CPU of the whole process (every node), less sensitive to a shared machine's load.
            figures["batch_cpu_s"] = time.process_time() - cpu
            figures["bytes_per_batch"] = (
                querier.stats["bytes_querier"] + consortium.coordinator_servicer.last_lender_bytes
            )
            querier.ask(applicants[:1])  # Warm the channels of single queries.
            latencies = []
            for pid in rng.sample(people, singles):
                start = time.perf_counter()
                querier.ask([pid])
                latencies.append((time.perf_counter() - start) * 1000)
            figures["bytes_per_query"] = (
                querier.stats["bytes_querier"] + consortium.coordinator_servicer.last_lender_bytes
            )
    figures.update(
        upload_s=statistics.mean(uploads),
        upload_s_per_lender=uploads,
        batch_size=batch,
        single_p50_ms=percentile(latencies, 0.5),
        single_p99_ms=percentile(latencies, 0.99),
        single_queries=singles,
        key_bits=args.key_bits,
        quick=args.quick,
    )
    args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
