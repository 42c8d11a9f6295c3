"""A whole job over a network that is not loopback: one network namespace per node.

    python benchmarks/wan.py --json OUT.json [--rtt-ms 50] [--mbit 100] [--rows 4000]
                             [--epochs 2] [--batch 1000] [--key-bits 1024] [--requests 300]

As root. Writes synthetic institutions (lender, e-commerce, payments), makes the certificates
the way a deployment does (``fedcredit certs ca``, then ``certs request`` per node and
``certs sign`` at the CA holder, every fingerprint pinned in the federation file), and writes a
federation file whose addresses are the nodes' own private addresses (10.231.0.x, which exist
only inside the namespaces this script makes: ``benchmarks/netns.py``). Then, twice:

1. **loopback**: every node in one namespace, every address on its ``lo``, no delay, no limit;
2. **wan**: each node in its own namespace behind a veth pair, ``tbf`` at ``--mbit`` and
   ``--rtt-ms`` of round trip (netem where the kernel has it, else a delaying TCP relay).

Each time it starts every node (``ip netns exec NS python -m fedcredit node ...``, each with
its own certificate folder), runs ``fedcredit run`` (alignment, binning, training, evaluation)
from the coordinator's namespace, restarts the partners with their saved model parts
(``--model``), runs ``fedcredit score`` on a batch from the lender's namespace (which starts
the scoring job at the coordinator) and then ``--requests`` one-applicant Score calls from the
lender operator's side (its namespace, its certificate), sequentially.

Bytes per phase (WAN run): the relays' cumulative counters (or, with netem, none: only the
veth totals) are sampled every 50 ms with timestamps; the phases start at the wall-clock time
the driver printed its first progress line of each (``connect`` from the driver's start,
``keys`` "coordinator makes a key", ``align``, ``binning``, ``train`` binning's last line "kept N of M columns by IV" (the schedule, then the epochs),
``evaluate`` "scoring the held-out customers", to the driver's exit; then ``scoring``).
Because a line is printed when a phase *starts*, the split is exact to within 50 ms.

JSON keys: ``rtt_ms``, ``mbit``, ``epoch_s_loopback``, ``epoch_s_wan``, ``ratio`` (WAN over
loopback), ``phase_s_loopback`` / ``phase_s_wan`` (metrics.json's seconds per phase),
``bytes_per_phase`` {phase: {total, NODE_in, NODE_out}}, ``veth_bytes`` (with headers, whole
WAN run), ``scoring_loopback`` / ``scoring_wan`` {requests, errors, p50_ms, p99_ms},
``same_model`` (the two runs' saved weights agree), ``errors`` (driver failures plus scoring
errors: 0 when deadlines, keepalive and retries held), ``node_log_warnings``, ``delay_mode``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.netns import Network, split_by_phase  # noqa: E402

NODES = ("coordinator", "lender", "ecommerce", "payments")
PARTIES = NODES[1:]
PORTS = {name: 50050 + i for i, name in enumerate(NODES)}
LOADAVG = [round(v, 2) for v in os.getloadavg()]
PORT_WAIT_S = 120.0
DRIVER_TIMEOUT_S = 1800.0
PHASE_LINES = (  # (phase, the driver's progress line that starts it; the file has [binning])
    ("keys", re.compile(r"coordinator makes a \d+-bit key")),
    ("align", re.compile(r"private ID alignment")),
    ("binning", re.compile(r"federated binning")),
    ("train", re.compile(r"kept \d+ of \d+ columns by IV")),  # binning's last line
    ("evaluate", re.compile(r"scoring the held-out customers")),
)
EPOCH_LINE = re.compile(r"^\s*epoch (\d+)/(\d+).*?, ([0-9.]+) s(?:,|$)")


def env() -> dict[str, str]:
    return dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )


def fedcredit(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "fedcredit", *args],
        capture_output=True, text=True, timeout=timeout, env=env(),
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"fedcredit {' '.join(args)}: {result.stderr.strip()}")
    return result


# -- the federation: data, certificates, file -------------------------------------------------
@dataclass
class Federation:
    folder: Path
    path: Path  # the nodes' and the driver's file ([tls] cert_dir = the coordinator's folder)
    scoring_path: Path  # the same, [tls] naming the lender operator's folder
    lender_ids: list[str]

    def certs(self, name: str) -> Path:
        return self.folder / "certs" / name


def make_certs(folder: Path) -> dict[str, str]:
    """As a deployment: a CA, then each node's own key and request, signed at the CA holder."""
    ca = folder / "ca"
    fedcredit("certs", "ca", "--out", str(ca))
    pins = {}
    for name in NODES:
        mine = folder / "certs" / name
        fedcredit("certs", "request", "--party", name, "--out", str(mine))
        signed = fedcredit(
            "certs", "sign", str(mine / f"{name}.csr"), "--ca-dir", str(ca),
            "--out", str(mine / f"{name}.pem"),
        )  # fmt: skip
        match = re.search(r"SHA-256 ([0-9a-f]{64})", signed.stdout)
        if match is None:
            raise RuntimeError(f"certs sign printed no SHA-256: {signed.stdout}")
        pins[name] = match.group(1)
    for name in NODES:  # every node gets the CA and every node's (public) certificate
        mine = folder / "certs" / name
        shutil.copy(ca / "ca.pem", mine / "ca.pem")
        for peer in NODES:
            if peer != name:
                shutil.copy(folder / "certs" / peer / f"{peer}.pem", mine / f"{peer}.pem")
    # `fedcredit score` acts as the coordinator's operator (it starts the scoring job) and as
    # the lender's (it reads the scores): its folder holds both keys.
    operator = folder / "certs" / "lender-operator"
    shutil.copytree(folder / "certs" / "lender", operator)
    for suffix in (".pem", ".key"):
        shutil.copy2(folder / "certs" / "coordinator" / f"coordinator{suffix}", operator)
    return pins


