"""Loan-stacking messages (debt.proto) to ``fedcredit.debt`` domain messages and back.

Every ciphertext of an upload or a masked batch is validated here against the lender's key;
a point list whose size does not match its count is refused (``InvalidRequest``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from fedcredit.crypto import DigitPacked, PublicKey, digits_from_bytes, digits_to_bytes
from fedcredit.debt import (
    LenderTags,
    MaskedBatch,
    OPRFAnswer,
    QueryAnswer,
    QueryRequest,
    SealedShares,
    UploadTable,
)
from fedcredit.debt.dleq import PROOF_BYTES
from fedcredit.debt.encoding import SUM_BYTES
from fedcredit.debt.oprf import POINT_BYTES, TAG_BYTES
from fedcredit.errors import CryptoError, ProtocolError
from fedcredit.node.errors import InvalidRequest
from fedcredit.node.serde.common import (
    ints_from_bytes,
    ints_to_bytes,
    vector_from_proto,
    vector_to_proto,
)
from fedcredit.proto.v1 import common_pb2, debt_pb2

UPLOAD_CHUNK_ROWS = 4096


def split(data: bytes, width: int, count: int, what: str) -> tuple[bytes, ...]:
    """``count`` items of ``width`` bytes from ``data`` (InvalidRequest when the sizes differ)."""
    if len(data) != width * count:
        raise InvalidRequest(f"expected {count} {what} of {width} bytes, got {len(data)} bytes")
    return tuple(data[i : i + width] for i in range(0, len(data), width))


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
        tags.extend(split(chunk.tags, TAG_BYTES, count, "tags"))
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
            split(e.evaluated, POINT_BYTES, size, f"evaluated points for {e.lender!r}"),
            bytes(e.proof),
            split(e.points, POINT_BYTES, size, f"points for {e.lender!r}"),
        )
        for e in message.lenders
    )
    return QueryRequest(
        size,
        bytes(message.recipient_key),
        message.min_count_for_total,
        lenders,
        split(message.blinded, POINT_BYTES, size, "blinded points"),
        split(message.proofs, PROOF_BYTES, size, "proofs"),
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


def points_of(message: debt_pb2.DebtPoints) -> tuple[bytes, ...]:
    return split(message.points, POINT_BYTES, message.count, "points")


def oprf_answer_of(message: debt_pb2.DebtPoints, size: int) -> OPRFAnswer:
    """A lender's OPRF answer to ``size`` points."""
    points = split(message.points, POINT_BYTES, size, "points")
    return OPRFAnswer(message.epoch, points, bytes(message.proof))


def masked_batch_to_proto(batch: MaskedBatch, public_key: PublicKey) -> debt_pb2.DebtMaskedBatch:
    return debt_pb2.DebtMaskedBatch(
        size=batch.size,
        recipient_key=batch.recipient_key,
        packed=digits_to_proto(batch.packed, public_key),
        group_size=batch.packed.group,
    )


def masked_batch_of(message: debt_pb2.DebtMaskedBatch, public_key: PublicKey) -> MaskedBatch:
    packed = digits_from_proto(message, public_key)
    return MaskedBatch(message.size, bytes(message.recipient_key), packed)


def sealed_shares_to_proto(shares: SealedShares) -> debt_pb2.DebtSealedShares:
    return debt_pb2.DebtSealedShares(box=shares.box)


def sealed_shares_of(message: debt_pb2.DebtSealedShares) -> SealedShares:
    return SealedShares(box=bytes(message.box))


def upload_ack(epoch: int, rows: int) -> debt_pb2.DebtUploadAck:
    return debt_pb2.DebtUploadAck(epoch=epoch, rows=rows)
