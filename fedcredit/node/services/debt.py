"""The DebtService of a lender's node and of the coordinator's (debt.proto).

Each RPC checks who calls (from the TLS client certificate), decodes the message
(``serde.debt``), calls one function (``fedcredit.debt`` or ``fedcredit.node.debt_job``) and
encodes the answer; errors become statuses through the one table (``services.errors``). A lender's
upload may say, in the ``x-fedcredit-debt-address`` header, where its node listens (its name
comes from its certificate, so it can only speak for itself): nodes started on ephemeral ports
are found that way.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import grpc

from fedcredit.config import Endpoint
from fedcredit.debt import DebtCoordinator, DebtLender
from fedcredit.node.debt_client import FixedStubs, LenderStubs
from fedcredit.node.debt_job import answer_query, evaluate_oprf, refused_as_invalid
from fedcredit.node.errors import CallerRefused, InvalidRequest, NotServed
from fedcredit.node.serde import debt
from fedcredit.node.services.errors import rpc
from fedcredit.node.transport.identity import caller_party
from fedcredit.proto.v1 import debt_pb2, debt_pb2_grpc

LOG = logging.getLogger("fedcredit.node.services.debt")
ADDRESS_METADATA = "x-fedcredit-debt-address"
"""Header of an upload: ``host:port`` where the uploading lender's node serves DebtService."""


def _require(context: grpc.ServicerContext, allowed: Callable[[str], bool], name: str) -> str:
    caller = caller_party(context)
    if not allowed(caller):
        raise CallerRefused(f"{caller!r} may not call {name}")
    return caller


class DebtLenderServicer(debt_pb2_grpc.DebtServiceServicer):
    """A lender's node: OPRF answers for other lenders, masked decryption for the coordinator."""

    def __init__(self, lender: DebtLender, name: str, lenders: set[str], coordinator: str) -> None:
        self._lender = lender
        self._name = name
        self._queriers = set(lenders) - {name}
        self._coordinator = coordinator

    @rpc
    def EvaluateOPRF(
        self, request: debt_pb2.DebtPoints, context: grpc.ServicerContext
    ) -> debt_pb2.DebtPoints:
        _require(context, self._queriers.__contains__, "EvaluateOPRF")
        answer = evaluate_oprf(self._lender, debt.points_of(request))
        return debt.points_to_proto(answer.points, answer.epoch, answer.proof)

    @rpc
    def DecryptMasked(
        self, request: debt_pb2.DebtMaskedBatch, context: grpc.ServicerContext
    ) -> debt_pb2.DebtSealedShares:
        _require(context, self._coordinator.__eq__, "DecryptMasked")
        with refused_as_invalid():
            batch = debt.masked_batch_of(request, self._lender.public_key)
            shares = self._lender.decrypt_masked(batch)
        return debt.sealed_shares_to_proto(shares)

    @rpc
    def UploadTable(
        self, request_iterator: Iterator[debt_pb2.DebtUploadChunk], context: grpc.ServicerContext
    ) -> debt_pb2.DebtUploadAck:
        raise NotServed("uploads go to the coordinator")

    @rpc
    def Query(
        self, request: debt_pb2.DebtQueryRequest, context: grpc.ServicerContext
    ) -> debt_pb2.DebtQueryAnswer:
        raise NotServed("queries go to the coordinator")


class DebtCoordinatorServicer(debt_pb2_grpc.DebtServiceServicer):
    """The coordinator's node: lender uploads, and queries it answers with the lenders' help."""

    def __init__(
        self,
        coordinator: DebtCoordinator,
        lenders: Mapping[str, debt_pb2_grpc.DebtServiceStub] | LenderStubs,
        timeout_s: float = 120.0,
        on_upload: Callable[[str], None] | None = None,
    ) -> None:
        self._coordinator = coordinator
        self._on_upload = on_upload
        self._lenders: LenderStubs = (
            FixedStubs(lenders) if isinstance(lenders, Mapping) else lenders
        )
        self._timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self._lenders.names)))
        self.last_lender_bytes = 0
        """Bytes exchanged with lenders by the last query (for benchmarks)."""

    @rpc
    def UploadTable(
        self, request_iterator: Iterator[debt_pb2.DebtUploadChunk], context: grpc.ServicerContext
    ) -> debt_pb2.DebtUploadAck:
        caller = _require(context, self._lenders.names.__contains__, "UploadTable")
        address = _announced_address(context)
        check = functools.partial(self._coordinator.check_key, caller)
        with refused_as_invalid():
            upload = debt.upload_from_chunks(request_iterator, check)
            table = self._coordinator.accept_upload(caller, upload)
        if address is not None:
            self._lenders.announce(caller, address)
        if self._on_upload is not None:
            self._on_upload(caller)
        LOG.info("lender %s uploaded %d rows (epoch %d)", caller, table.customers, table.epoch)
        return debt.upload_ack(table.epoch, table.customers)

    @rpc
    def Query(
        self, request: debt_pb2.DebtQueryRequest, context: grpc.ServicerContext
    ) -> debt_pb2.DebtQueryAnswer:
        caller = _require(context, self._lenders.names.__contains__, "Query")
        query = debt.query_from_proto(request)
        answered = answer_query(
            self._coordinator,
            self._lenders,
            caller,
            query,
            timeout_s=self._timeout_s,
            pool=self._pool,
        )
        self.last_lender_bytes = answered.lender_bytes
        return debt.answer_to_proto(answered.answer)

    @rpc
    def EvaluateOPRF(
        self, request: debt_pb2.DebtPoints, context: grpc.ServicerContext
    ) -> debt_pb2.DebtPoints:
        raise NotServed("the coordinator holds no OPRF key")

    @rpc
    def DecryptMasked(
        self, request: debt_pb2.DebtMaskedBatch, context: grpc.ServicerContext
    ) -> debt_pb2.DebtSealedShares:
        raise NotServed("the coordinator holds no lender key")


def _announced_address(context: grpc.ServicerContext) -> str | None:
    """The ``host:port`` an uploading lender announces, checked; None when absent."""
    values = [v for k, v in context.invocation_metadata() if k == ADDRESS_METADATA]
    if not values:
        return None
    address = values[-1]
    try:
        if not isinstance(address, str):
            raise ValueError("not text")
        Endpoint("lender", address).port  # noqa: B018 - parsing is the check
    except ValueError:
        raise InvalidRequest(f"{ADDRESS_METADATA} must be host:port") from None
    return address