def federation_text(
    data: dict[str, Path], pins: dict[str, str], addresses: dict[str, str], cert_dir: str, *,
    epochs: int, batch: int, key_bits: int, seed: int,
) -> str:  # fmt: skip
    roles = {"lender": "lending", "ecommerce": "ecommerce", "payments": "payments"}
    parts = [
        f'[federation]\nname = "wan"\nkey_bits = {key_bits}\n',
        f'[coordinator]\naddress = "{addresses["coordinator"]}"\n'
        f'cert_sha256 = "{pins["coordinator"]}"\n',
    ]
    for name in PARTIES:
        label = 'label_column = "default"\n' if name == "lender" else ""
        parts.append(
            f'[[party]]\nname = "{name}"\nrole = "{roles[name]}"\n'
            f'address = "{addresses[name]}"\ndata = "{data[name]}"\nid_column = "id"\n{label}'
            f'cert_sha256 = "{pins[name]}"\n'
        )
    parts.append(
        f"[train]\nepochs = {epochs}\nbatch_size = {batch}\nl2 = 0.01\ntest_fraction = 0.25\n"
        f"validation_fraction = 0.1\nearly_stopping_rounds = 0\nseed = {seed}\n"
    )
    # Binning noise is fresh every run; without it two runs of one job give one model.
    parts.append("[binning]\nnoise_epsilon = 0.0\n")
    parts.append(f'[tls]\ncert_dir = "{cert_dir}"\n')
    return "\n".join(parts)


def prepare(folder: Path, *, rows: int, epochs: int, batch: int, key_bits: int, seed: int,
            addresses: dict[str, str]) -> Federation:  # fmt: skip
    from fedcredit.data.synthetic import write_institutions

    data = write_institutions(folder / "data", rows, seed=5)
    pins = make_certs(folder)
    common = {"epochs": epochs, "batch": batch, "key_bits": key_bits, "seed": seed}
    path = folder / "federation.toml"
    path.write_text(federation_text(data, pins, addresses, "certs/coordinator", **common))
    scoring = folder / "federation-lender-operator.toml"
    scoring.write_text(federation_text(data, pins, addresses, "certs/lender-operator", **common))
    with open(data["lender"], newline="", encoding="utf-8") as handle:
        ids = [row["id"] for row in csv.DictReader(handle)]
    return Federation(folder, path, scoring, ids)


