"""Online scoring under load: many concurrent clients call the lender's Score RPC over mutual TLS,
with the lender's micro-batching off and then on, in the same run.

    python benchmarks/load.py --json OUT.json [--quick] [--clients 50] [--seconds 60]
                              [--key-bits 2048] [--client-processes 0] [--batch-wait-ms 5]

Trains a small model on synthetic institutions (real node processes, one epoch), starts the
scoring nodes as ``fedcredit score`` does (lender, partners and coordinator as separate
processes on 127.0.0.1), then runs ``--clients`` clients for ``--seconds``. Each client has its
own mutual-TLS channel (its own TCP connection) with the lender's operator certificate and calls
Score for one random applicant of the lender's data at a time, in a loop. Every call makes the
partners encrypt their partial scores, the lender mask the sum and the coordinator decrypt one
packed ciphertext. ``--quick``: 10 clients for 10 s on a smaller data set.

Clients are threads of this process unless ``--client-processes P`` spreads them over P
processes. ``client_cpu_share`` in the JSON is the CPU the client side used per second of wall
time: near 1.0 would mean the client's GIL is the limit and processes are needed.

The load runs twice on fresh scoring nodes of the same model: ``unbatched`` (the federation
file's [scoring] ``batch_wait_ms = 0``: every call pays its own partner round and decryption)
and ``batched`` (``--batch-wait-ms``: calls arriving while another batch runs share one).

JSON keys: ``throughput_ratio`` (batched over unbatched requests per second),
``p99_ms_unbatched``, ``p99_ms_batched``, and per mode (``unbatched``, ``batched``):
``requests``, ``errors`` (any gRPC error or applicant error; ``first_errors`` lists a few),
``throughput_per_s``, ``p50_ms``, ``p95_ms``, ``p99_ms``, ``rss_mib_before`` /
``rss_mib_after`` / ``rss_mib_peak`` {node: MiB} (VmRSS of each node process, before the load
once every client is connected and after it), ``rss_growth_mib``, ``client_cpu_share``,
``cpu_s`` and ``cpu_ms_per_request`` {node: ...} (CPU time, user and system, each node process
used over the load window, and that over the requests answered); and
``clients``, ``seconds``, ``key_bits``, ``cores``, ``client_mode``, ``loadavg_before``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from fedcredit.cli.demo import write_demo_federation
from fedcredit.cli.jobs import run_job
from fedcredit.config import load_federation
from fedcredit.data.synthetic import write_institutions
from fedcredit.driver.scoring import scoring_service
from fedcredit.node.transport.client import channel_options
from fedcredit.node.transport.peers import PeerStubs
from fedcredit.node.transport.server import DEFAULT_MAX_MESSAGE_BYTES
from fedcredit.node.transport.tls import load_channel_credentials
from fedcredit.proto.v1 import scoring_pb2

CALL_TIMEOUT_S = 30.0
FIRST_ERRORS = 5
NODES = ("lender", "ecommerce", "payments", "coordinator")
MODES = ("unbatched", "batched")


@dataclass(frozen=True)
class ClientSpec:
    """What a client needs to reach the lender (picklable, for client processes)."""

    address: str
    lender: str
    ca: Path
    cert: Path
    key: Path
    ids: tuple[str, ...]
    start_at: float  # wall clock (time.time) at which every client starts its loop
    seconds: float


def open_lender(spec: ClientSpec) -> grpc.Channel:
    """A channel of its own (local subchannel pool: its own TCP and TLS connection)."""
    credentials = load_channel_credentials(spec.ca, spec.cert, spec.key)
    options = channel_options(spec.lender, DEFAULT_MAX_MESSAGE_BYTES, True)
    options.append(("grpc.use_local_subchannel_pool", 1))
    return grpc.secure_channel(spec.address, credentials, options=options)


def one_client(spec: ClientSpec, seed: int, counter: Any, out: dict[str, Any]) -> None:
    """Warm up, wait for the common start, then call Score until the end of the window."""
    rng = random.Random(seed)
    latencies: list[float] = []
    errors: list[str] = []
    channel = open_lender(spec)
    stub = PeerStubs(channel)
    try:
        # The first call pays the TLS handshake; it is not measured.
        stub.Score(scoring_pb2.ScoreRequest(ids=[spec.ids[0]]), timeout=120.0)
        out["late"] = time.time() > spec.start_at
        time.sleep(max(0.0, spec.start_at - time.time()))
        end = time.perf_counter() + spec.seconds
        while time.perf_counter() < end:
            applicant = rng.choice(spec.ids)
            started = time.perf_counter()
            try:
                reply = stub.Score(
                    scoring_pb2.ScoreRequest(ids=[applicant]), timeout=CALL_TIMEOUT_S
                )
            except grpc.RpcError as exc:
                errors.append(f"{exc.code().name}: {exc.details()}")
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            if len(reply.applicants) != 1:
                errors.append(f"applicant {applicant}: {len(reply.applicants)} answers")
            elif reply.applicants[0].error:
                errors.append(f"applicant {applicant}: {reply.applicants[0].error}")
            with counter.get_lock():
                counter.value += 1
    except grpc.RpcError as exc:
        errors.append(f"warm-up: {exc.code().name}: {exc.details()}")
    finally:
        channel.close()
    out["latencies"], out["errors"] = latencies, errors


def client_group(spec: ClientSpec, clients: int, first_seed: int, counter: Any) -> dict[str, Any]:
    """Run ``clients`` client threads in this process; their latencies, errors and CPU time."""
    outs: list[dict[str, Any]] = [{} for _ in range(clients)]
    threads = [
        threading.Thread(target=one_client, args=(spec, first_seed + i, counter, outs[i]))
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    # CPU of the client side over the load window only (warm-up handshakes excluded).
    time.sleep(max(0.0, spec.start_at - time.time()))
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.join()
    return {
        "latencies": [ms for out in outs for ms in out.get("latencies", [])],
        "errors": [e for out in outs for e in out.get("errors", ["client thread died"])],
        "late": sum(bool(out.get("late")) for out in outs),
        "cpu_s": time.process_time() - cpu_start,
        "wall_s": time.perf_counter() - wall_start,
    }


def _group_process(spec: ClientSpec, clients: int, seed: int, counter: Any, queue: Any) -> None:
    queue.put(client_group(spec, clients, seed, counter))


def rss_mib(pid: int) -> float:
    """Resident memory of a process (VmRSS of /proc/PID/status) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid} has no VmRSS")


