"""gRPC servicers and client helpers of the loan-stacking protocol (``DebtService``).

Thin servicers: each RPC checks who calls (from the TLS client certificate), converts the
protobuf message into a ``fedcredit.debt`` domain message, calls one function and converts the
answer back. The coordinator's ``Query`` fans out ``DecryptMasked`` to every other lender.
A lender's upload may say, in the ``x-fedcredit-debt-address`` header, where its node listens
(its name comes from its certificate, so it can only speak for itself): nodes started on
ephemeral ports are found that way. Peers see one-line ``ProtocolError`` messages (they hold no secret) and opaque ciphertext
errors; details of the latter go to the local log.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, Protocol, TypeVar

import grpc

from fedcredit.config import Endpoint
from fedcredit.crypto import DigitPacked, PublicKey, digits_from_bytes, digits_to_bytes
from fedcredit.debt import (
    DebtCoordinator,
    DebtLender,
    DebtQuery,
    DebtResult,
    LenderTags,
    MaskedBatch,
    OPRFAnswer,
    OPRFRequest,
    PendingUpload,
    QueryAnswer,
    QueryRequest,
    SealedShares,
    UploadTable,
)
from fedcredit.debt.dleq import PROOF_BYTES
from fedcredit.debt.encoding import SUM_BYTES
from fedcredit.debt.oprf import POINT_BYTES, TAG_BYTES
from fedcredit.errors import CryptoError, FedCreditError, PartyUnavailableError, ProtocolError
from fedcredit.node.client import Metadata, RemoteCallError, call
from fedcredit.node.convert import (
    ints_from_bytes,
    ints_to_bytes,
    vector_from_proto,
    vector_to_proto,
)
from fedcredit.node.identity import caller_party
from fedcredit.proto.v1 import common_pb2, debt_pb2, debt_pb2_grpc

LOG = logging.getLogger(__name__)
UPLOAD_CHUNK_ROWS = 4096
ADDRESS_METADATA = "x-fedcredit-debt-address"
"""Header of an upload: ``host:port`` where the uploading lender's node serves DebtService."""
_T = TypeVar("_T")


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


def _split(data: bytes, width: int, count: int, what: str) -> tuple[bytes, ...]:
    if len(data) != width * count:
        raise ProtocolError(f"expected {count} {what} of {width} bytes, got {len(data)} bytes")
    return tuple(data[i : i + width] for i in range(0, len(data), width))


def _abort(context: grpc.ServicerContext, exc: FedCreditError) -> NoReturn:
    if isinstance(exc, CryptoError):
        LOG.warning("refused ciphertexts from %s: %s", caller_party(context), exc)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid ciphertexts")
    code = grpc.StatusCode.INVALID_ARGUMENT
    if "stale epoch" in str(exc) or "has not uploaded" in str(exc):
        code = grpc.StatusCode.FAILED_PRECONDITION
    context.abort(code, str(exc))


def _run(context: grpc.ServicerContext, step: Callable[[], _T]) -> _T:
    try:
        return step()
    except FedCreditError as exc:
        _abort(context, exc)


def _require(context: grpc.ServicerContext, allowed: Callable[[str], bool], rpc: str) -> str:
    caller = caller_party(context)
    if not allowed(caller):
        context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{caller!r} may not call {rpc}")
    return caller


