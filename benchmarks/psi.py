"""Ring ECDH-PSI on Curve25519: through party nodes, and every party's work in one process.

    python benchmarks/psi.py --json OUT.json [--quick] [--max-seconds 600] [--repeat 3]

Full run: two parties with 100,000 ids each, then 1,000,000 each (or, when the
100k run predicts that 1M would exceed ``--max-seconds``, the largest multiple of
100,000 that fits); then three parties with 100,000 each. ``--quick``: 1,000 and
10,000 ids, two and three parties. 80 % of each party's ids are shared.

All parties run in this process and share its cores, so ``seconds`` is the sum of
every party's work plus the coordinator's on one machine (deployed, each party
computes on its own machine in parallel). JSON ``runs``: ``n`` (ids per party),
``parties``, ``seconds`` (wall), ``cpu_seconds`` (all threads), ``per_id_us``
(``seconds / n``), ``intersection``, ``phases`` (wall seconds per step). The load
average at start of each run is recorded: on a busy machine the wall times mean
little and ``cpu_seconds`` is the steadier figure. Progress goes to stderr.

``node_runs``: the two-party alignment as a real job runs it: two party nodes as
separate processes and the coordinator, over mutual TLS on 127.0.0.1, driven by
``run_job(..., align_only=True)``; ``seconds`` is the driver's alignment phase
(node start, data loading and key generation excluded), ``phases`` its steps.
The two parties still share this machine's two cores. ``--repeat`` runs it that
many times; ``median_seconds`` summarizes them.

``scalar_mult_us``: one thread's microseconds per X25519 call (libsodium through
PyNaCl) and per ``crypto_scalarmult_ristretto255`` (libsodium through rbcl, the
group of version 1), measured on the same machine in this run.

``--executor threads processes ray``: the executors (``[[party]] executor``) the in-process
runs use, each in turn (``executor`` in each run; ``ray`` is a local cluster of every core).
``--kernels N``: instead of the runs, the two PSI kernels alone on N ids on each executor:
``kernels[executor]`` has ``hash_s_per_100k`` (``hash_points``), ``blind_s_per_100k``
(``blind`` of those points, checked), ``hash_and_blind_s_per_100k`` (one party's own list:
``hash_and_blind``), each the best of ``--repeat``, and ``*_node_cpu_s_per_100k``, the CPU
of this process (every thread) in each: on a shared machine the steadier figure, and on the
``processes`` and ``ray`` executors the part that does not spread over the workers. Every
executor's points are checked to be the threads' to the bit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedcredit.psi import PSIKey, PSIParty, blind, hash_ids, intersect, next_holder, worker_count

SHARED = 0.8
TARGET_SECONDS = 15.0


def log(message: str) -> None:
    print(f"[psi] {message}", file=sys.stderr, flush=True)


def id_sets(n: int, parties: int, seed: int) -> list[list[str]]:
    """``parties`` sets of ``n`` ids; ``SHARED * n`` of them common to all, each shuffled."""
    rng = random.Random(seed)
    shared = int(SHARED * n)
    own = n - shared
    sets = []
    for party in range(parties):
        start = shared + party * own
        numbers = [*range(shared), *range(start, start + own)]
        rng.shuffle(numbers)
        sets.append([f"C{number:08d}" for number in numbers])
    return sets


def run(n: int, parties: int, seed: int = 1) -> dict[str, Any]:
    """One timed run of the same steps as ``run_local_psi``, phase by phase."""
    sets = id_sets(n, parties, seed)
    load = os.getloadavg()[0]
    phases: dict[str, float] = {}
    wall0, cpu0 = time.perf_counter(), time.process_time()

    def mark(name: str, since: float) -> float:
        now = time.perf_counter()
        phases[name] = round(now - since, 3)
        log(f"  n={n} parties={parties}: {name} {now - since:.2f} s")
        return now

    members = [PSIParty(ids, f"bench-{n}-{parties}", parties) for ids in sets]
    lists = [member.start() for member in members]
    step = mark("hash_and_blind", wall0)
    for hop in range(1, parties):
        lists = [members[next_holder(i, hop, parties)].relay(lists[i]) for i in range(parties)]
    step = mark("relay", step)
    f_sets = [member.finish(points) for member, points in zip(members, lists, strict=True)]
    step = mark("finish", step)
    common = intersect(f_sets)
    step = mark("intersect", step)
    results = [member.resolve(common) for member in members]
    mark("resolve", step)
    seconds = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0

    expected = int(SHARED * n)
    if any(result.intersection_size != expected for result in results):
        raise SystemExit(f"wrong intersection: {results[0].intersection_size} != {expected}")
    if any(result.ids != results[0].ids for result in results):
        raise SystemExit("parties disagree on the order of the common ids")
    return {
        "n": n,
        "parties": parties,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "per_id_us": round(seconds / n * 1e6, 2),
        "intersection": expected,
        "phases": phases,
        "load_average_at_start": round(load, 2),
    }


def scalar_mult_us(count: int = 3000) -> dict[str, float]:
    """Per-call microseconds, one thread: X25519 against ristretto255, same machine, same run."""
    import hashlib

    import rbcl

    points = hash_ids([f"S{i}" for i in range(count)], "bench-mult")
    key = PSIKey.generate()
    started = time.perf_counter()
    blind(points, key, workers=1, checked=True)
    x25519 = (time.perf_counter() - started) / count * 1e6
    scalar = rbcl.crypto_core_ristretto255_scalar_random()
    ristretto = [
        rbcl.crypto_core_ristretto255_from_hash(hashlib.sha512(p).digest()) for p in points
    ]
    started = time.perf_counter()
    for point in ristretto:
        rbcl.crypto_scalarmult_ristretto255(scalar, point)
    other = (time.perf_counter() - started) / count * 1e6
    return {
        "x25519": round(x25519, 1),
        "ristretto255": round(other, 1),
        "ratio": round(other / x25519, 2),
    }


FEDERATION = """[federation]
name = "psi-bench"
key_bits = 2048
[coordinator]
address = "127.0.0.1:50050"
[[party]]
name = "lender"
role = "lending"
address = "127.0.0.1:50051"
data = "lender.csv"
id_column = "ID"
label_column = "y"
[[party]]
name = "partner"
role = "ecommerce"
address = "127.0.0.1:50052"
data = "partner.csv"
id_column = "ID"
[train]
epochs = 1
test_fraction = 0.25
seed = 7
"""


def node_run(n: int, seed: int = 1) -> dict[str, Any]:
    """Two party processes and a coordinator over mTLS: the alignment phase of a real job."""
    import tempfile

    from fedcredit.cli.jobs import run_job
    from fedcredit.config import load_federation

    lender_ids, partner_ids = id_sets(n, 2, seed)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="fedcredit-psi-") as tmp:
        folder = Path(tmp)
        with open(folder / "lender.csv", "w", encoding="utf-8") as out:
            out.write("ID,x,y\n")
            out.writelines(f"{i},{rng.random():.4f},{rng.randint(0, 1)}\n" for i in lender_ids)
        with open(folder / "partner.csv", "w", encoding="utf-8") as out:
            out.write("ID,z\n")
            out.writelines(f"{i},{rng.random():.4f}\n" for i in partner_ids)
        (folder / "federation.toml").write_text(FEDERATION, encoding="utf-8")
        load = os.getloadavg()[0]
        fed = load_federation(folder / "federation.toml")
        aligned = run_job(fed, folder / "run", resume=False, quiet=True, align_only=True)
    if aligned["common"] != int(SHARED * n):
        raise SystemExit(f"wrong intersection through nodes: {aligned['common']}")
    seconds = float(aligned["align_seconds"])
    log(f"  nodes n={n}: {seconds:.2f} s {aligned['align_phases']}")
    return {
        "n": n,
        "parties": 2,
        "seconds": round(seconds, 3),
        "per_id_us": round(seconds / n * 1e6, 2),
        "intersection": aligned["common"],
        "phases": aligned["align_phases"],
        "load_average_at_start": round(load, 2),
    }


def kernels(executors: list[str], n: int, repeat: int) -> dict[str, dict[str, float]]:
    """Seconds per 100,000 ids of hashing and blinding on each executor (best of ``repeat``)."""
    from fedcredit.crypto.executors import use_executor
    from fedcredit.psi import hash_and_blind, hash_points

    ids = [f"K{i:09d}" for i in range(n)]
    key = PSIKey.generate()
    out: dict[str, dict[str, float]] = {}
    reference: list[bytes] | None = None
    for name in executors:
        use_executor(name, "local" if name == "ray" else None)
        walls: dict[str, list[float]] = {"hash": [], "blind": [], "hash_and_blind": []}
        cpus: dict[str, list[float]] = {kind: [] for kind in walls}
        got: dict[str, bytes] = {}
        steps: dict[str, Any] = {
            "hash": lambda: hash_points(ids, "bench-kernels"),
            "blind": lambda held=got: blind(held["hash"], key),
            "hash_and_blind": lambda: hash_and_blind(ids, "bench-kernels", key),
        }
        for _ in range(max(1, repeat)):
            for kind, step in steps.items():
                wall, cpu = time.perf_counter(), time.process_time()
                got[kind] = step()
                walls[kind].append(time.perf_counter() - wall)
                cpus[kind].append(time.process_time() - cpu)
        points = [got[kind].tobytes() for kind in steps]
        if reference is None:
            reference = points
        elif points != reference:
            raise SystemExit(f"executor {name!r}: points differ from {executors[0]!r}'s")
        per = 100_000 / n
        out[name] = {f"{kind}_s_per_100k": round(min(v) * per, 3) for kind, v in walls.items()}
        # The node process's own CPU (all its threads): what does not spread over the workers.
        out[name] |= {f"{kind}_node_cpu_s_per_100k": round(min(v) * per, 3)
                      for kind, v in cpus.items()}  # fmt: skip
        out[name]["load_average_after"] = round(os.getloadavg()[0], 2)
        log(f"kernels on {name}, n={n}: {out[name]}")
    use_executor("threads")
    return out


def largest_fitting(per_id_seconds: float, wanted: int, budget: float) -> int:
    """``wanted``, or the largest multiple of 100,000 predicted to run within ``budget``."""
    # 20 % headroom: sorting and dictionaries grow a little faster than linearly.
    if per_id_seconds * wanted * 1.2 <= budget:
        return wanted
    return max(100_000, int(budget / (per_id_seconds * 1.2)) // 100_000 * 100_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, type=Path, help="where to write the results")
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="budget of the big run")
    parser.add_argument("--repeat", type=int, default=3, help="runs through nodes")
    parser.add_argument(
        "--executor",
        nargs="+",
        choices=["threads", "processes", "ray"],
        default=["threads"],
        help="the executors of the in-process runs (or of --kernels), each in turn",
    )
    parser.add_argument("--kernels", type=int, default=0, help="only hash and blind N ids")
    args = parser.parse_args()
    if args.kernels:
        report_kernels = {
            "benchmark": "psi-kernels",
            "n": args.kernels,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": round(os.getloadavg()[0], 2),
            "kernels": kernels(args.executor, args.kernels, args.repeat),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report_kernels, indent=2) + "\n", encoding="utf-8")
        log(f"wrote {args.json}")
        return

    runs: list[dict[str, Any]] = []
    # n = 0: the largest size the budget allows, predicted from the run before.
    quick = [(1_000, 2), (10_000, 2), (10_000, 3)]
    plan = quick if args.quick else [(100_000, 2), (0, 2), (100_000, 3)]
    from fedcredit.crypto.executors import use_executor

    for executor in args.executor:
        use_executor(executor, "local" if executor == "ray" else None)
        for n, parties in plan:
            if n == 0:
                per_id = runs[-1]["seconds"] / runs[-1]["n"]
                n = largest_fitting(per_id, 1_000_000, args.max_seconds)
            log(f"run n={n} parties={parties} executor={executor}")
            runs.append(run(n, parties) | {"executor": executor})
    use_executor("threads")
    for entry in runs:
        log(f"n={entry['n']} parties={entry['parties']}: {entry['seconds']} s wall")
    node_n = 10_000 if args.quick else 100_000
    node_runs = []
    for attempt in range(max(0, args.repeat)):
        log(f"run through nodes n={node_n} parties=2 ({attempt + 1} of {args.repeat})")
        node_runs.append(node_run(node_n))
    mults = scalar_mult_us()
    log(f"scalar multiplication, one thread: {mults}")

    median = statistics.median(r["seconds"] for r in node_runs) if node_runs else None
    first = next((r["seconds"] for r in runs if r["n"] == 100_000 and r["parties"] == 2), None)
    report = {
        "benchmark": "psi",
        "quick": args.quick,
        "workers": worker_count(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "runs": runs,
        "node_runs": node_runs,
        "node_median_seconds": median,
        "scalar_mult_us": mults,
        "target": {
            "what": "100k x 100k ids in at most 15 s on this machine",
            "seconds": TARGET_SECONDS,
            "through_nodes_median": median,
            "through_nodes_met": None if median is None else median <= TARGET_SECONDS,
            "in_one_process": first,
            "in_one_process_met": None if first is None else first <= TARGET_SECONDS,
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
