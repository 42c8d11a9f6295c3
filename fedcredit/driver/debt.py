"""The client side of the loan-stacking check: a local consortium of ``DebtService`` nodes.

``LocalConsortium`` runs one lender server per lending party and one for the coordinator in
this process (on 127.0.0.1, ephemeral ports, mutual TLS), uploads each lender's book over gRPC
and gives a lender a ``QuerierHandle`` to ask about applicants. In a deployment each lender
serves ``DebtLenderServicer`` from its own node and the coordinator ``DebtCoordinatorServicer``;
the messages are the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import grpc

from fedcredit.crypto import generate_keypair
from fedcredit.debt import DebtCoordinator, DebtLender, DebtResult
from fedcredit.errors import ConfigError
from fedcredit.node.debt_client import ask, send_upload
from fedcredit.node.services.debt import DebtCoordinatorServicer, DebtLenderServicer
from fedcredit.node.transport.client import open_channel
from fedcredit.node.transport.server import NodeServer, build_server
from fedcredit.node.transport.tls import load_channel_credentials, load_server_credentials
from fedcredit.proto.v1 import debt_pb2_grpc

COORDINATOR = "coordinator"
QUERY_CHUNK = 10_000


class CertSource(Protocol):
    """Where the CA and each node's certificate and key are (``TLSSettings`` or ``CertPaths``)."""

    @property
    def ca(self) -> Path: ...

    def cert(self, name: str) -> Path: ...

    def key(self, name: str) -> Path: ...


class LocalConsortium:
    """Lender and coordinator ``DebtService`` servers in this process, over real mTLS gRPC."""

    def __init__(
        self,
        lenders: Sequence[str],
        certs: CertSource,
        *,
        key_bits: int = 2048,
        min_count_floor: int = 2,
    ) -> None:
        if len(lenders) < 2:
            raise ConfigError("a loan-stacking check needs at least two lending parties")
        self.names = list(lenders)
        self._certs = certs
        self._servers: list[NodeServer] = []
        self._channels: list[grpc.Channel] = []
        self._addresses: dict[str, str] = {}
        self.lenders: dict[str, DebtLender] = {}
        for name in self.names:
            public, private = generate_keypair(key_bits, allow_small=key_bits < 2048)
            self.lenders[name] = DebtLender(public, private)
        self.pool = ThreadPoolExecutor(max_workers=max(2, len(lenders)))
        parties = set(self.names) | {COORDINATOR}
        for name in self.names:
            servicer = DebtLenderServicer(self.lenders[name], name, set(self.names), COORDINATOR)
            self._serve(name, servicer, parties)
        stubs = {name: self.stub(COORDINATOR, name) for name in self.names}
        self.coordinator = DebtCoordinator(
            min_count_floor=min_count_floor, allow_small_keys=key_bits < 2048
        )
        self.coordinator_servicer = DebtCoordinatorServicer(self.coordinator, stubs)
        self._serve(COORDINATOR, self.coordinator_servicer, set(self.names))

    def _serve(
        self, name: str, servicer: debt_pb2_grpc.DebtServiceServicer, allowed: set[str]
    ) -> None:
        creds = load_server_credentials(
            self._certs.ca, self._certs.cert(name), self._certs.key(name)
        )
        server = build_server("127.0.0.1:0", credentials=creds, allowed_parties=allowed)
        server.add(debt_pb2_grpc.add_DebtServiceServicer_to_server, servicer)
        self._servers.append(server)
        self._addresses[name] = f"127.0.0.1:{server.start()}"

    def stub(self, caller: str, callee: str) -> debt_pb2_grpc.DebtServiceStub:
        """A stub for ``callee``'s service, presenting ``caller``'s certificate."""
        creds = load_channel_credentials(
            self._certs.ca, self._certs.cert(caller), self._certs.key(caller)
        )
        channel = open_channel(self._addresses[callee], party_name=callee, credentials=creds)
        self._channels.append(channel)
        return debt_pb2_grpc.DebtServiceStub(channel)

    def upload(self, name: str, balances: Mapping[str, int]) -> int:
        """Encrypt and stream one lender's book to the coordinator; rows stored."""
        pending = self.lenders[name].prepare_upload(balances)
        return send_upload(self.lenders[name], pending, self.stub(name, COORDINATOR))

    def querier(self, name: str) -> QuerierHandle:
        """Stubs from lender ``name`` to every other lender and to the coordinator."""
        if name not in self.lenders:
            raise ConfigError(f"{name!r} is not a lending party (one with a loans file)")
        others = {n: self.stub(name, n) for n in self.names if n != name}
        return QuerierHandle(others, self.stub(name, COORDINATOR), self.pool)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        for server in self._servers:
            server.stop(1.0)
        self.pool.shutdown()

    def __enter__(self) -> LocalConsortium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class QuerierHandle:
    """One lender's view of the consortium: ask about a batch, get one result each."""

    def __init__(
        self,
        lenders: Mapping[str, debt_pb2_grpc.DebtServiceStub],
        coordinator: debt_pb2_grpc.DebtServiceStub,
        pool: ThreadPoolExecutor,
    ) -> None:
        self._lenders = dict(lenders)
        self._coordinator = coordinator
        self._pool = pool
        self.stats: dict[str, int] = {}

    def ask(self, applicants: Sequence[str], min_count_for_total: int = 2) -> list[DebtResult]:
        results: list[DebtResult] = []
        for start in range(0, len(applicants), QUERY_CHUNK):
            results += ask(
                applicants[start : start + QUERY_CHUNK],
                self._lenders,
                self._coordinator,
                min_count_for_total=min_count_for_total,
                pool=self._pool,
                stats=self.stats,
            )
        return results
