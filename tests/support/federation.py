"""The one in-process federation of the tests: real nodes built by ``build_node`` on
127.0.0.1:0 in this process, with real mutual TLS and small keys.

``demo_federation`` writes the demo's federation file over synthetic data; ``start_nodes``
starts nodes of it (``InProcessNodes``: channels and stubs under any party's certificate, a
driver, a restart at the same address); ``start_federation`` also runs a real driver's first
steps (key, setup, private alignment) so a test can call one RPC of a job at a time.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from fedcredit.cli.demo import write_demo_federation
from fedcredit.config import Federation, load_federation
from fedcredit.crypto import PublicKey
from fedcredit.data.synthetic import write_institutions
from fedcredit.driver.job import Driver
from fedcredit.node.runtime import NodeOptions, build_node
from fedcredit.node.transport.client import open_channel
from fedcredit.node.transport.identity import ServerInterceptorBase
from fedcredit.node.transport.peers import PeerStubs
from fedcredit.node.transport.server import NodeServer
from fedcredit.node.transport.tls import CertPaths, init_certs, load_channel_credentials
from fedcredit.proto.v1 import (
    common_pb2,
    coordinator_pb2_grpc,
    job_pb2,
)
from fedcredit.protocol.split import batch_rows, split_rows

#: The demo's nodes in the order they start: the lender last, so it is told the others' real
#: addresses (as ``LocalNodes`` does).
NODES = ("coordinator", "ecommerce", "payments", "lender")
COORDINATOR = "coordinator"


def demo_federation(
    folder: Path,
    *,
    customers: int = 400,
    seed: int = 3,
    epochs: int = 2,
    batch: int = 64,
    key_bits: int = 1024,
    binning: bool = True,
) -> Path:
    """The demo's federation file in ``folder`` over ``customers`` synthetic customers."""
    data = write_institutions(folder / "data", customers, seed=seed)
    path = write_demo_federation(folder, data, key_bits=key_bits, epochs=epochs)
    text = path.read_text().replace("batch_size = 4096", f"batch_size = {batch}")
    path.write_text(text if binning else text.replace("[binning]\n", ""))
    return path


def existing_certs(folder: Path, names: Iterable[str]) -> CertPaths:
    """The paths of certificates ``init_certs`` wrote into ``folder`` earlier."""
    names = list(names)
    return CertPaths(
        ca=folder / "ca.pem",
        certs={n: folder / f"{n}.pem" for n in names},
        keys={n: folder / f"{n}.key" for n in names},
    )


@dataclass
class InProcessNodes:
    """Nodes of one federation in this process; ``home`` holds the certificates and, unless a
    node is given its own, every node's folder (the driver's state/ and model folders)."""

    fed: Federation
    home: Path
    certs: CertPaths
    servers: dict[str, NodeServer] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    _channels: dict[tuple[str, str], grpc.Channel] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.home

    def credentials(self, me: str) -> grpc.ChannelCredentials:
        """Channel credentials presenting ``me``'s certificate."""
        return load_channel_credentials(self.certs.ca, self.certs.cert(me), self.certs.key(me))

    def start(
        self,
        name: str,
        *,
        listen: str = "127.0.0.1:0",
        interceptors: Sequence[ServerInterceptorBase] = (),
        state_dir: Path | None = None,
        model_dir: Path | None = None,
        peers: Mapping[str, str] | None = None,
    ) -> NodeServer:
        """Build and start node ``name``; ``peers`` defaults to every node started before it."""
        options = NodeOptions(
            name=name,
            listen=listen,
            cert_dir=self.certs.ca.parent,
            allow_small_keys=True,
            model_dir=model_dir,
            peers=tuple((self.addresses if peers is None else peers).items()),
            state_dir=self.home if state_dir is None else state_dir,
        )
        server = build_node(self.fed, options, interceptors=list(interceptors))
        self.servers[name] = server
        self.addresses[name] = f"127.0.0.1:{server.start()}"
        return server

    def stop(self, name: str) -> None:
        self.servers.pop(name).stop(0)

    def channel(self, me: str, target: str) -> grpc.Channel:
        """A channel to node ``target`` presenting ``me``'s certificate (kept until close)."""
        if (me, target) not in self._channels:
            self._channels[(me, target)] = open_channel(
                self.addresses[target],
                party_name=target,
                credentials=self.credentials(me),
                self_name=me,
            )
        return self._channels[(me, target)]

    def party(self, me: str, target: str = "lender") -> PeerStubs:
        return PeerStubs(self.channel(me, target))

    def coordinator(self, me: str = "lender") -> coordinator_pb2_grpc.CoordinatorStub:
        return coordinator_pb2_grpc.CoordinatorStub(self.channel(me, COORDINATOR))

    def new_driver(self, **options: Any) -> Driver:
        """A real driver with the coordinator's certificate; each party's state under home/state."""
        options.setdefault("progress", lambda *_: None)
        options.setdefault(
            "state_dirs", {p.name: str(self.home / "state" / p.name) for p in self.fed.parties}
        )
        return Driver(
            self.fed, dict(self.addresses), credentials=self.credentials(COORDINATOR), **options
        )

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        for server in self.servers.values():
            server.stop(0)


