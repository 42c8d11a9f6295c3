"""The loan-stacking check over gRPC, as each side runs it (docs/DEBT.md): a lender uploads its
book (``send_upload``), a querier asks about applicants (``ask``), and the coordinator answers a
query with every other lender's masked decryption (``answer_query``). Messages are built and
read by ``fedcredit.node.serde.debt``; the servicers (``fedcredit.node.services.debt``) only
check callers and call one function here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import grpc

from fedcredit.debt import (
    DebtCoordinator,
    DebtLender,
    DebtQuery,
    DebtResult,
    OPRFAnswer,
    OPRFRequest,
    PendingUpload,
    QueryAnswer,
    QueryRequest,
    SealedShares,
)
from fedcredit.debt.coordinator import StaleTableError
from fedcredit.debt.oprf import POINT_BYTES
from fedcredit.errors import CryptoError, FedCreditError, PartyUnavailableError, ProtocolError
from fedcredit.node.errors import InvalidRequest, NotReady
from fedcredit.node.serde import debt
from fedcredit.node.transport.client import Metadata, RemoteCallError, call
from fedcredit.node.transport.peers import fan_out
from fedcredit.proto.v1 import debt_pb2, debt_pb2_grpc

LOG = logging.getLogger("fedcredit.node.debt_service")


@contextmanager
def refused_as_invalid() -> Iterator[None]:
    """A debt request's refusal by ``fedcredit.debt`` is about what the request holds
    (``InvalidRequest``), unless a lender's table is stale or a ciphertext is bad."""
    try:
        yield
    except (StaleTableError, CryptoError, InvalidRequest):
        raise
    except FedCreditError as exc:
        raise InvalidRequest(str(exc)) from exc


class LenderStubs(Protocol):
    """The coordinator's way to reach each lender (``node.debt_node.LenderDirectory``)."""

    @property
    def names(self) -> frozenset[str]:
        """Every lender of the consortium."""
        ...

    def stub(self, name: str) -> debt_pb2_grpc.DebtServiceStub: ...

    def announce(self, name: str, address: str) -> None:
        """Lender ``name`` (authenticated) says where its node listens."""
        ...


class FixedStubs:
    """Stubs made in advance (in-process consortia): announced addresses are ignored."""

    def __init__(self, stubs: Mapping[str, debt_pb2_grpc.DebtServiceStub]) -> None:
        self._stubs = dict(stubs)
        self.names = frozenset(stubs)

    def stub(self, name: str) -> debt_pb2_grpc.DebtServiceStub:
        return self._stubs[name]

    def announce(self, name: str, address: str) -> None:
        return None


# The lender's and the coordinator's sides.


def evaluate_oprf(lender: DebtLender, points: Sequence[bytes]) -> OPRFAnswer:
    """A lender's OPRF answer to another lender's blinded points."""
    with refused_as_invalid():
        return lender.evaluate(OPRFRequest(tuple(points)))


@dataclass(frozen=True)
class Answered:
    """The coordinator's answer to a query, and the bytes it exchanged with lenders for it."""

    answer: QueryAnswer
    lender_bytes: int


def answer_query(
    coordinator: DebtCoordinator,
    lenders: LenderStubs,
    caller: str,
    query: QueryRequest,
    *,
    timeout_s: float,
    pool: Executor | None,
) -> Answered:
    """Check ``caller``'s query, have every other lender decrypt its masked batch, combine.

    ``NotReady`` while a lender's table has not arrived or a lender does not answer.
    """
    loaded = set(coordinator.lenders)
    missing = sorted(n for n in lenders.names if n != caller and n not in loaded)
    if missing:
        # Lender nodes upload in the background once they start: ask again shortly.
        raise NotReady(
            f"waiting for the table(s) of lender(s) {', '.join(missing)}: not uploaded yet"
        )
    with refused_as_invalid():
        prepared = coordinator.prepare(caller, query)
    try:
        messages = {
            name: debt.masked_batch_to_proto(batch, coordinator.table(name).public_key)
            for name, batch in prepared.batches.items()
        }
        replies = fan_out(
            {name: lenders.stub(name) for name in messages},
            lambda s: s.DecryptMasked,
            messages.__getitem__,
            timeout_s=timeout_s,
            idempotent=False,
            pool=pool,
        )
    except FedCreditError as exc:
        LOG.warning("a lender failed to decrypt its masked batch: %s", exc)
        raise NotReady(f"a lender did not answer: {exc}") from exc
    size = sum(messages[n].ByteSize() + r.ByteSize() for n, r in replies.items())
    shares: dict[str, SealedShares] = {n: debt.sealed_shares_of(r) for n, r in replies.items()}
    with refused_as_invalid():
        return Answered(prepared.answer(shares), size)