# -- one run over one network -----------------------------------------------------------------
@dataclass
class RunResult:
    metrics: dict[str, Any]
    lines: list[tuple[float, str]]
    started: float
    ended: float
    out: Path
    homes: dict[str, Path]


def start_nodes(net: Network, fed: Federation, label: str, *, model: bool) -> dict[str, Any]:
    """Every node in its namespace (own certificates, own home); relays in front in relay mode."""
    run = fed.folder / label
    processes = {}
    for name in NODES:
        home = run / "home" / name
        home.mkdir(parents=True, exist_ok=True)
        port_file = run / "ports" / name
        port_file.parent.mkdir(parents=True, exist_ok=True)
        port_file.unlink(missing_ok=True)
        argv = [
            sys.executable, "-m", "fedcredit", "node", "--federation", str(fed.path),
            "--party", name, "--listen", net.node_listen(name, PORTS[name]),
            "--port-file", str(port_file), "--state-dir", str(home),
            "--certs", str(fed.certs(name)), "--allow-small-keys",
        ]  # fmt: skip
        if model and name != "coordinator":
            argv += ["--model", str(home / "model")]
        processes[name] = net.popen(name, argv, log=run / "logs" / f"{name}.log", env=env())
    deadline = time.monotonic() + PORT_WAIT_S
    for name in NODES:
        port_file = run / "ports" / name
        while not port_file.exists():
            if processes[name].poll() is not None or time.monotonic() > deadline:
                log = (run / "logs" / f"{name}.log").read_text(errors="replace")
                raise RuntimeError(f"node {name} did not start:\n{log[-2000:]}")
            time.sleep(0.05)
        if name not in net.relays:
            net.start_relay(name, PORTS[name])
    return processes


def run_driver(net: Network, fed: Federation, label: str) -> RunResult:
    """`fedcredit run` from the coordinator's namespace; its progress lines, timestamped."""
    out = fed.folder / label / "out"
    argv = [sys.executable, "-m", "fedcredit", "run", str(fed.path), "--out", str(out),
            "--allow-small-keys"]  # fmt: skip
    started = time.time()
    driver = net.popen(
        "coordinator", argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env()
    )
    lines: list[tuple[float, str]] = []
    stdout: list[bytes] = []
    reader = threading.Thread(target=lambda: stdout.append(driver.stdout.read()), daemon=True)
    reader.start()
    assert driver.stderr is not None
    for raw in iter(driver.stderr.readline, b""):
        text = raw.decode(errors="replace").rstrip()
        for piece in text.split("\r"):
            if piece.strip():
                lines.append((time.time(), piece.replace("\x1b[K", "")))
    driver.wait(timeout=DRIVER_TIMEOUT_S)
    reader.join(timeout=10)
    ended = time.time()
    net.processes.remove(driver)
    if driver.returncode != 0:
        tail = "\n".join(line for _, line in lines[-15:])
        raise RuntimeError(f"fedcredit run over {label} failed ({driver.returncode}):\n{tail}")
    metrics = json.loads((out / "metrics.json").read_text())
    (out.parent / "driver.log").write_text("".join(f"{t:.3f} {line}\n" for t, line in lines))
    homes = {name: fed.folder / label / "home" / name for name in NODES}
    return RunResult(metrics, lines, started, ended, out, homes)


def phase_boundaries(result: RunResult) -> list[tuple[str, float]]:
    """(phase, start): the driver's start, then the first progress line of each phase."""
    bounds = [("connect", result.started)]
    seen = {"connect"}
    for when, line in result.lines:
        for phase, pattern in PHASE_LINES:
            if phase not in seen and pattern.search(line):
                # Phases only move forward: a later phase's line closes the earlier ones.
                order = [p for p, _ in PHASE_LINES]
                if bounds[-1][0] in order and order.index(phase) < order.index(bounds[-1][0]):
                    continue
                bounds.append((phase, when))
                seen.add(phase)
                break
    return bounds


