"""Protobuf messages to domain objects and back, the parts every service shares: envelopes,
ciphertext vectors, packed ciphertexts (one module per service area sits next to this one).

Every ciphertext that arrives from a peer goes through ``fedcredit.crypto`` validation here:
the key fingerprint, the expected scale and count, and 0 < c < n², gcd(c, n) = 1.
"""

from __future__ import annotations

from fedcredit.crypto import (
    EncryptedVector,
    PackedCiphertexts,
    PublicKey,
    packed_from_bytes,
    packed_to_bytes,
    vector_from_bytes,
    vector_to_bytes,
)
from fedcredit.errors import CryptoError, ProtocolError
from fedcredit.node.results import IncomingVector
from fedcredit.proto.v1 import common_pb2
from fedcredit.protocol.guard import Header

MAX_JOB_ID_CHARS = 200


def header_of(env: common_pb2.Envelope) -> Header:
    """The envelope's header; a missing, overlong or unprintable job id is refused."""
    job_id = env.job_id
    if not job_id or len(job_id) > MAX_JOB_ID_CHARS or not job_id.isprintable():
        raise ProtocolError(f"envelope has no valid job id (1-{MAX_JOB_ID_CHARS} printable chars)")
    return Header(job_id=job_id, epoch=env.epoch, batch=env.batch, seq=env.seq)


def envelope(header: Header) -> common_pb2.Envelope:
    return common_pb2.Envelope(
        job_id=header.job_id, epoch=header.epoch, batch=header.batch, seq=header.seq
    )


def vector_to_proto(vector: EncryptedVector) -> common_pb2.CipherVector:
    return common_pb2.CipherVector(
        key_fingerprint=vector.public_key.fingerprint,
        scale_bits=vector.scale_bits,
        count=len(vector),
        data=vector_to_bytes(vector),
    )


def vector_from_proto(
    message: common_pb2.CipherVector, public_key: PublicKey, *, scale_bits: int, count: int | None
) -> EncryptedVector:
    """Validate and load a peer's ciphertext vector (CryptoError on anything unexpected)."""
    if message.key_fingerprint != public_key.fingerprint:
        raise CryptoError("ciphertexts were made under another public key (fingerprint differs)")
    if message.scale_bits != scale_bits:
        raise CryptoError(
            f"ciphertexts carry scale 2^{message.scale_bits}, expected 2^{scale_bits}"
        )
    if count is not None and message.count != count:
        raise CryptoError(f"expected {count} ciphertexts, got {message.count}")
    return vector_from_bytes(message.data, public_key, message.scale_bits, message.count)


def incoming_vector(message: common_pb2.CipherVector) -> IncomingVector:
    """``message`` loaded by ``vector_from_proto`` once the receiver says what it expects."""

    def load(public_key: PublicKey, scale_bits: int, count: int | None) -> EncryptedVector:
        return vector_from_proto(message, public_key, scale_bits=scale_bits, count=count)

    return load


def cipher_message(
    env: common_pb2.Envelope, phase: str, vector: EncryptedVector
) -> common_pb2.CipherMessage:
    return common_pb2.CipherMessage(env=env, phase=phase, vector=vector_to_proto(vector))


def ack(env: common_pb2.Envelope) -> common_pb2.Ack:
    return common_pb2.Ack(env=env)


def packed_to_proto(packed: PackedCiphertexts, public_key: PublicKey) -> common_pb2.PackedCiphers:
    return common_pb2.PackedCiphers(
        key_fingerprint=packed.fingerprint,
        slot_bits=packed.slot_bits,
        value_bits=packed.value_bits,
        count=packed.count,
        data=packed_to_bytes(packed, public_key),
    )


def packed_from_proto(
    message: common_pb2.PackedCiphers, public_key: PublicKey
) -> PackedCiphertexts:
    """Validate and load masked, packed ciphertexts sent to the coordinator."""
    if message.key_fingerprint != public_key.fingerprint:
        raise CryptoError("packed ciphertexts were made under another public key")
    return packed_from_bytes(
        message.data,
        public_key,
        slot_bits=message.slot_bits,
        value_bits=message.value_bits,
        count=message.count,
    )


def ints_to_bytes(values: list[int], width: int) -> bytes:
    """Non-negative integers as fixed-width big-endian bytes."""
    return b"".join(int(v).to_bytes(width, "big") for v in values)


def ints_from_bytes(data: bytes, width: int, count: int) -> list[int]:
    if width <= 0 or len(data) != width * count:
        raise CryptoError(f"expected {count} values of {width} bytes, got {len(data)} bytes")
    return [int.from_bytes(data[i : i + width], "big") for i in range(0, len(data), width)]


def slot_width(slot_bits: int) -> int:
    return (slot_bits + 7) // 8
