"""A network that is not loopback, on one machine: one Linux network namespace per node.

Shared by ``benchmarks/wan.py`` and ``tests/e2e/test_wan_namespaces.py``.

``Network(names, rtt_ms=50, mbit=100)`` (as root) makes a hub namespace holding a bridge and
one namespace per node, each joined to the bridge by a veth pair created *inside* the
namespaces (nothing is added to the machine's own namespace). Node ``i`` gets its own private
address ``10.231.0.(i + 1)/24``, a range that exists only inside these namespaces. Each link
is rate-limited with ``tc qdisc ... tbf`` at ``mbit`` in both directions (the node's end and
the hub's end of its veth).

Delay. Where the kernel has ``sch_netem``, each end of each link gets ``netem delay rtt/4``
(four ends between two nodes: one round trip is ``rtt``) under the ``tbf``. Where it has not
(``tc qdisc add ... netem`` answers "unknown qdisc", as on this machine), every node gets a
delaying TCP relay in its own namespace instead: the relay listens on the node's address and
port (the federation file's), the node itself on ``127.0.0.1`` in its namespace, and the
relay holds every chunk ``rtt/2`` in each direction before passing it on, so a connection from
another namespace sees one round trip of ``rtt`` on top of the ``tbf`` link. A connection from
the node's own namespace (a driver next to its coordinator, a scoring client next to its
lender) is passed on without delay. The relay counts the bytes of each direction (TCP payload:
TLS records, without TCP/IP headers) and writes cumulative counters with timestamps to a file,
which is how bytes on the wire are split by phase.

``Network.loopback(names)`` is the comparison: every node in one namespace, every address on
its ``lo``, no rate limit, no delay, no relay; the same addresses, so the same federation file
and certificates serve both.

Everything made here (namespaces, the veths and bridge inside them, every process started
through ``popen``) is removed on ``close()``: on leaving the ``with`` block, on an error, on
Ctrl-C or SIGTERM, and from ``atexit``. Namespaces left by an earlier run that was SIGKILLed
(named ``fcw<pid>-...`` with that pid gone) are removed when the next one starts.

``skip_reason()`` is ``None`` where namespaces can be made, otherwise the reason (not root,
no ``ip`` or ``tc``, ``ip netns add`` refused): the test skips with it.

The relay itself: ``python benchmarks/netns.py relay --listen HOST:PORT --to HOST:PORT
--delay-ms MS --stats FILE`` (started inside a namespace by ``Network``).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUBNET = "10.231.0"
PREFIX = "fcw"
CHUNK = 64 * 1024
QUEUE_CHUNKS = 64  # at most 4 MiB held per direction of a connection
STATS_EVERY_S = 0.05
READY_TIMEOUT_S = 60.0


class NamespacesUnavailable(RuntimeError):
    """Network namespaces cannot be made here; the message is the reason (a test skips)."""


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")
    return result


def skip_reason() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if sys.platform != "linux":
        return f"network namespaces need Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return f"network namespaces need root (ip netns add), this runs as uid {os.geteuid()}"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"no '{tool}' command (iproute2) on this machine"
    probe = f"{PREFIX}{os.getpid()}-probe{uuid.uuid4().hex[:4]}"
    made = _run(["ip", "netns", "add", probe], check=False)
    if made.returncode != 0:
        return f"ip netns add refused: {made.stderr.strip()}"
    try:
        veth = _run(
            ["ip", "-n", probe, "link", "add", "pa", "type", "veth", "peer", "name", "pb"],
            check=False,
        )
        if veth.returncode != 0:
            return f"cannot make a veth pair: {veth.stderr.strip()}"
        tbf = _run(
            ["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "pa", "root", "tbf",
             "rate", "100mbit", "burst", "64kb", "latency", "100ms"],
            check=False,
        )  # fmt: skip
        if tbf.returncode != 0:
            return f"tc tbf does not work here: {tbf.stderr.strip()}"
    finally:
        _run(["ip", "netns", "del", probe], check=False)
    return None


def netem_available() -> bool:
    """Whether ``tc qdisc add ... netem`` works (the kernel has sch_netem)."""
    probe = f"{PREFIX}{os.getpid()}-netem{uuid.uuid4().hex[:4]}"
    _run(["ip", "netns", "add", probe])
    try:
        _run(["ip", "-n", probe, "link", "set", "lo", "up"])
        result = _run(
            ["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
             "delay", "1ms"],
            check=False,
        )  # fmt: skip
        return result.returncode == 0
    finally:
        _run(["ip", "netns", "del", probe], check=False)


def sweep_stale() -> list[str]:
    """Remove namespaces of earlier runs of this module whose process is gone."""
    removed = []
    listing = _run(["ip", "netns", "list"], check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{PREFIX}(\d+)-.*", name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            _run(["ip", "netns", "del", name], check=False)
            removed.append(name)
    return removed


@dataclass
class Relay:
    """A delaying relay in front of one node: where it listens, where the node listens."""

    node: str
    listen: str
    target: str
    stats: Path
    process: subprocess.Popen[bytes] | None = None


@dataclass
class Network:
    """One namespace per node joined through a hub (or all in one: ``loopback``)."""

    names: Sequence[str]
    rtt_ms: float = 50.0
    mbit: float = 100.0
    work_dir: Path | None = None
    loopback_only: bool = False
    delay_mode: str = field(init=False, default="none")  # "netem", "relay" or "none"
    run_id: str = field(init=False, default="")
    namespaces: list[str] = field(init=False, default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(init=False, default_factory=list)
    relays: dict[str, Relay] = field(init=False, default_factory=dict)
    _closed: bool = field(init=False, default=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    @classmethod
    def loopback(cls, names: Sequence[str], work_dir: Path | None = None) -> Network:
        return cls(names, rtt_ms=0.0, mbit=0.0, work_dir=work_dir, loopback_only=True)

    # -- names and addresses ----------------------------------------------------------------
    def address(self, name: str) -> str:
        """The node's own private address (the same in both layouts)."""
        return f"{SUBNET}.{list(self.names).index(name) + 1}"

    def ns(self, name: str) -> str:
        """The namespace a node (and whatever runs next to it) lives in."""
        if self.loopback_only:
            return f"{PREFIX}{os.getpid()}-{self.run_id}-lo"
        return f"{PREFIX}{os.getpid()}-{self.run_id}-{list(self.names).index(name)}"

    @property
    def hub(self) -> str:
        return f"{PREFIX}{os.getpid()}-{self.run_id}-hub"

    def exec_argv(self, name: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(name), *argv]

    # -- setting up and tearing down ----------------------------------------------------------
    def __enter__(self) -> Network:
        reason = skip_reason()
        if reason is not None:
            raise NamespacesUnavailable(reason)
        sweep_stale()
        self.run_id = uuid.uuid4().hex[:4]
        atexit.register(self.close)
        previous = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is threading.main_thread() and previous in (
            signal.SIG_DFL,
            None,
        ):
            signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            if self.loopback_only:
                self._make_loopback()
            else:
                self.delay_mode = (
                    "netem"
                    if self.rtt_ms > 0 and netem_available()
                    else ("relay" if self.rtt_ms > 0 else "none")
                )
                self._make_links()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add_ns(self, ns: str) -> None:
        _run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _make_loopback(self) -> None:
        ns = self.ns(self.names[0])
        self._add_ns(ns)
        for name in self.names:
            _run(["ip", "-n", ns, "addr", "add", f"{self.address(name)}/32", "dev", "lo"])

    def _make_links(self) -> None:
        hub = self.hub
        self._add_ns(hub)
        _run(["ip", "-n", hub, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", hub, "link", "set", "br0", "up"])
        for index, name in enumerate(self.names):
            ns = self.ns(name)
            self._add_ns(ns)
            hub_end = f"h{index}"
            # Made inside the hub and the node's namespace: no name in the machine's own.
            _run(["ip", "-n", hub, "link", "add", hub_end, "type", "veth", "peer", "name",
                  "w0", "netns", ns])  # fmt: skip
            _run(["ip", "-n", hub, "link", "set", hub_end, "master", "br0"])
            _run(["ip", "-n", hub, "link", "set", hub_end, "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{self.address(name)}/24", "dev", "w0"])
            _run(["ip", "-n", ns, "link", "set", "w0", "up"])
            for where, dev in ((ns, "w0"), (hub, hub_end)):
                self._shape(where, dev)

    def _shape(self, ns: str, dev: str) -> None:
        tc = ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev]
        tbf = ["tbf", "rate", f"{self.mbit:g}mbit", "burst", "64kb", "latency", "200ms"]
        if self.delay_mode == "netem":
            quarter = f"{self.rtt_ms / 4:g}ms"
            _run([*tc, "root", "handle", "1:", "netem", "delay", quarter])
            _run([*tc, "parent", "1:", "handle", "2:", *tbf])
        elif self.mbit > 0:
            _run([*tc, "root", *tbf])

    def close(self) -> None:
        """Stop every process started here, then remove every namespace (with its links)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        for ns in reversed(self.namespaces):
            _run(["ip", "netns", "del", ns], check=False)
        self.namespaces.clear()
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    # -- processes -------------------------------------------------------------------------
    def popen(self, name: str, argv: Sequence[str], *, log: Path | None = None,
              **kwargs: Any) -> subprocess.Popen[bytes]:  # fmt: skip
        """Start ``argv`` in ``name``'s namespace, in a session of its own; stopped on close."""
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            handle = open(log, "ab")  # noqa: SIM115 - the child keeps it
            kwargs.setdefault("stdout", handle)
            kwargs.setdefault("stderr", subprocess.STDOUT)
        env = dict(kwargs.pop("env", None) or os.environ, PYTHONUNBUFFERED="1")
        process = subprocess.Popen(
            self.exec_argv(name, argv), start_new_session=True, env=env, **kwargs
        )
        if log is not None:
            handle.close()
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        """Stop one process started with ``popen`` (SIGTERM, then SIGKILL)."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if process in self.processes:
            self.processes.remove(process)

    def node_listen(self, name: str, port: int) -> str:
        """Where the node itself listens: its address, or 127.0.0.1 behind its relay."""
        if self.delay_mode == "relay":
            return f"127.0.0.1:{port + 1000}"
        return f"{self.address(name)}:{port}"

    def start_relay(self, name: str, port: int) -> Relay | None:
        """In relay mode, the delaying relay in front of ``name``'s node (already listening)."""
        if self.delay_mode != "relay":
            return None
        assert self.work_dir is not None, "relays write their counters into work_dir"
        relay = Relay(
            node=name,
            listen=f"{self.address(name)}:{port}",
            target=self.node_listen(name, port),
            stats=self.work_dir / "relays" / f"{name}.tsv",
        )
        relay.stats.parent.mkdir(parents=True, exist_ok=True)
        relay.stats.unlink(missing_ok=True)
        ready = relay.stats.with_suffix(".ready")
        ready.unlink(missing_ok=True)
        relay.process = self.popen(
            name,
            [sys.executable, str(Path(__file__).resolve()), "relay", "--listen", relay.listen,
             "--to", relay.target, "--delay-ms", f"{self.rtt_ms / 2:g}", "--stats",
             str(relay.stats), "--ready", str(ready)],
            log=self.work_dir / "relays" / f"{name}.log",
        )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            if relay.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"relay for {name} did not start (see its log)")
            time.sleep(0.02)
        self.relays[name] = relay
        return relay

    def veth_bytes(self) -> dict[str, dict[str, int]]:
        """Bytes (with headers) sent and received by each node's end of its veth."""
        out: dict[str, dict[str, int]] = {}
        if self.loopback_only:
            return out
        for name in self.names:
            text = _run(["ip", "-n", self.ns(name), "-s", "link", "show", "w0"]).stdout
            lines = [line.split() for line in text.splitlines()]
            for i, parts in enumerate(lines):
                if parts and parts[0] == "RX:":
                    rx = int(lines[i + 1][0])
                if parts and parts[0] == "TX:":
                    tx = int(lines[i + 1][0])
            out[name] = {"tx": tx, "rx": rx}
        return out


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# -- counters ----------------------------------------------------------------------------------
def read_counters(path: Path) -> list[tuple[float, int, int]]:
    """A relay's samples: (time.time(), bytes into the node, bytes out of it), cumulative."""
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 3:
                rows.append((float(parts[0]), int(parts[1]), int(parts[2])))
    return rows