def node_pids(run_dir: Path) -> dict[str, int]:
    """The pids of the scoring nodes (LocalNodes writes ports/NAME.pid)."""
    return {
        name: int((run_dir / "ports" / f"{name}.pid").read_text(encoding="utf-8")) for name in NODES
    }


def cpu_s(pid: int) -> float:
    """CPU time (user + system, every thread) a process has used, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sample_cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_s(pid) for name, pid in pids.items()}


def sample_rss(pids: dict[str, int]) -> dict[str, float]:
    return {name: round(rss_mib(pid), 1) for name, pid in pids.items()}


def train_model(folder: Path, customers: int, key_bits: int) -> tuple[Any, list[str]]:
    """A federation trained for one epoch on synthetic data; its lender's applicant ids."""
    small = key_bits < 2048
    data = write_institutions(folder / "data", customers, seed=11)
    fed = load_federation(
        write_demo_federation(folder, data, key_bits=key_bits, epochs=1),
        allow_small_keys=small,
    )
    run_job(fed, folder / "run", resume=False, quiet=True, allow_small_keys=small)
    ids = [line.split(",")[0] for line in data["lender"].read_text().splitlines()[1:]]
    return fed, ids


def progress(text: str) -> None:
    if sys.stderr.isatty():
        print(f"\r{text}\033[K", end="", file=sys.stderr, flush=True)


