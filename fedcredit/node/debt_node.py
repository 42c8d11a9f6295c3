"""Loan stacking in the node processes: what a lending node and the coordinator node serve.

Every party whose federation entry names a ``loans`` file is a lender of the consortium (when
there are at least two). Its node validates the file at startup (a bad file stops the node
with one line naming file, row and column), makes its own Paillier key pair for the check,
serves ``DebtLenderServicer``, and uploads its book to the coordinator from a background
thread: first as soon as it serves, retrying until the coordinator accepts, then again
whenever the coordinator no longer holds its table (it watches the coordinator's health
service, where each accepted table is listed: a restarted coordinator lists none).
The coordinator node serves ``DebtCoordinatorServicer`` and connects to a lender on first use,
at the address given with ``--peer``, else the one the lender announced with its upload, else
the federation file's. See docs/DEBT.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedcredit.config import Federation
from fedcredit.crypto import generate_keypair
from fedcredit.data.loans import load_loans
from fedcredit.debt import DebtCoordinator, DebtLender, DebtResult
from fedcredit.errors import ConfigError, FedCreditError
from fedcredit.node.audit import DebtQueryAudit
from fedcredit.node.debt_client import ask, send_upload
from fedcredit.node.services.debt import (
    ADDRESS_METADATA,
    DebtCoordinatorServicer,
    DebtLenderServicer,
)
from fedcredit.node.state import PartyNode
from fedcredit.node.transport.client import open_channel
from fedcredit.node.transport.identity import PARTY_METADATA
from fedcredit.node.transport.peers import COORDINATOR, Peers
from fedcredit.node.transport.server import NodeServer
from fedcredit.proto.v1 import debt_pb2_grpc

log = logging.getLogger("fedcredit.node")

WATCH_S = 5.0
"""How often a lending node checks that the coordinator still holds its table."""
QUERY_CHUNK = 10_000
"""Applicants per query: larger batches are asked in chunks."""
READY_TIMEOUT_S = 60.0
"""After a lending node starts, how long its checks wait for the consortium's tables."""
CALL_TIMEOUT_S = 30.0
PER_APPLICANT_S = 0.02
"""Deadline of one call of a query: ``CALL_TIMEOUT_S`` plus this much per applicant (a batch of
10,000 keeps the coordinator and lenders busy for tens of seconds at 2048 bits)."""
TABLE_HEALTH_PREFIX = "fedcredit.v1.DebtService/table/"


def table_health_service(lender: str) -> str:
    """The coordinator's health service name that is SERVING once it holds ``lender``'s table."""
    return TABLE_HEALTH_PREFIX + lender


def lending_parties(fed: Federation) -> list[str]:
    """The consortium: parties with a loans file, in file order (empty when fewer than two)."""
    names = [p.name for p in fed.parties if p.loans is not None]
    return names if len(names) >= 2 else []


class LenderDirectory:
    """The coordinator's channels to lenders' nodes, opened on first use and reused.

    A lender's address is the operator's ``--peer`` override, else the address it announced
    with its last upload (authenticated by its certificate; the channel still checks that the
    node there holds that lender's certificate), else the federation file's.
    """

    def __init__(
        self,
        configured: Mapping[str, str],
        *,
        overrides: Mapping[str, str],
        credentials: grpc.ChannelCredentials | None,
    ) -> None:
        self.names = frozenset(configured)
        self._configured = dict(configured)
        self._overrides = {n: a for n, a in overrides.items() if n in self.names}
        self._announced: dict[str, str] = {}
        self._credentials = credentials
        self._open: dict[str, tuple[str, grpc.Channel]] = {}
        self._lock = threading.Lock()

    def address(self, name: str) -> str:
        with self._lock:
            return self._address(name)

    def _address(self, name: str) -> str:
        return self._overrides.get(name) or self._announced.get(name) or self._configured[name]

    def announce(self, name: str, address: str) -> None:
        with self._lock:
            self._announced[name] = address

    def stub(self, name: str) -> debt_pb2_grpc.DebtServiceStub:
        with self._lock:
            address = self._address(name)
            current = self._open.get(name)
            if current is None or current[0] != address:
                # A node that restarted elsewhere gets a new channel; the old one is left to
                # calls still in flight on it.
                channel = open_channel(
                    address, party_name=name, credentials=self._credentials, self_name=COORDINATOR
                )
                current = self._open[name] = (address, channel)
            return debt_pb2_grpc.DebtServiceStub(current[1])