def counters_at(rows: list[tuple[float, int, int]], when: float) -> tuple[int, int]:
    """The cumulative counters at wall-clock ``when`` (the last sample at or before it)."""
    last = (0, 0)
    for t, into, out in rows:
        if t > when:
            break
        last = (into, out)
    return last


def split_by_phase(
    relays: dict[str, Path], boundaries: list[tuple[str, float]], end: float
) -> dict[str, dict[str, int]]:
    """Bytes per phase and node: ``boundaries`` are (phase, start time), in order.

    Every byte a node's relay passed between a phase's start and the next phase's start
    (or ``end``) counts for that phase. ``into`` a node is what its callers sent it (requests),
    ``out`` is what it answered.
    """
    series = {name: read_counters(path) for name, path in relays.items()}
    result: dict[str, dict[str, int]] = {}
    for i, (phase, start) in enumerate(boundaries):
        stop = boundaries[i + 1][1] if i + 1 < len(boundaries) else end
        per_phase = result.setdefault(phase, {"total": 0})
        for name, rows in series.items():
            a, b = counters_at(rows, start), counters_at(rows, stop)
            into, out = b[0] - a[0], b[1] - a[1]
            per_phase[f"{name}_in"] = per_phase.get(f"{name}_in", 0) + into
            per_phase[f"{name}_out"] = per_phase.get(f"{name}_out", 0) + out
            per_phase["total"] += into + out
    return result