def drive_load(spec: ClientSpec, clients: int, processes: int, pids: dict[str, int]) -> Any:
    """Start the clients, sample RSS before, during and after; the groups' results."""
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("q", 0)
    results: list[dict[str, Any]] = []
    workers: list[Any] = []
    if processes > 0:
        queue = ctx.Queue()
        shares = [len(part) for part in np.array_split(np.arange(clients), processes)]
        seeds = np.cumsum([0, *shares[:-1]])
        for share, seed in zip(shares, seeds, strict=True):
            worker = ctx.Process(
                target=_group_process, args=(spec, share, int(seed), counter, queue)
            )
            worker.start()
            workers.append(worker)
    else:
        worker = threading.Thread(
            target=lambda: results.append(client_group(spec, clients, 0, counter))
        )
        worker.start()
        workers.append(worker)
    time.sleep(max(0.0, spec.start_at - time.time() - 0.2))
    before = sample_rss(pids)
    cpu_before = sample_cpu(pids)
    peak = dict(before)
    while time.time() < spec.start_at + spec.seconds:
        time.sleep(1.0)
        for name, mib in sample_rss(pids).items():
            peak[name] = max(peak[name], mib)
        elapsed = time.time() - spec.start_at
        progress(f"  {elapsed:4.0f}/{spec.seconds:g} s  {counter.value:,} requests")
    cpu = {n: round(s - cpu_before[n], 2) for n, s in sample_cpu(pids).items()}
    if processes > 0:
        results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    progress("")
    return results, before, sample_rss(pids), peak, cpu


def percentiles(latencies: list[float]) -> dict[str, float]:
    ms = np.array(latencies) if latencies else np.array([float("nan")])
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)} | {
        "max_ms": round(float(ms.max()), 1)
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        f"{report['clients']} clients x {report['seconds']:g} s, {report['key_bits']}-bit keys, "
        f"{report['cores']} cores ({report['client_mode']})",
    ]
    for mode in MODES:
        run = report[mode]
        lines += [
            f"  {mode}: requests {run['requests']:,}   errors {run['errors']}   "
            f"throughput {run['throughput_per_s']:.1f}/s",
            f"    latency ms: p50 {run['p50_ms']}  p95 {run['p95_ms']}  p99 {run['p99_ms']}  "
            f"max {run['max_ms']}",
            f"    {'node':<12}{'RSS before':>12}{'after':>10}{'peak':>10}{'growth':>10}  (MiB)",
        ]
        for name in NODES:
            lines.append(
                f"    {name:<12}{run['rss_mib_before'][name]:>12.1f}"
                f"{run['rss_mib_after'][name]:>10.1f}{run['rss_mib_peak'][name]:>10.1f}"
                f"{run['rss_growth_mib'][name]:>+10.1f}"
            )
        lines.append(
            "    CPU ms per request: "
            + "  ".join(f"{n} {ms}" for n, ms in run["cpu_ms_per_request"].items())
        )
        for error in run["first_errors"]:
            lines.append(f"    error: {error}")
    lines.append(f"  throughput_ratio (batched / unbatched) {report['throughput_ratio']}")
    return "\n".join(lines)


def with_batching(path: Path, wait_ms: float) -> Any:
    """A copy of the federation file whose lender gathers concurrent calls for ``wait_ms``
    (0: every call alone), next to it (its relative paths stay valid)."""
    copy = path.with_name(f"{path.stem}-batch-{wait_ms:g}.toml")
    copy.write_text(
        path.read_text(encoding="utf-8") + f"\n[scoring]\nbatch_wait_ms = {wait_ms:g}\n",
        encoding="utf-8",
    )
    return copy