def serve_coordinator_debt(
    server: NodeServer,
    fed: Federation,
    overrides: Mapping[str, str],
    credentials: grpc.ChannelCredentials | None,
    home: Path,
    *,
    allow_small_keys: bool = False,
) -> None:
    """Add the consortium's ``DebtCoordinatorServicer`` to the coordinator node (if any).

    Every query is a line of ``home/audit/debt-queries-<date>.jsonl`` and counts against the
    querier's daily quota (the federation file's ``[scoring] quota_per_day``).

    ``allow_small_keys`` (tests only) lets lenders upload under keys below 2048 bits.
    """
    lenders = lending_parties(fed)
    if not lenders:
        return
    directory = LenderDirectory(
        {n: fed.endpoint(n).address for n in lenders},
        overrides=overrides,
        credentials=credentials,
    )

    def listed(lender: str) -> None:
        # Lenders watch this entry: a coordinator that restarted (even within one watch
        # period) lists no table, so every lender uploads again.
        server.health.set(table_health_service(lender), health_pb2.HealthCheckResponse.SERVING)

    audit = DebtQueryAudit(home / "audit", fed.scoring.quota_per_day)
    coordinator = DebtCoordinator(allow_small_keys=allow_small_keys, admit=audit.admit)
    servicer = DebtCoordinatorServicer(coordinator, directory, on_upload=listed)
    server.add(debt_pb2_grpc.add_DebtServiceServicer_to_server, servicer)


def serve_lender_debt(
    server: NodeServer,
    fed: Federation,
    node: PartyNode,
    *,
    allow_small_keys: bool,
    insecure: bool,
) -> ConsortiumQuerier | None:
    """Validate the party's loans file and serve ``DebtLenderServicer``; upload in background.

    Returns the querier the node's Score RPC uses, or None when the party is no lender of a
    consortium. Raises ``DataError`` (file, row, column) for a bad loans file.
    """
    path = fed.party(node.name).loans
    if path is None:
        return None
    book = load_loans(path, dict(fed.party(node.name).loans_columns)).outstanding()
    lenders = lending_parties(fed)
    if not lenders:
        log.warning("only one party has a loans file: the loan-stacking check is off")
        return None
    public, private = generate_keypair(fed.key_bits, allow_small=allow_small_keys)
    lender = DebtLender(public, private)
    servicer = DebtLenderServicer(lender, node.name, set(lenders), COORDINATOR)
    server.add(debt_pb2_grpc.add_DebtServiceServicer_to_server, servicer)
    peers = node.scoring_peers()
    host = fed.endpoint(node.name).host
    host = f"[{host}]" if ":" in host else host
    uploader = BookUploader(
        node.name,
        lender,
        book,
        lambda: peers.channel(COORDINATOR),
        lambda: _bound_address(server, host),
        party_header=node.name if insecure else None,
    )
    uploader.start()
    return ConsortiumQuerier(node.name, lenders, peers, ready_timeout_s=READY_TIMEOUT_S)


def _bound_address(server: NodeServer, host: str) -> str | None:
    try:
        return f"{host}:{server.port}"
    except ConfigError:
        return None  # Not serving yet.