# -- the relay ---------------------------------------------------------------------------------
class _Counters:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.into = 0  # client -> node
        self.out = 0  # node -> client
        self._written = (-1, -1)

    def flush(self) -> None:
        if (self.into, self.out) != self._written:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(f"{time.time():.6f} {self.into} {self.out}\n")
            self._written = (self.into, self.out)


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay_s: float,
    count: Any,
) -> None:
    """Copy reader to writer, each chunk delivered ``delay_s`` after it was read."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)
    loop = asyncio.get_running_loop()

    async def read_side() -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                await queue.put((loop.time() + delay_s, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((loop.time(), b""))

    async def write_side() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError, RuntimeError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            writer.write(data)
            count(len(data))
            await writer.drain()

    reading = asyncio.ensure_future(read_side())
    try:
        await write_side()
    except (ConnectionError, OSError):
        pass
    finally:
        reading.cancel()


async def _relay_main(listen: str, target: str, delay_ms: float, stats: Path, ready: Path) -> None:
    listen_host, listen_port = listen.rsplit(":", 1)
    target_host, target_port = target.rsplit(":", 1)
    counters = _Counters(stats)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        peer = client_w.get_extra_info("peername")
        # From the node's own namespace (its own address): not over the link, no delay.
        local = bool(peer) and peer[0] in (listen_host, "127.0.0.1")
        delay = 0.0 if local else delay_ms / 1000.0

        def count_in(n: int) -> None:
            if not local:
                counters.into += n

        def count_out(n: int) -> None:
            if not local:
                counters.out += n

        try:
            node_r, node_w = await asyncio.open_connection(target_host, int(target_port))
        except OSError:
            client_w.close()
            return
        for w in (client_w, node_w):
            sock = w.get_extra_info("socket")
            if sock is not None:
                import socket

                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(
                _pipe(client_r, node_w, delay, count_in), _pipe(node_r, client_w, delay, count_out)
            )
        finally:
            for w in (client_w, node_w):
                with contextlib.suppress(Exception):
                    w.close()

    server = await asyncio.start_server(handle, listen_host, int(listen_port), limit=CHUNK * 4)
    ready.write_text(str(os.getpid()), encoding="utf-8")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        while not stop.is_set():
            counters.flush()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), STATS_EVERY_S)
    counters.flush()


def relay_cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netns.py relay", description="a delaying TCP relay")
    parser.add_argument("--listen", required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--delay-ms", type=float, required=True, help="per direction")
    parser.add_argument("--stats", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args(argv)
    asyncio.run(_relay_main(args.listen, args.to, args.delay_ms, args.stats, args.ready))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "relay":
        raise SystemExit(relay_cli(sys.argv[2:]))
    print(__doc__)
    print("skip reason:", skip_reason())