def measure(
    fed: Any, folder: Path, ids: list[str], run_dir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Start the scoring nodes of ``fed``, run the clients; the figures of this run."""
    small = args.key_bits < 2048
    with scoring_service(fed, folder / "run" / "model", run_dir, allow_small_keys=small) as stub:
        for warm in ids[:3]:  # Coordinator key, DJN tables, channels between the nodes.
            stub.Score(scoring_pb2.ScoreRequest(ids=[warm]), timeout=120.0)
        certs = folder / "run" / "certs"
        lender = fed.lender.name
        spec = ClientSpec(
            address=f"127.0.0.1:{(run_dir / 'ports' / lender).read_text().strip()}",
            lender=lender,
            ca=certs / "ca.pem",
            cert=certs / f"{lender}.pem",
            key=certs / f"{lender}.key",
            ids=tuple(ids),
            start_at=time.time() + 5.0 + 0.1 * args.clients,
            seconds=args.seconds,
        )
        results, before, after, peak, cpu = drive_load(
            spec, args.clients, args.client_processes, node_pids(run_dir)
        )
    latencies = [ms for r in results for ms in r["latencies"]]
    errors = [e for r in results for e in r["errors"]]
    return {
        "batch_wait_ms": fed.scoring.batch_wait_ms,
        "requests": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:FIRST_ERRORS],
        "throughput_per_s": round(len(latencies) / args.seconds, 1),
        **percentiles(latencies),
        "rss_mib_before": before,
        "rss_mib_after": after,
        "rss_mib_peak": peak,
        "rss_growth_mib": {n: round(after[n] - before[n], 1) for n in NODES},
        "client_cpu_share": round(
            sum(r["cpu_s"] for r in results) / max(r["wall_s"] for r in results), 2
        ),
        "late_clients": sum(r["late"] for r in results),
        "cpu_s": cpu,
        "cpu_ms_per_request": {
            n: round(1000 * s / max(1, len(latencies)), 2) for n, s in cpu.items()
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument("--quick", action="store_true", help="10 clients for 10 s, less data")
    parser.add_argument("--clients", type=int, default=None, help="default 50 (quick: 10)")
    parser.add_argument(
        "--seconds", type=float, default=None, help="per mode; default 60 (quick: 10)"
    )
    parser.add_argument("--key-bits", type=int, default=2048, help="below 2048 allows small keys")
    parser.add_argument("--customers", type=int, default=None, help="default 5000 (quick: 2000)")
    parser.add_argument(
        "--client-processes", type=int, default=0, help="spread clients over P processes"
    )
    parser.add_argument(
        "--batch-wait-ms", type=float, default=5.0, help="the batched mode's gathering window"
    )
    args = parser.parse_args()
    args.clients = args.clients or (10 if args.quick else 50)
    args.seconds = args.seconds or (10.0 if args.quick else 60.0)
    customers = args.customers or (2000 if args.quick else 5000)
    small = args.key_bits < 2048
    loadavg = [round(v, 2) for v in os.getloadavg()]
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="fedcredit-load-") as tmp:
        folder = Path(tmp)
        print(f"training a small model ({customers:,} customers) ...", file=sys.stderr)
        fed, ids = train_model(folder, customers, args.key_bits)
        for mode, wait_ms in (("unbatched", 0.0), ("batched", args.batch_wait_ms)):
            mode_fed = load_federation(with_batching(fed.path, wait_ms), allow_small_keys=small)
            print(f"{mode}: {args.clients} clients for {args.seconds:g} s ...", file=sys.stderr)
            runs[mode] = measure(mode_fed, folder, ids, folder / f"scoring-{mode}", args)
    unbatched = runs["unbatched"]["throughput_per_s"]
    report: dict[str, Any] = {
        "benchmark": "online_scoring_load",
        "transport": "grpc mutual TLS on 127.0.0.1, one channel per client",
        "clients": args.clients,
        "seconds": args.seconds,
        "throughput_ratio": round(runs["batched"]["throughput_per_s"] / unbatched, 2)
        if unbatched
        else None,
        "p99_ms_unbatched": runs["unbatched"]["p99_ms"],
        "p99_ms_batched": runs["batched"]["p99_ms"],
        **runs,
        "key_bits": args.key_bits,
        "cores": os.cpu_count(),
        "client_mode": (
            f"{args.client_processes} processes" if args.client_processes else "threads"
        ),
        "customers": customers,
        "loadavg_before": loadavg,
    }
    print(table(report), file=sys.stderr)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 1 if any(run["errors"] for run in runs.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
