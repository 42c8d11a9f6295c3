"""Channels to other nodes and calls with deadlines, bounded retries and clear errors.

``open_channel`` connects to a node and, under TLS, checks that the node's certificate was
issued to the party name the federation file gives for that address. ``call`` puts a deadline
on every call, retries only idempotent calls, and turns an unreachable or silent peer into
``PartyUnavailableError``; any other failure status becomes ``RemoteCallError``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedcredit.errors import ConfigError, PartyUnavailableError, ProtocolError
from fedcredit.node.transport.identity import PARTY_METADATA
from fedcredit.node.transport.server import DEFAULT_MAX_MESSAGE_BYTES
from fedcredit.node.transport.tls import PinnedChannelCredentials

_R = TypeVar("_R")
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
Metadata = Sequence[tuple[str, str | bytes]]


class RemoteCallError(ProtocolError):
    """A peer answered a call with an error status other than UNAVAILABLE or a timeout."""

    def __init__(self, party: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"party {party!r} refused the call: {code.name}: {details}")
        self.party = party
        self.code = code
        self.details = details


def channel_options(party_name: str, max_message_bytes: int, secure: bool) -> list[tuple[str, Any]]:
    """Channel arguments for a channel to ``party_name``."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 5_000),
        ("grpc.keepalive_timeout_ms", 3_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # gRPC >= 1.5x times keepalive pings out after this, not keepalive_timeout_ms (default
        # 60 s): without it a partner that stops answering is noticed after a minute, not 8 s.
        ("grpc.http2.ping_timeout_ms", 3_000),
        # Bounds each reconnect (TCP + TLS handshake) to a silent partner (default 20 s).
        ("grpc.min_reconnect_backoff_ms", 2_000),
    ]
    if secure:
        # The server's certificate must name the party we mean to reach, whatever the address.
        options.append(("grpc.ssl_target_name_override", party_name))
    return options


if TYPE_CHECKING:
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStream = grpc.UnaryStreamClientInterceptor[Any, Any]
else:
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor
    _UnaryStream = grpc.UnaryStreamClientInterceptor


class _PartyHeader(_UnaryUnary, _UnaryStream):
    """Insecure mode only: says who we are in a header (forgeable, for local debugging)."""

    def __init__(self, self_name: str) -> None:
        self._self_name = self_name

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(details.metadata or ()), (PARTY_METADATA, self._self_name)]
        return _CallDetails(details, metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, base: grpc.ClientCallDetails, metadata: Metadata) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = tuple(metadata)
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


def open_channel(
    address: str,
    *,
    party_name: str,
    credentials: grpc.ChannelCredentials | None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    self_name: str | None = None,
) -> grpc.Channel:
    """A channel to the node ``party_name`` at ``address``; close it when done.

    With ``credentials`` (``tls.load_channel_credentials``) the node must present a certificate
    for ``party_name``, and for a pinned party exactly the pinned certificate. Without, the
    channel is plaintext and ``self_name`` (our own party name) is sent in the
    ``x-fedcredit-party`` header: insecure mode, for local debugging only.
    """
    options = channel_options(party_name, max_message_bytes, credentials is not None)
    if isinstance(credentials, PinnedChannelCredentials):
        # The federation file pins this party's certificate: trust only that certificate.
        credentials = credentials.for_party(party_name)
    if credentials is not None:
        return grpc.secure_channel(address, credentials, options=options)
    if not self_name:
        raise ConfigError("insecure channels need self_name, the caller's own party name")
    channel = grpc.insecure_channel(address, options=options)
    return grpc.intercept_channel(channel, _PartyHeader(self_name))


def call(
    fn: Callable[..., _R],
    request: Any,
    *,
    party: str,
    timeout_s: float,
    idempotent: bool = False,
    retries: int = 2,
    metadata: Metadata | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> _R:
    """``fn(request)`` with a deadline of ``timeout_s`` seconds per attempt.

    Only an ``idempotent`` call is retried, at most ``retries`` times, on UNAVAILABLE or
    DEADLINE_EXCEEDED, with exponential backoff and jitter. Raises ``PartyUnavailableError``
    when ``party`` stays unreachable or silent, ``RemoteCallError`` for any other status.
    """
    attempts = 1 + (max(0, retries) if idempotent else 0)
    for attempt in range(attempts):
        try:
            return fn(request, timeout=timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            code, details = _status(exc)
            if code not in _RETRYABLE:
                raise RemoteCallError(party, code, details) from exc
            if attempt + 1 == attempts:
                raise PartyUnavailableError(party, f"{code.name}: {details}") from exc
        sleep(min(5.0, 0.2 * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")  # pragma: no cover


def wait_for_ready(channel: grpc.Channel, party: str, timeout_s: float) -> None:
    """Return once ``party`` reports SERVING on its health service.

    Raises ``PartyUnavailableError`` after ``timeout_s`` seconds without that answer (the
    message has the last error: refused connection, failed handshake, NOT_SERVING), and
    ``RemoteCallError`` when the party refuses us outright (e.g. PERMISSION_DENIED).
    """
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    delay = 0.05
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PartyUnavailableError(party, f"not ready after {timeout_s:g}s: {last}")
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=min(remaining, 2.0))
        except grpc.RpcError as exc:
            code, details = _status(exc)
            if code not in _RETRYABLE:
                raise RemoteCallError(party, code, details) from exc
            last = f"{code.name}: {details}"
        else:
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
            last = (
                f"health status {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
            )
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 1.0)


def _status(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """Code and details of a failed call (an RpcError raised by a stub is also a grpc.Call)."""
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    return code, details or ""
