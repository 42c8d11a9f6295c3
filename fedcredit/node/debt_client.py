"""The loan-stacking check's client side over gRPC (docs/DEBT.md): a lender uploads its book to
the coordinator (``send_upload``) and a querier asks about applicants (``ask``); and the
coordinator's way to reach each lender (``LenderStubs``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import grpc

from fedcredit.debt import DebtLender, DebtQuery, DebtResult, OPRFAnswer, PendingUpload
from fedcredit.debt.oprf import POINT_BYTES
from fedcredit.errors import PartyUnavailableError, ProtocolError
from fedcredit.node.serde import debt
from fedcredit.node.transport.client import Metadata, RemoteCallError, call
from fedcredit.node.transport.peers import fan_out
from fedcredit.proto.v1 import debt_pb2, debt_pb2_grpc


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
