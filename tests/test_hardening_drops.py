"""Two dropped connections during a round: retried, and the update is applied exactly once.

A TCP proxy sits between the driver and the ecommerce node (real mutual TLS through it: the
channel checks the node's certificate against the party name, not the proxy's address). While
armed, it forwards the driver's request but cuts the connection on the first bytes the node
sends back once the node has served that request: the reply never arrives. That happens twice;
the driver's own retries reconnect (a new TLS handshake through the proxy) and resend the same
sequence number, and the node answers the third attempt from its cache.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_hardening_wire import InProcessFederation, _weights, start_federation

from fedcredit.node.transport.peers import Peers
from fedcredit.node.transport.tls import load_channel_credentials
from fedcredit.protocol.guard import Header, SequenceGuard

TARGET = "ecommerce"
METHOD = "ComputeGradient"


class DroppingProxy:
    """A TCP proxy on 127.0.0.1:0 to ``target`` that can drop connections before a reply.

    ``arm(n)``: the next ``n`` times the node has served the watched request (``served()``,
    called by the node's side) and then sends bytes back, both sockets of that connection are
    closed instead of forwarding them. Handshake bytes of a new connection come before the node
    can serve its request, so a reconnection is never what gets dropped.
    """

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.connections = 0
        self.drops = 0
        self._served = 0
        self._drops_left = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, drops: int) -> None:
        with self._lock:
            self._served, self.drops, self._drops_left = 0, 0, drops

    def served(self) -> None:
        with self._lock:
            self._served += 1

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self._lock:
                self.connections += 1
                self._sockets += [client, server]
            pair = (client, server)
            threading.Thread(
                target=self._pump, args=(client, server, False, pair), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, True, pair), daemon=True
            ).start()

    def _should_drop(self) -> bool:
        with self._lock:
            # A reply is pending for every request served since the last drop.
            if self._drops_left > 0 and self._served > self.drops:
                self.drops += 1
                self._drops_left -= 1
                return True
            return False

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        to_client: bool,
        pair: tuple[socket.socket, socket.socket],
    ) -> None:
        try:
            while data := src.recv(65536):
                if to_client and self._should_drop():
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in pair:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            sock.close()


def _one_batch_until_gradient(nodes: InProcessFederation, epoch: int = 0) -> None:
    """The training step of ``epoch``, batch 0 up to the gradient step, as the driver runs it."""
    driver = nodes.driver
    driver.step(driver.peers.hosts, "ComputePartial", epoch, 0, "train")
    driver.step([driver.peers.lender], "ComputeResidual", epoch, 0, "train")


def _federation(folder: Path) -> InProcessFederation:
    nodes = start_federation(folder)
    nodes.driver.register_schedule({}, nodes.aligned, {})  # what the coordinator may decrypt
    return nodes


def _reference(folder: Path) -> tuple[list[float], list[float], list[float]]:
    """Weights of ecommerce before, after one gradient step, and after a second update."""
    nodes = _federation(folder / "fed")
    try:
        before = _weights(nodes, TARGET, "before")
        _one_batch_until_gradient(nodes)
        nodes.driver.step([TARGET], METHOD, 0, 0, "train")
        once = _weights(nodes, TARGET, "once")
        # The gradient step cannot simply be resent under a new sequence number (the node has
        # used up the batch's residual, and the coordinator decrypts one request per step); a
        # second update is the next epoch's batch.
        _one_batch_until_gradient(nodes, epoch=1)
        nodes.driver.step([TARGET], METHOD, 1, 0, "train")
        twice = _weights(nodes, TARGET, "twice")
    finally:
        nodes.close()
    return before, once, twice


def test_two_dropped_connections_before_the_reply_are_retried_and_applied_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before_ref, once, twice = _reference(tmp_path / "reference")
    assert before_ref == [0.0] * len(before_ref)
    assert once != before_ref
    assert twice != once

    nodes = _federation(tmp_path / "dropped")
    proxy = DroppingProxy(nodes.addresses[TARGET])
    executed: list[int] = []
    served: list[int] = []
    original = SequenceGuard.run_once

    def run_once(
        self: SequenceGuard[Any], caller: str, method: str, header: Header, step: Callable[[], Any]
    ) -> Any:
        if method != METHOD:
            return original(self, caller, method, header, step)

        def counted() -> Any:
            executed.append(header.seq)
            return step()

        result = original(self, caller, method, header, counted)
        served.append(header.seq)
        proxy.served()
        return result

    try:
        driver = nodes.driver
        # The driver reaches ecommerce through the proxy from now on (new channels, real mTLS).
        creds = load_channel_credentials(
            nodes.certs.ca, nodes.certs.cert("coordinator"), nodes.certs.key("coordinator")
        )
        addresses = {**nodes.addresses, TARGET: proxy.address}
        driver.peers.close()
        driver.peers = Peers(
            addresses, nodes.fed.lender.name, credentials=creds, own_name="coordinator"
        )
        before = _weights(nodes, TARGET, "before")
        _one_batch_until_gradient(nodes)
        assert proxy.connections >= 1 and proxy.drops == 0  # ComputePartial went through it

        monkeypatch.setattr(SequenceGuard, "run_once", run_once)
        proxy.arm(2)
        replies = driver.step([TARGET], METHOD, 0, 0, "train")
        monkeypatch.undo()
        drops, connections = proxy.drops, proxy.connections
        after = _weights(nodes, TARGET, "after")
    finally:
        monkeypatch.undo()
        nodes.close()
        proxy.close()

    assert replies[TARGET].env.job_id == nodes.job_id
    assert drops == 2
    assert connections >= 3  # the first connection and two reconnections
    # Three attempts of one message reached the node; the step itself ran once.
    assert len(served) == 3 and len(set(served)) == 1
    assert executed == served[:1]
    assert before == before_ref
    assert after == once
    assert after != twice