def epoch_seconds(result: RunResult) -> float:
    """Mean seconds per epoch from the driver's "epoch k/E ..., X s" lines."""
    seconds = [float(m.group(3)) for _, line in result.lines if (m := EPOCH_LINE.match(line))]
    if seconds:
        return sum(seconds) / len(seconds)
    phases = result.metrics.get("seconds_per_phase", {})
    return float(phases["train"]) / max(1, int(result.metrics["epochs"]))


def model_weights(result: RunResult) -> dict[str, list[float]]:
    return {
        p: json.loads((result.homes[p] / "model" / f"{p}.json").read_text())["weights"]
        for p in PARTIES
    }


def same_model(a: dict[str, list[float]], b: dict[str, list[float]], tol: float = 1e-9) -> bool:
    return all(
        len(a[p]) == len(b[p]) and all(abs(x - y) <= tol for x, y in zip(a[p], b[p], strict=True))
        for p in a
    )


def log_warnings(fed: Federation, label: str) -> list[str]:
    found = []
    for log in sorted((fed.folder / label / "logs").glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if re.search(r"WARNING|ERROR|Traceback|retry|UNAVAILABLE|DEADLINE", line):
                found.append(f"{log.stem}: {line.strip()}")
    return found


def score(net: Network, fed: Federation, label: str, processes: dict[str, Any],
          requests: int, batch_ids: int) -> dict[str, Any]:  # fmt: skip
    """Restart the partners with their model; a batch, then one-applicant Score calls."""
    for name in PARTIES:
        net.stop(processes[name])
        (fed.folder / label / "ports" / name).unlink(missing_ok=True)
    # Their relays stay up; the nodes come back behind them with their saved model parts.
    run = fed.folder / label
    for name in PARTIES:
        home = run / "home" / name
        argv = [
            sys.executable, "-m", "fedcredit", "node", "--federation", str(fed.path),
            "--party", name, "--listen", net.node_listen(name, PORTS[name]),
            "--port-file", str(run / "ports" / name), "--state-dir", str(home),
            "--certs", str(fed.certs(name)), "--allow-small-keys", "--model", str(home / "model"),
        ]  # fmt: skip
        processes[name] = net.popen(name, argv, log=run / "logs" / f"{name}-scoring.log", env=env())
    deadline = time.monotonic() + PORT_WAIT_S
    for name in PARTIES:
        while not (run / "ports" / name).exists():
            if processes[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"scoring node {name} did not start")
            time.sleep(0.05)
    rng = random.Random(3)
    ids_file = run / "batch-ids.csv"
    ids_file.write_text("id\n" + "\n".join(rng.sample(fed.lender_ids, batch_ids)) + "\n")
    started = time.time()
    batch = subprocess.run(
        net.exec_argv("lender", [
            sys.executable, "-m", "fedcredit", "score", str(fed.scoring_path), "--model",
            str(run / "out" / "model"), "--ids", str(ids_file), "--out", str(run / "scores.csv"),
            "--json", "--allow-small-keys",
        ]),
        capture_output=True, text=True, timeout=600, env=env(),
    )  # fmt: skip
    batch_s = time.time() - started
    if batch.returncode != 0:
        raise RuntimeError(f"fedcredit score over {label} failed: {batch.stderr.strip()}")
    online_out = run / "online.json"
    online = subprocess.run(
        net.exec_argv("lender", [
            sys.executable, str(Path(__file__).resolve()), "--score-client",
            "--address", f"{net.address('lender')}:{PORTS['lender']}",
            "--certs", str(fed.certs("lender")), "--ids", str(ids_file),
            "--requests", str(requests), "--json", str(online_out),
        ]),
        capture_output=True, text=True, timeout=1200, env=env(),
    )  # fmt: skip
    if online.returncode not in (0, 1) or not online_out.exists():
        raise RuntimeError(f"scoring client over {label} failed: {online.stderr.strip()}")
    report = json.loads(online_out.read_text())
    report["batch_applicants"] = batch_ids
    report["batch_s"] = round(batch_s, 2)
    report["started"], report["ended"] = started, time.time()
    return report


# -- the one-applicant client (runs inside the lender operator's namespace) ---------------------
def score_client(args: argparse.Namespace) -> int:
    """Sequential one-applicant Score calls to the lender, as the lender's operator.

    The Score method is found in the generated descriptors by name (whichever module of
    fedcredit.proto holds it), so the client survives a reorganisation of the protos.
    """
    import grpc
    import numpy as np

    method, request_class, reply_class = find_score_method()
    certs = Path(args.certs)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(certs / "lender.key").read_bytes(),
        certificate_chain=(certs / "lender.pem").read_bytes(),
    )
    options = [("grpc.ssl_target_name_override", "lender"),
               ("grpc.max_receive_message_length", 256 * 1024 * 1024)]  # fmt: skip
    channel = grpc.secure_channel(args.address, credentials, options=options)
    call = channel.unary_unary(
        method,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=reply_class.FromString,
    )
    ids = [line.strip() for line in Path(args.ids).read_text().splitlines()[1:] if line.strip()]
    rng = random.Random(11)
    latencies, errors = [], []
    for warm in ids[:3]:
        call(request_class(ids=[warm]), timeout=120.0)
    for _ in range(args.requests):
        applicant = rng.choice(ids)
        started = time.perf_counter()
        try:
            reply = call(request_class(ids=[applicant]), timeout=30.0)
        except grpc.RpcError as exc:
            errors.append(f"{exc.code().name}: {exc.details()}")
            continue
        latencies.append((time.perf_counter() - started) * 1000)
        if len(reply.applicants) != 1 or reply.applicants[0].error:
            errors.append(f"applicant {applicant}: {reply}")
    channel.close()
    ms = np.array(latencies) if latencies else np.array([float("nan")])
    report = {
        "requests": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:5],
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
        "method": method,
    }
    Path(args.json).write_text(json.dumps(report, indent=2))
    return 1 if errors else 0


