"""One epoch's encrypted work on threads and on Ray, and what 1M customers would cost.

    python benchmarks/scale.py --json OUT.json [--key-bits 2048] [--synthetic 100000]

Part 1, the UCI three-institution split at 2048 bits (benchmarks/train.py's in-process epoch:
every party's encryption, ``X.T @ [[d]]``, packing and the coordinator's decryption), three
times in one run, same keys, same weights:

- ``threads_s``: the thread executor with two workers;
- ``ray_2_s``: the Ray executor on a local cluster of two workers (``ray.init(num_cpus=2)``);
- ``ray_1_s``: the same with one worker.

``ray_vs_threads`` = threads_s / ray_2_s (target >= 0.9), ``ray_speedup_2_workers`` =
ray_1_s / ray_2_s (target >= 1.7). Each executor is warmed first (tables built on every worker;
``table_build_s``), and ``ray_task_overhead_ms`` is the median round trip of a no-op task.
``cores_used`` per run is the CPU seconds it got (driver plus Ray workers) over its wall time:
on a machine other jobs share, it shows how many of the two cores the run really had.

Part 2, ``synthetic``: ``--synthetic`` customers (default 100,000) written by
``fedcredit.data.synthetic``, loaded, aligned by the real three-party PSI, and a few training
batches on the Ray executor (two workers); per-row costs measured there give ``million``:
alignment plus one epoch for 1,000,000 customers, extrapolated (both are linear in the rows:
benchmarks/results/psi.json has 176 us per id at 100k and at 1M). Peak memory is this process's
``resource.getrusage`` maximum resident set (all three parties and the coordinator live in it);
memory per party, each in its own process, is ``benchmarks/align_scale.py``'s (the growth of
this process's resident set while the data loads says little: it reuses part 1's memory).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fedcredit.crypto import encrypt_vector, generate_keypair, set_workers
from fedcredit.crypto.executors import ThreadExecutor, set_executor
from fedcredit.protocol.keyholder import KeyHolder
from fedcredit.protocol.logistic.lender import LabelParty
from fedcredit.protocol.logistic.partner import FeatureParty
from fedcredit.protocol.logistic.settings import TrainSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_data import UCI_SPLIT, data_dir, load_uci
from train import fedcredit_epoch  # the same in-process epoch, timed per phase

WORKERS = 2
SETTINGS = TrainSettings(batch_size=4096, test_fraction=0.25, seed=7)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)



def uci_parties(settings: TrainSettings) -> tuple[LabelParty, list[FeatureParty]]:
    """The UCI split's three parties (quality_data's reading of the shared file), aligned."""
    dataset = load_uci(data_dir())
    ids = list(dataset.ids)
    by_name = {party.name: party for party in dataset.parties}

    def matrix(name: str) -> np.ndarray:
        cells = by_name[name].cells
        return np.array([[float(v) for v in cells[c]] for c in UCI_SPLIT[name]]).T

    y = np.asarray(dataset.y)
    lender = LabelParty("lender", ids, matrix("lender"), UCI_SPLIT["lender"], y, settings)
    hosts = [
        FeatureParty(n, ids, matrix(n), UCI_SPLIT[n], settings) for n in ("ecommerce", "payments")
    ]
    common = sorted(ids)
    for party in (lender, *hosts):
        party.align(common)
    return lender, hosts


def ray_worker_cpu_s() -> float:
    """CPU seconds used so far by this machine's Ray worker processes (titled ``ray::...``)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "cmdline").read_bytes().startswith(b"ray::"):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def reset_weights(parties: list[FeatureParty]) -> None:
    for party in parties:
        party.weights = np.random.default_rng(1).normal(scale=0.1, size=party.n_weights)


def warm(public: Any, workers: int) -> float:
    """Build the key's table in every worker (one block per worker): seconds taken."""
    started = time.perf_counter()
    encrypt_vector(public, np.zeros(256 * workers), 20)
    return time.perf_counter() - started