def start_nodes(
    fed: Federation,
    home: Path,
    *,
    names: Iterable[str] = NODES,
    interceptors: Mapping[str, Sequence[ServerInterceptorBase]] | None = None,
    state_dir: Callable[[str], Path] | None = None,
    model_dir: Path | None = None,
    extra_certs: Sequence[str] = (),
) -> InProcessNodes:
    """Certificates for every node of ``fed`` (and ``extra_certs``) under ``home``/certs, then
    the nodes ``names`` started in order. ``model_dir`` is given to the parties, not the
    coordinator. On a failure the nodes already started are stopped."""
    certs = init_certs(home / "certs", [*fed.all_names, *extra_certs])
    nodes = InProcessNodes(fed, home, certs)
    try:
        for name in names:
            nodes.start(
                name,
                interceptors=(interceptors or {}).get(name, ()),
                state_dir=None if state_dir is None else state_dir(name),
                model_dir=None if name == COORDINATOR else model_dir,
            )
    except BaseException:
        nodes.close()
        raise
    return nodes


@dataclass
class InProcessFederation(InProcessNodes):
    """Coordinator, lender, ecommerce and payments nodes in this process, a driver, one job
    whose key is made and whose customers are aligned."""

    driver: Driver = field(default=None)  # type: ignore[assignment]
    key: PublicKey = field(default=None)  # type: ignore[assignment]
    aligned: dict[str, int] = field(default_factory=dict)
    _seq: Iterator[int] = field(default_factory=lambda: itertools.count(1_000_000))

    @property
    def job_id(self) -> str:
        return self.driver.job_id

    def seq(self) -> int:
        return next(self._seq)

    def env(self, *, job: str | None = None, seq: int | None = None) -> common_pb2.Envelope:
        return common_pb2.Envelope(
            job_id=self.job_id if job is None else job, epoch=0, batch=0, seq=seq or self.seq()
        )

    def train_rows(self, epoch: int = 0, batch: int = 0) -> int:
        """Rows of a training mini-batch, computed as every party does from the job seed."""
        t = self.fed.train
        split = split_rows(
            self.aligned["common"],
            test_fraction=t.test_fraction,
            validation_fraction=t.validation_fraction,
            seed=t.seed,
        )
        assert len(split.train) == self.aligned["train"]
        return len(batch_rows(split.train, t.batch_size, t.seed, epoch, batch))

    def close(self) -> None:
        if self.driver is not None:
            self.driver.peers.close()
        super().close()


def start_federation(
    folder: Path,
    *,
    customers: int = 400,
    interceptors: Mapping[str, Sequence[ServerInterceptorBase]] | None = None,
) -> InProcessFederation:
    """The demo's nodes on 127.0.0.1:0, aligned for one job by a real driver.

    ``interceptors``: extra server interceptors for some nodes, by name. Every node's home is
    ``folder``: the driver's state/ folders lie inside it, and a fuzzed Setup or SaveModel
    naming no folder writes there. A certificate for an ``outsider`` is made too.
    """
    fed = load_federation(demo_federation(folder, customers=customers), allow_small_keys=True)
    started = start_nodes(fed, folder, interceptors=interceptors, extra_certs=["outsider"])
    nodes = InProcessFederation(started.fed, started.home, started.certs)
    nodes.servers, nodes.addresses = started.servers, started.addresses
    try:
        nodes.driver = nodes.new_driver()
        # The driver's own first steps: a key, the parties' setup, private alignment.
        key_json = nodes.driver.start_job()
        nodes.driver.setup(key_json, False)
        nodes.aligned = nodes.driver.align()
        nodes.key = PublicKey.from_json(key_json)
    except BaseException:
        nodes.close()
        raise
    return nodes


def saved_weights(nodes: InProcessFederation, party: str, name: str) -> list[float]:
    """``party``'s weights as its node saves them into the model folder ``name`` of its home."""
    # A relative model folder is taken from the node's home (``nodes.folder``).
    request = job_pb2.SaveRequest(env=nodes.driver.env(), model_dir=name)
    nodes.party("coordinator", party).SaveModel(request, timeout=60)
    return list(json.loads((nodes.folder / name / f"{party}.json").read_text())["weights"])