class DebtLenderServicer(debt_pb2_grpc.DebtServiceServicer):
    """A lender's node: OPRF answers for other lenders, masked decryption for the coordinator."""

    def __init__(self, lender: DebtLender, name: str, lenders: set[str], coordinator: str) -> None:
        self._lender = lender
        self._name = name
        self._queriers = set(lenders) - {name}
        self._coordinator = coordinator

    def EvaluateOPRF(self, request: debt_pb2.DebtPoints, context: grpc.ServicerContext) -> Any:
        _require(context, self._queriers.__contains__, "EvaluateOPRF")

        def step() -> debt_pb2.DebtPoints:
            points = _split(request.points, POINT_BYTES, request.count, "points")
            answer = self._lender.evaluate(OPRFRequest(points))
            return points_to_proto(answer.points, answer.epoch, answer.proof)

        return _run(context, step)

    def DecryptMasked(
        self, request: debt_pb2.DebtMaskedBatch, context: grpc.ServicerContext
    ) -> Any:
        _require(context, self._coordinator.__eq__, "DecryptMasked")

        def step() -> debt_pb2.DebtSealedShares:
            packed = digits_from_proto(request, self._lender.public_key)
            batch = MaskedBatch(request.size, bytes(request.recipient_key), packed)
            return debt_pb2.DebtSealedShares(box=self._lender.decrypt_masked(batch).box)

        return _run(context, step)

    def UploadTable(
        self, request_iterator: Iterator[debt_pb2.DebtUploadChunk], context: grpc.ServicerContext
    ) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "uploads go to the coordinator")

    def Query(self, request: debt_pb2.DebtQueryRequest, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "queries go to the coordinator")


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

    def UploadTable(
        self, request_iterator: Iterator[debt_pb2.DebtUploadChunk], context: grpc.ServicerContext
    ) -> Any:
        caller = _require(context, self._lenders.names.__contains__, "UploadTable")
        address = _announced_address(context)
        check = functools.partial(self._coordinator.check_key, caller)
        upload = _run(context, lambda: upload_from_chunks(request_iterator, check))
        table = _run(context, lambda: self._coordinator.accept_upload(caller, upload))
        if address is not None:
            self._lenders.announce(caller, address)
        if self._on_upload is not None:
            self._on_upload(caller)
        LOG.info("lender %s uploaded %d rows (epoch %d)", caller, table.customers, table.epoch)
        return debt_pb2.DebtUploadAck(epoch=table.epoch, rows=table.customers)

    def Query(self, request: debt_pb2.DebtQueryRequest, context: grpc.ServicerContext) -> Any:
        caller = _require(context, self._lenders.names.__contains__, "Query")
        loaded = set(self._coordinator.lenders)
        missing = sorted(n for n in self._lenders.names if n != caller and n not in loaded)
        if missing:
            # Lender nodes upload in the background once they start: ask again shortly.
            context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"waiting for the table(s) of lender(s) {', '.join(missing)}: not uploaded yet",
            )
        domain = _run(context, lambda: query_from_proto(request))
        prepared = _run(context, lambda: self._coordinator.prepare(caller, domain))

        def decrypt(item: tuple[str, MaskedBatch]) -> tuple[str, SealedShares]:
            name, batch = item
            table = self._coordinator.table(name)
            message = debt_pb2.DebtMaskedBatch(
                size=batch.size,
                recipient_key=batch.recipient_key,
                packed=digits_to_proto(batch.packed, table.public_key),
                group_size=batch.packed.group,
            )
            reply = call(
                self._lenders.stub(name).DecryptMasked,
                message,
                party=name,
                timeout_s=self._timeout_s,
            )
            self.last_lender_bytes += message.ByteSize() + reply.ByteSize()
            return name, SealedShares(box=bytes(reply.box))

        self.last_lender_bytes = 0
        try:
            shares = dict(self._pool.map(decrypt, prepared.batches.items()))
        except FedCreditError as exc:
            LOG.warning("a lender failed to decrypt its masked batch: %s", exc)
            context.abort(grpc.StatusCode.UNAVAILABLE, f"a lender did not answer: {exc}")
        answer = _run(context, lambda: prepared.answer(shares))
        return answer_to_proto(answer)

    def EvaluateOPRF(self, request: debt_pb2.DebtPoints, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the coordinator holds no OPRF key")

    def DecryptMasked(
        self, request: debt_pb2.DebtMaskedBatch, context: grpc.ServicerContext
    ) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the coordinator holds no lender key")


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
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{ADDRESS_METADATA} must be host:port")
    return address


# Conversions between protobuf messages and domain messages.


def digits_to_proto(packed: DigitPacked, public_key: PublicKey) -> common_pb2.PackedCiphers:
    return common_pb2.PackedCiphers(
        key_fingerprint=packed.fingerprint,
        slot_bits=packed.digit_bits,
        count=packed.count,
        data=digits_to_bytes(packed, public_key),
    )


def digits_from_proto(message: debt_pb2.DebtMaskedBatch, public_key: PublicKey) -> DigitPacked:
    """Validate and load a masked batch's ciphertexts (CryptoError when malformed)."""
    packed = message.packed
    if packed.key_fingerprint != public_key.fingerprint:
        raise CryptoError("packed ciphertexts were made under another public key")
    if packed.count != message.size:
        raise ProtocolError(f"a masked batch must carry {message.size} values")
    return digits_from_bytes(
        packed.data,
        public_key,
        digit_bits=packed.slot_bits,
        group=message.group_size,
        count=packed.count,
    )


def points_to_proto(
    points: Sequence[bytes], epoch: int = 0, proof: bytes = b""
) -> debt_pb2.DebtPoints:
    return debt_pb2.DebtPoints(epoch=epoch, count=len(points), points=b"".join(points), proof=proof)


def upload_to_chunks(
    table: UploadTable, chunk_rows: int = UPLOAD_CHUNK_ROWS
) -> Iterator[debt_pb2.DebtUploadChunk]:
    """The upload as a stream of chunks; the first carries the header."""
    total = len(table.tags)
    for start in range(0, max(total, 1), chunk_rows):
        stop = min(total, start + chunk_rows)
        chunk = debt_pb2.DebtUploadChunk(
            tags=b"".join(table.tags[start:stop]),
            ciphertexts=vector_to_proto(table.ciphertexts.take(list(range(start, stop)))),
        )
        if start == 0:
            chunk.epoch = table.epoch
            chunk.public_key_json = table.public_key.to_json()
            chunk.total_rows = total
            chunk.oprf_key = table.oprf_key
        yield chunk


def upload_from_chunks(
    chunks: Iterator[debt_pb2.DebtUploadChunk],
    check_key: Callable[[PublicKey], None] | None = None,
) -> UploadTable:
    """Reassemble and validate an upload (every ciphertext checked against the key).

    ``check_key`` vets the lender's key (the coordinator's ``check_key``) before any row is read.
    """
    first = next(chunks, None)
    if first is None or not first.public_key_json:
        raise ProtocolError("an upload must start with a header chunk")
    public_key = PublicKey.from_json(first.public_key_json)
    if check_key is not None:
        check_key(public_key)
    tags: list[bytes] = []
    parts = []
    for chunk in (first, *chunks):
        count = chunk.ciphertexts.count
        tags.extend(_split(chunk.tags, TAG_BYTES, count, "tags"))
        parts.append(vector_from_proto(chunk.ciphertexts, public_key, scale_bits=0, count=count))
        if len(tags) > first.total_rows:
            raise ProtocolError(f"the upload holds more than the {first.total_rows} rows announced")
    if len(tags) != first.total_rows:
        raise ProtocolError(f"the upload holds {len(tags)} rows, not {first.total_rows}")
    ciphertexts = parts[0].concat(*parts[1:])
    return UploadTable(first.epoch, public_key, tuple(tags), ciphertexts, bytes(first.oprf_key))


def query_to_proto(request: QueryRequest) -> debt_pb2.DebtQueryRequest:
    return debt_pb2.DebtQueryRequest(
        size=request.size,
        recipient_key=request.recipient_key,
        min_count_for_total=request.min_count_for_total,
        lenders=[
            debt_pb2.DebtLenderTags(
                lender=e.lender,
                epoch=e.epoch,
                evaluated=b"".join(e.evaluated),
                proof=e.proof,
                points=b"".join(e.points),
            )
            for e in request.lenders
        ],
        blinded=b"".join(request.blinded),
        proofs=b"".join(request.proofs),
    )


def query_from_proto(message: debt_pb2.DebtQueryRequest) -> QueryRequest:
    size = message.size
    lenders = tuple(
        LenderTags(
            e.lender,
            e.epoch,
            _split(e.evaluated, POINT_BYTES, size, f"evaluated points for {e.lender!r}"),
            bytes(e.proof),
            _split(e.points, POINT_BYTES, size, f"points for {e.lender!r}"),
        )
        for e in message.lenders
    )
    return QueryRequest(
        size,
        bytes(message.recipient_key),
        message.min_count_for_total,
        lenders,
        _split(message.blinded, POINT_BYTES, size, "blinded points"),
        _split(message.proofs, PROOF_BYTES, size, "proofs"),
    )


def answer_to_proto(answer: QueryAnswer) -> debt_pb2.DebtQueryAnswer:
    return debt_pb2.DebtQueryAnswer(
        boxes=list(answer.boxes),
        mask_sums=ints_to_bytes(list(answer.mask_sums), SUM_BYTES),
        min_count_for_total=answer.min_count_for_total,
        group_size=answer.group_size,
    )


def answer_from_proto(message: debt_pb2.DebtQueryAnswer, size: int) -> QueryAnswer:
    try:
        sums = ints_from_bytes(message.mask_sums, SUM_BYTES, size)
    except CryptoError as exc:
        raise ProtocolError(f"the coordinator's mask sums are malformed: {exc}") from exc
    if message.group_size < 1:
        raise ProtocolError("the coordinator's answer carries no group size")
    return QueryAnswer(
        tuple(bytes(b) for b in message.boxes),
        tuple(sums),
        message.min_count_for_total,
        message.group_size,
    )


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
            upload_to_chunks(pending.table),
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

    def evaluate(item: tuple[str, debt_pb2_grpc.DebtServiceStub]) -> tuple[str, OPRFAnswer]:
        name, stub = item
        reply = call(stub.EvaluateOPRF, request, party=name, timeout_s=timeout_s)
        points = _split(reply.points, POINT_BYTES, size, "points")
        return name, OPRFAnswer(reply.epoch, points, bytes(reply.proof))

    if pool is None:
        return dict(map(evaluate, lenders.items()))
    return dict(pool.map(evaluate, lenders.items()))


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
        request = points_to_proto(query.oprf_request().points)

        answers = _evaluate_all(request, len(applicants), lenders, timeout_s, pool)
        message = query_to_proto(query.request(answers))
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
        return query.finish(answer_from_proto(reply, len(applicants)))
    raise ProtocolError("the query kept meeting re-uploaded tables; try again later")