def timed_epoch(
    name: str, lender: LabelParty, hosts: list[FeatureParty], keys: KeyHolder
) -> dict[str, Any]:
    reset_weights([lender, *hosts])
    log(f"{name}: one epoch, load average {os.getloadavg()[0]:.1f} ...")
    load = os.getloadavg()[0]
    cpu0, workers0 = time.process_time(), ray_worker_cpu_s()
    result = fedcredit_epoch(lender, hosts, keys)
    driver, workers = time.process_time() - cpu0, ray_worker_cpu_s() - workers0
    log(f"{name}: {result['seconds']:.1f} s {result['phases']}")
    return {
        "seconds": round(result["seconds"], 2),
        "phases": result["phases"],
        "load_average_at_start": round(load, 2),
        # CPU this run got: the driver (threads, or Ray's driver side) and the Ray workers.
        "driver_cpu_s": round(driver, 2),
        "ray_workers_cpu_s": round(workers, 2),
        "cores_used": round((driver + workers) / result["seconds"], 2),
    }


def uci_part(public: Any, keys: KeyHolder) -> dict[str, Any]:
    from fedcredit.crypto.executors.ray_executor import RayExecutor

    lender, hosts = uci_parties(SETTINGS)
    for party in (lender, *hosts):
        party.public_key = public
    runs: dict[str, Any] = {}
    set_executor(ThreadExecutor())
    table_s = {"threads": round(warm(public, WORKERS), 2)}
    runs["threads"] = timed_epoch("threads, 2 workers", lender, hosts, keys)
    overhead = {}
    for workers in (WORKERS, 1):
        started = time.perf_counter()
        ray_executor = RayExecutor("local", workers=workers)
        start_s = time.perf_counter() - started
        set_executor(ray_executor)
        try:
            table_s[f"ray_{workers}"] = round(warm(public, workers), 2)
            overhead[workers] = ray_executor.round_trip_seconds(200) * 1000
            runs[f"ray_{workers}"] = timed_epoch(f"ray, {workers} worker(s)", lender, hosts, keys)
            runs[f"ray_{workers}"]["cluster_start_s"] = round(start_s, 1)
        finally:
            set_executor(None)
            ray_executor.close()
    threads_s, ray2, ray1 = (runs[k]["seconds"] for k in ("threads", "ray_2", "ray_1"))
    return {
        "rows_train": len(lender.split.train),
        "batches": lender.batches_per_epoch(),
        "threads_s": threads_s,
        "ray_2_s": ray2,
        "ray_1_s": ray1,
        "ray_vs_threads": round(threads_s / ray2, 3),
        "ray_speedup_2_workers": round(ray1 / ray2, 3),
        "ray_task_overhead_ms": {str(k): round(v, 2) for k, v in overhead.items()},
        "table_build_s": table_s,
        "runs": runs,
    }