def find_score_method() -> tuple[str, Any, Any]:
    import importlib
    import pkgutil

    from google.protobuf import message_factory

    import fedcredit.proto.v1 as protos

    found = []
    for module in pkgutil.iter_modules(protos.__path__):
        if not module.name.endswith("_pb2"):
            continue
        descriptor = importlib.import_module(f"{protos.__name__}.{module.name}").DESCRIPTOR
        for service in descriptor.services_by_name.values():
            for method in service.methods:
                if method.name == "Score" and "ids" in method.input_type.fields_by_name:
                    found.append((service, method))
    if not found:
        raise RuntimeError("no Score method with an 'ids' field in fedcredit.proto.v1")
    service, method = found[0]
    return (
        f"/{service.full_name}/{method.name}",
        message_factory.GetMessageClass(method.input_type),
        message_factory.GetMessageClass(method.output_type),
    )


# -- the benchmark ------------------------------------------------------------------------------
def one_network(net: Network, fed: Federation, label: str, requests: int,
                batch_ids: int) -> dict[str, Any]:  # fmt: skip
    processes = start_nodes(net, fed, label, model=False)
    result = run_driver(net, fed, label)
    scoring = score(net, fed, label, processes, requests, batch_ids) if requests else None
    bounds = phase_boundaries(result)
    if scoring is not None:
        bounds.append(("scoring", scoring["started"]))
    end = scoring["ended"] if scoring is not None else result.ended
    relays = {name: relay.stats for name, relay in net.relays.items()}
    return {
        "result": result,
        "scoring": scoring,
        "bytes_per_phase": split_by_phase(relays, bounds, end) if relays else {},
        "veth_bytes": net.veth_bytes(),
        "warnings": log_warnings(fed, label),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--rtt-ms", type=float, default=50.0)
    parser.add_argument("--mbit", type=float, default=100.0)
    parser.add_argument("--rows", type=int, default=4000, help="synthetic customers")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--key-bits", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--requests", type=int, default=300, help="one-applicant Score calls")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run's files here")
    # The scoring client, started by the benchmark inside the lender's namespace.
    parser.add_argument("--score-client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--certs", help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.score_client:
        return score_client(args)

    folder = args.keep or Path(tempfile.mkdtemp(prefix="fedcredit-wan-"))
    folder.mkdir(parents=True, exist_ok=True)
    names = list(NODES)
    probe = Network(names)
    addresses = {n: f"{probe.address(n)}:{PORTS[n]}" for n in names}

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    say(f"files in {folder}")
    fed = prepare(folder, rows=args.rows, epochs=args.epochs, batch=args.batch,
                  key_bits=args.key_bits, seed=args.seed, addresses=addresses)  # fmt: skip
    batch_ids = min(200, len(fed.lender_ids))
    say("loopback: every node in one namespace ...")
    with Network.loopback(names, work_dir=folder / "loopback") as net:
        loop = one_network(net, fed, "loopback", args.requests, batch_ids)
    say(f"wan: a namespace per node, {args.rtt_ms:g} ms RTT, {args.mbit:g} Mbit/s ...")
    with Network(names, rtt_ms=args.rtt_ms, mbit=args.mbit, work_dir=folder / "wan") as net:
        mode = net.delay_mode
        wan = one_network(net, fed, "wan", args.requests, batch_ids)
    lo_r, wan_r = loop["result"], wan["result"]
    epoch_lo, epoch_wan = epoch_seconds(lo_r), epoch_seconds(wan_r)
    scoring_errors = sum(s["errors"] for s in (loop["scoring"], wan["scoring"]) if s)
    report: dict[str, Any] = {
        "benchmark": "wan",
        "rtt_ms": args.rtt_ms,
        "mbit": args.mbit,
        "delay_mode": mode,
        "epoch_s_loopback": round(epoch_lo, 3),
        "epoch_s_wan": round(epoch_wan, 3),
        "ratio": round(epoch_wan / epoch_lo, 3),
        "phase_s_loopback": {k: round(v, 2) for k, v in lo_r.metrics["seconds_per_phase"].items()},
        "phase_s_wan": {k: round(v, 2) for k, v in wan_r.metrics["seconds_per_phase"].items()},
        "job_s_loopback": round(lo_r.metrics["seconds"], 2),
        "job_s_wan": round(wan_r.metrics["seconds"], 2),
        "bytes_per_phase": wan["bytes_per_phase"],
        "bytes_method": (
            "TCP payload (TLS records) counted by each node's delaying relay in each direction "
            "(NODE_in: what callers sent the node, NODE_out: its answers), sampled every 50 ms "
            "with timestamps and split at the time the driver printed the first progress line "
            "of each phase; 'connect' is the driver's start to its first line, 'scoring' the "
            "partners' restart with their model, a batch and the one-applicant calls"
        ),
        "veth_bytes": wan["veth_bytes"],
        "scoring_loopback": loop["scoring"]
        and {k: v for k, v in loop["scoring"].items() if k not in ("started", "ended")},
        "scoring_wan": wan["scoring"]
        and {k: v for k, v in wan["scoring"].items() if k not in ("started", "ended")},
        "scoring_p50_ms_wan": wan["scoring"]["p50_ms"] if wan["scoring"] else None,
        "scoring_p99_ms_wan": wan["scoring"]["p99_ms"] if wan["scoring"] else None,
        "same_model": same_model(model_weights(lo_r), model_weights(wan_r)),
        "auc_loopback": lo_r.metrics["auc"],
        "auc_wan": wan_r.metrics["auc"],
        "errors": scoring_errors,
        "node_log_warnings": wan["warnings"][:20],
        "rows": args.rows,
        "rows_aligned": wan_r.metrics["rows_aligned"],
        "rows_train": wan_r.metrics["rows_train"],
        "epochs": wan_r.metrics["epochs"],
        "batch_size": args.batch,
        "key_bits": args.key_bits,
        "cores": os.cpu_count(),
        "loadavg_before": LOADAVG,
        "command": " ".join(["python", "benchmarks/wan.py", *sys.argv[1:]]),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if scoring_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