# Client side: what a lender runs to upload, and what a querier runs to ask.


def send_upload(
    lender: DebtLender,
    pending: PendingUpload,
    coordinator: debt_pb2_grpc.DebtServiceStub,
    timeout_s: float = 600.0,
    metadata: Metadata | None = None,
) -> int:
    """Stream an upload to the coordinator and switch to its key once accepted; rows stored.

    Raises ``PartyUnavailableError`` when the coordinator cannot be reached (try again later)
    and ``RemoteCallError`` when it refuses the upload.
    """
    try:
        ack = coordinator.UploadTable(
            debt.upload_to_chunks(pending.table),
            timeout=timeout_s,
            metadata=tuple(metadata) if metadata is not None else None,
        )
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = (exc.details() if isinstance(exc, grpc.Call) else str(exc)) or ""
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise PartyUnavailableError("coordinator", f"{code.name}: {details}") from exc
        raise RemoteCallError("coordinator", code, details) from exc
    lender.confirm_upload(pending)
    return int(ack.rows)


def _evaluate_all(
    request: debt_pb2.DebtPoints,
    size: int,
    lenders: Mapping[str, debt_pb2_grpc.DebtServiceStub],
    timeout_s: float,
    pool: ThreadPoolExecutor | None,
) -> dict[str, OPRFAnswer]:
    """Ask every lender, in parallel when a pool is given, to apply its OPRF key."""
    replies = fan_out(
        lenders,
        lambda s: s.EvaluateOPRF,
        lambda _: request,
        timeout_s=timeout_s,
        idempotent=False,
        pool=pool,
    )
    return {name: debt.oprf_answer_of(reply, size) for name, reply in replies.items()}


def ask(
    applicants: Sequence[str],
    lenders: Mapping[str, debt_pb2_grpc.DebtServiceStub],
    coordinator: debt_pb2_grpc.DebtServiceStub,
    *,
    min_count_for_total: int = 2,
    timeout_s: float = 300.0,
    pool: ThreadPoolExecutor | None = None,
    stats: dict[str, int] | None = None,
    ready_timeout_s: float = 0.0,
    on_wait: Callable[[], None] | None = None,
) -> list[DebtResult]:
    """Run one query as a lender against the other ``lenders``; one result per applicant.

    A lender that re-uploaded between the OPRF step and the query makes the coordinator
    refuse with a stale epoch: the query is then run once more from the start. While a node
    is unreachable, or the coordinator still waits for a lender's table, the query is tried
    again for up to ``ready_timeout_s`` seconds (``on_wait`` runs before each new try and may
    raise, e.g. when a local node process died).
    """
    deadline = time.monotonic() + ready_timeout_s
    delay = 0.2
    while True:
        try:
            return _ask_once(
                applicants, lenders, coordinator, min_count_for_total, timeout_s, pool, stats
            )
        except PartyUnavailableError:
            if time.monotonic() + delay > deadline:
                raise
        if on_wait is not None:
            on_wait()
        time.sleep(delay)
        delay = min(2 * delay, 2.0)


def _ask_once(
    applicants: Sequence[str],
    lenders: Mapping[str, debt_pb2_grpc.DebtServiceStub],
    coordinator: debt_pb2_grpc.DebtServiceStub,
    min_count_for_total: int,
    timeout_s: float,
    pool: ThreadPoolExecutor | None,
    stats: dict[str, int] | None,
) -> list[DebtResult]:
    for attempt in (1, 2):
        query = DebtQuery(applicants, min_count_for_total)
        request = debt.points_to_proto(query.oprf_request().points)

        answers = _evaluate_all(request, len(applicants), lenders, timeout_s, pool)
        message = debt.query_to_proto(query.request(answers))
        try:
            reply = call(coordinator.Query, message, party="coordinator", timeout_s=timeout_s)
        except RemoteCallError as exc:
            if attempt == 1 and exc.code == grpc.StatusCode.FAILED_PRECONDITION:
                continue
            raise
        if stats is not None:
            sent = request.ByteSize() * len(lenders) + message.ByteSize()
            received = sum(len(a.points) * POINT_BYTES + len(a.proof) for a in answers.values())
            received += reply.ByteSize()
            stats["bytes_querier"] = sent + received
        return query.finish(debt.answer_from_proto(reply, len(applicants)))
    raise ProtocolError("the query kept meeting re-uploaded tables; try again later")
