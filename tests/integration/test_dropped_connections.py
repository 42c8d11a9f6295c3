"""Two dropped connections during a round: retried, and the update is applied exactly once.

A TCP proxy sits between the driver and the ecommerce node (real mutual TLS through it: the
channel checks the node's certificate against the party name, not the proxy's address). While
armed, it forwards the driver's request but cuts the connection on the first bytes the node
sends back once the node has served that request: the reply never arrives. That happens twice;
the driver's own retries reconnect (a new TLS handshake through the proxy) and resend the same
sequence number, and the node answers the third attempt from its cache.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fedcredit.node.transport.peers import Peers, PeerStubs
from fedcredit.node.transport.tls import load_channel_credentials
from fedcredit.protocol.guard import Header, SequenceGuard
from tests.support.federation import InProcessFederation, saved_weights, start_federation
from tests.support.proxies import DroppingProxy

TARGET = "ecommerce"
METHOD = "ComputeGradient"


def gradient_rpc(stubs: PeerStubs) -> Any:
    return stubs.logistic.ComputeGradient


def _one_batch_until_gradient(nodes: InProcessFederation, epoch: int = 0) -> None:
    """The training step of ``epoch``, batch 0 up to the gradient step, as the driver runs it."""
    driver = nodes.driver
    driver.step(driver.peers.hosts, lambda s: s.logistic.ComputePartial, epoch, 0, "train")
    driver.step([driver.peers.lender], lambda s: s.logistic.ComputeResidual, epoch, 0, "train")


def _federation(folder: Path) -> InProcessFederation:
    nodes = start_federation(folder)
    nodes.driver.register_schedule({}, nodes.aligned, {})  # what the coordinator may decrypt
    return nodes


def _reference(folder: Path) -> tuple[list[float], list[float], list[float]]:
    """Weights of ecommerce before, after one gradient step, and after a second update."""
    nodes = _federation(folder / "fed")
    try:
        before = saved_weights(nodes, TARGET, "before")
        _one_batch_until_gradient(nodes)
        nodes.driver.step([TARGET], gradient_rpc, 0, 0, "train")
        once = saved_weights(nodes, TARGET, "once")
        # The gradient step cannot simply be resent under a new sequence number (the node has
        # used up the batch's residual, and the coordinator decrypts one request per step); a
        # second update is the next epoch's batch.
        _one_batch_until_gradient(nodes, epoch=1)
        nodes.driver.step([TARGET], gradient_rpc, 1, 0, "train")
        twice = saved_weights(nodes, TARGET, "twice")
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
        before = saved_weights(nodes, TARGET, "before")
        _one_batch_until_gradient(nodes)
        assert proxy.connections >= 1 and proxy.drops == 0  # ComputePartial went through it

        monkeypatch.setattr(SequenceGuard, "run_once", run_once)
        proxy.arm(2)
        replies = driver.step([TARGET], gradient_rpc, 0, 0, "train")
        monkeypatch.undo()
        drops, connections = proxy.drops, proxy.connections
        after = saved_weights(nodes, TARGET, "after")
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
