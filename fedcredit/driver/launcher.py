"""Starting the federation's local nodes as separate processes on 127.0.0.1 ephemeral ports.

Also what a local run needs around them: which nodes are local, their certificates, the
driver's credentials, and waiting until every node serves.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import grpc

from fedcredit.config import Federation
from fedcredit.errors import ConfigError, PartyUnavailableError
from fedcredit.node.transport.client import open_channel, wait_for_ready
from fedcredit.node.transport.tls import init_certs, load_channel_credentials, pins_in

START_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 60.0
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def local_names(fed: Federation) -> list[str]:
    """Nodes whose address is on this machine: `run` starts them as separate processes."""
    return [n for n in fed.all_names if fed.endpoint(n).host in LOCAL_HOSTS]


def prepare_certs(fed: Federation, out: Path, *, insecure: bool) -> Path | None:
    """The certificate folder: the file's [tls], or a throwaway CA for an all-local run."""
    if insecure:
        return None
    if fed.tls is not None:
        return fed.tls.cert_dir
    if len(local_names(fed)) != len(fed.all_names):
        raise ConfigError(
            f"{fed.path.name}: some nodes are remote, so the file must name certificates in [tls]"
        )
    cert_dir = out / "certs"
    if not (cert_dir / "ca.pem").exists():
        init_certs(cert_dir, list(fed.all_names))
    return cert_dir


def channel_credentials(
    fed: Federation, cert_dir: Path | None, as_party: str
) -> grpc.ChannelCredentials | None:
    """Credentials presenting ``as_party``'s certificate (None for an insecure run)."""
    if cert_dir is None:
        return None
    ca = fed.tls.ca if fed.tls is not None else cert_dir / "ca.pem"
    cert, key = cert_dir / f"{as_party}.pem", cert_dir / f"{as_party}.key"
    return load_channel_credentials(ca, cert, key, pins_in(cert_dir, fed.cert_pins()))


def wait_all(
    addresses: dict[str, str], credentials: grpc.ChannelCredentials | None, self_name: str
) -> None:
    """Wait until every node at ``addresses`` serves (PartyUnavailableError after a minute)."""
    for name, address in addresses.items():
        channel = open_channel(
            address, party_name=name, credentials=credentials, self_name=self_name
        )
        try:
            wait_for_ready(channel, name, READY_TIMEOUT_S)
        finally:
            channel.close()


class LocalNodes:
    """Node processes for ``names``; each writes its bound port to a file once serving."""

    def __init__(
        self,
        federation_path: Path,
        names: list[str],
        run_dir: Path,
        *,
        cert_dir: Path | None,
        insecure: bool = False,
        allow_small_keys: bool = False,
        model_dir: Path | None = None,
    ) -> None:
        self.federation_path = federation_path
        self.names = names
        self.run_dir = run_dir
        self.cert_dir = cert_dir
        self.insecure = insecure
        self.allow_small_keys = allow_small_keys
        self.model_dir = model_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.addresses: dict[str, str] = {}

    def state_dir(self, name: str) -> Path:
        return self.run_dir / "state" / name

    def log_path(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    def command(self, name: str) -> list[str]:
        port_file = self.run_dir / "ports" / name
        cmd = [
            sys.executable,
            "-m",
            "fedcredit",
            "node",
            "--federation",
            str(self.federation_path),
            "--party",
            name,
            "--listen",
            "127.0.0.1:0",
            "--port-file",
            str(port_file),
            # The run folder is every local node's home: their state folders and the
            # model folder the driver names lie inside it.
            "--state-dir",
            str(self.run_dir),
        ]
        if self.cert_dir is not None:
            cmd += ["--certs", str(self.cert_dir)]
        if self.insecure:
            cmd.append("--insecure")
        if self.allow_small_keys:
            cmd.append("--allow-small-keys")
        if self.model_dir is not None and name != "coordinator":
            cmd += ["--model", str(self.model_dir)]
        for peer, address in self.addresses.items():
            cmd += ["--peer", f"{peer}={address}"]
        return cmd

    def start(self, *, last: str | None = None) -> dict[str, str]:
        """Start every node and wait until each reports its port; returns name -> address.

        ``last`` is started once the others serve, and is told their addresses (``--peer``):
        the lender needs them to score online.
        """
        for sub in ("ports", "logs", "state"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        # The coordinator first and ``last`` at the end, so each later node learns the real
        # (ephemeral) addresses of the earlier ones.
        order = [[n for n in self.names if n == "coordinator"]]
        order.append([n for n in self.names if n not in ("coordinator", last)])
        order.append([n for n in self.names if n == last and n != "coordinator"])
        for group in order:
            if group:
                self._launch(group)
        return dict(self.addresses)

    def _launch(self, names: list[str]) -> None:
        for name in names:
            (self.run_dir / "ports" / name).unlink(missing_ok=True)
            self.state_dir(name).mkdir(parents=True, exist_ok=True)
            log = open(self.log_path(name), "ab")  # noqa: SIM115 - the child keeps it open
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            self.processes[name] = subprocess.Popen(
                self.command(name),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            log.close()
            # The pid file lets an operator (or a fault test) find a node process.
            (self.run_dir / "ports" / f"{name}.pid").write_text(
                str(self.processes[name].pid), encoding="utf-8"
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        for name in names:
            self.addresses[name] = self._wait_port(name, deadline)

    def _wait_port(self, name: str, deadline: float) -> str:
        port_file = self.run_dir / "ports" / name
        while time.monotonic() < deadline:
            if port_file.exists():
                return f"127.0.0.1:{port_file.read_text(encoding='utf-8').strip()}"
            if self.processes[name].poll() is not None:
                raise PartyUnavailableError(name, f"its node did not start: {self.last_line(name)}")
            time.sleep(0.05)
        raise PartyUnavailableError(name, f"its node did not start within {START_TIMEOUT_S:g} s")

    def last_line(self, name: str) -> str:
        """The last meaningful line the node wrote (its error, when it failed)."""
        try:
            lines = self.log_path(name).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "no log"
        lines = [line for line in lines if line.strip() and not line.startswith("WARNING")]
        return lines[-1].strip() if lines else "no output"

    def check_alive(self) -> None:
        """Raise PartyUnavailableError naming the first node whose process has exited."""
        for name, process in self.processes.items():
            code = process.poll()
            if code is not None:
                raise PartyUnavailableError(
                    name, f"its node process exited (code {code}): {self.last_line(name)}"
                )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 10.0
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> LocalNodes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