def synthetic_part(customers: int, public: Any, keys: KeyHolder, batches: int) -> dict[str, Any]:
    from fedcredit.crypto.executors.ray_executor import RayExecutor
    from fedcredit.data.loader import load_party_csv
    from fedcredit.data.synthetic import write_institutions
    from fedcredit.psi import PSIParty, intersect, next_holder

    out: dict[str, Any] = {"customers": customers}
    with tempfile.TemporaryDirectory(prefix="fedcredit-scale-") as tmp:
        started = time.perf_counter()
        paths = write_institutions(Path(tmp), customers, seed=3)
        out["write_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        lender_data = load_party_csv(paths["lender"], id_column="id", label_column="default")
        data = {n: load_party_csv(paths[n], id_column="id") for n in ("ecommerce", "payments")}
        out["load_s"] = round(time.perf_counter() - started, 1)
    sets = [list(lender_data.ids), *(list(d.ids) for d in data.values())]
    log(f"synthetic {customers:,}: three-party PSI on {sum(map(len, sets)):,} ids ...")
    started = time.perf_counter()
    members = [PSIParty(ids, "scale", len(sets)) for ids in sets]
    lists = [m.start() for m in members]
    for hop in range(1, len(sets)):
        lists = [members[next_holder(i, hop, len(sets))].relay(lists[i]) for i in range(len(sets))]
    common_f = intersect([m.finish(p) for m, p in zip(members, lists, strict=True)])
    common = members[0].resolve(common_f).ids
    psi_s = time.perf_counter() - started
    out.update(
        align_s=round(psi_s, 1),
        common=len(common),
        align_us_per_id=round(psi_s / sum(map(len, sets)) * 1e6, 1),
    )
    lender = LabelParty("lender", lender_data.ids, lender_data.X, lender_data.feature_names,
                        lender_data.y, SETTINGS)  # fmt: skip
    hosts = [FeatureParty(n, d.ids, d.X, d.feature_names, SETTINGS) for n, d in data.items()]
    for party in (lender, *hosts):
        party.align(list(common))
        party.public_key = public
    reset_weights([lender, *hosts])
    ray_executor = RayExecutor("local", workers=WORKERS)
    set_executor(ray_executor)
    try:
        warm(public, WORKERS)
        lender.batches_per_epoch = lambda: batches  # type: ignore[method-assign]
        log(f"synthetic {customers:,}: {batches} training batches on Ray ...")
        result = fedcredit_epoch(lender, hosts, keys)
    finally:
        set_executor(None)
        ray_executor.close()
    rows = batches * SETTINGS.batch_size
    out.update(
        rows_train=len(lender.split.train),
        measured_batches=batches,
        epoch_s_per_row=result["seconds"] / rows,
        epoch_s_extrapolated=round(result["seconds"] / rows * len(lender.split.train), 1),
        peak_rss_mib=peak_rss_mib(),
    )
    return out


def million(synthetic: dict[str, Any]) -> dict[str, Any]:
    """1M customers from the per-row costs: PSI is linear in the ids, an epoch in the rows."""
    scale = 1_000_000 / synthetic["customers"]
    align = synthetic["align_s"] * scale
    rows = synthetic["rows_train"] * scale
    epoch = synthetic["epoch_s_per_row"] * rows
    return {
        "customers": 1_000_000,
        "extrapolated": True,
        "align_s": round(align, 0),
        "rows_train": int(rows),
        "epoch_s": round(epoch, 0),
        "align_plus_epoch_min": round((align + epoch) / 60, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--synthetic", type=int, default=100_000)
    parser.add_argument("--synthetic-batches", type=int, default=4)
    args = parser.parse_args()
    if not (data_dir() / "uci_default_credit" / "UCI_Credit_Card.csv").exists():
        log("skipped: shared data not found (set FEDCREDIT_DATA)")
        return 0
    try:
        import ray  # noqa: F401
    except ImportError:
        log("skipped: Ray is not installed (pip install -e '.[ray]')")
        return 0
    set_workers(WORKERS)
    started = time.perf_counter()
    log(f"{args.key_bits}-bit key pair ...")
    public, private = generate_keypair(args.key_bits, allow_small=args.key_bits < 2048)
    keys = KeyHolder(allow_small_keys=args.key_bits < 2048)
    keys.use_keypair("bench", public, private)
    report: dict[str, Any] = {
        "benchmark": "scale",
        "dataset": "uci_three_institutions",
        "key_bits": args.key_bits,
        "batch_size": SETTINGS.batch_size,
        "cores": os.cpu_count(),
        "workers": WORKERS,
    }
    report.update(uci_part(public, keys))
    report["synthetic"] = synthetic_part(args.synthetic, public, keys, args.synthetic_batches)
    report["million"] = million(report["synthetic"])
    report["peak_rss_mib"] = peak_rss_mib()
    report["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