class BookUploader:
    """Uploads a lender's book to the coordinator from a daemon thread, and again once the
    coordinator no longer lists the lender's table (a restarted coordinator holds none)."""

    def __init__(
        self,
        name: str,
        lender: DebtLender,
        book: Mapping[str, int],
        coordinator: Callable[[], grpc.Channel],
        own_address: Callable[[], str | None],
        *,
        party_header: str | None = None,
    ) -> None:
        self._service = table_health_service(name)
        self._lender = lender
        self._book = dict(book)
        self._coordinator = coordinator
        self._own_address = own_address
        self._party_header = party_header
        self._stop = threading.Event()
        self.uploaded = threading.Event()
        self._thread = threading.Thread(target=self._run, name="debt-upload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        address = self._own_address()
        while address is None and not self._stop.wait(0.05):
            address = self._own_address()
        metadata = [(ADDRESS_METADATA, address or "")]
        if self._party_header is not None:
            # Insecure mode: the channel adds the (forgeable) party header to unary calls only.
            metadata.append((PARTY_METADATA, self._party_header))
        while not self._stop.is_set():
            self._upload_until_accepted(metadata)
            self._watch_until_lost()

    def _upload_until_accepted(self, metadata: list[tuple[str, str]]) -> None:
        pending = self._lender.prepare_upload(self._book)
        delay, last = 0.2, ""
        while not self._stop.is_set():
            try:
                stub = debt_pb2_grpc.DebtServiceStub(self._coordinator())
                rows = send_upload(self._lender, pending, stub, metadata=metadata)
            except FedCreditError as exc:
                if str(exc) != last:
                    log.warning("loan book not uploaded yet (will retry): %s", exc)
                    last = str(exc)
                self._stop.wait(delay)
                delay = min(2 * delay, 5.0)
                continue
            log.info("loan book uploaded: %d customers, key epoch %d", rows, pending.key.epoch)
            self.uploaded.set()
            return

    def _watch_until_lost(self) -> None:
        while not self._stop.wait(WATCH_S):
            stub = health_pb2_grpc.HealthStub(self._coordinator())
            request = health_pb2.HealthCheckRequest(service=self._service)
            try:
                reply = stub.Check(request, timeout=WATCH_S)
            except grpc.RpcError as exc:
                if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.NOT_FOUND:
                    log.warning("the coordinator holds no loan book of ours: uploading again")
                    return
                reply = None
            if reply is None or reply.status != health_pb2.HealthCheckResponse.SERVING:
                log.warning("lost the coordinator: the loan book is uploaded again once it is back")
                return


class ConsortiumQuerier:
    """Asks the consortium, as lender ``name``, about applicants (the querier's side)."""

    def __init__(
        self,
        name: str,
        lenders: Sequence[str],
        peers: Peers,
        *,
        min_count_for_total: int = 2,
        timeout_s: float = CALL_TIMEOUT_S,
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> None:
        if name not in lenders:
            raise ConfigError(f"{name!r} is not a lending party (one with a loans file)")
        self._name = name
        self._others = [n for n in lenders if n != name]
        self._peers = peers
        self._min_count = min_count_for_total
        self._timeout_s = timeout_s
        # Right after the nodes start, lenders are still uploading: wait for them, but only
        # within this window, so that a consortium that stays broken does not slow every call.
        self._ready_until = time.monotonic() + ready_timeout_s
        self._pool = ThreadPoolExecutor(max_workers=max(2, len(self._others)))

    def __call__(
        self, ids: Sequence[str], on_wait: Callable[[], None] | None = None
    ) -> list[DebtResult]:
        """One result per applicant, in order."""
        others = {n: debt_pb2_grpc.DebtServiceStub(self._peers.channel(n)) for n in self._others}
        coordinator = debt_pb2_grpc.DebtServiceStub(self._peers.channel(COORDINATOR))
        results: list[DebtResult] = []
        for start in range(0, len(ids), QUERY_CHUNK):
            chunk = ids[start : start + QUERY_CHUNK]
            results += ask(
                chunk,
                others,
                coordinator,
                min_count_for_total=self._min_count,
                timeout_s=self._timeout_s + PER_APPLICANT_S * len(chunk),
                pool=self._pool,
                ready_timeout_s=max(0.0, self._ready_until - time.monotonic()),
                on_wait=on_wait,
            )
        return results

    def close(self) -> None:
        self._pool.shutdown(wait=False)
