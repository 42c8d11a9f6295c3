"""The gRPC server every node runs: mTLS, caller identity, health, graceful shutdown.

``build_server`` returns a ``NodeServer``; add servicers with ``.add(register_fn, servicer)``,
then ``.start()`` binds and returns the port. ``.stop(grace)`` first reports NOT_SERVING on the
standard ``grpc.health.v1.Health`` service, refuses new calls with UNAVAILABLE (health checks
are still answered, with NOT_SERVING), lets calls in flight finish within the grace period,
then stops.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent import futures
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fedcredit.errors import ConfigError
from fedcredit.node.transport.identity import (
    DecodeInterceptor,
    Handler,
    HandlerInterceptor,
    IdentityInterceptor,
    ServerInterceptorBase,
    guard_handler,
)

DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_HEALTH_PREFIX = "/grpc.health.v1.Health/"
_S = TypeVar("_S")

INSECURE_WARNING = (
    "fedcredit: WARNING: node at {address} runs WITHOUT TLS (insecure mode): callers are "
    "identified by a header anyone can forge; use it for local debugging only"
)


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Channel arguments of every node server."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # Clients ping every 5 s (client.py); a stricter minimum would make the server answer
        # their pings with GOAWAY "too_many_pings".
        ("grpc.http2.min_ping_interval_without_data_ms", 4_000),
        ("grpc.http2.max_pings_without_data", 0),
        # Without this, a second server could silently share a port already in use.
        ("grpc.so_reuseport", 0),
    ]


class _Drain:
    """Counts calls in flight; once draining, refuses new ones with UNAVAILABLE."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._in_flight = 0
        self._draining = False

    def admit(self, context: grpc.ServicerContext) -> None:
        with self._cond:
            draining = self._draining
            if not draining:
                self._in_flight += 1
        if draining:
            context.abort(grpc.StatusCode.UNAVAILABLE, "node is shutting down")

    def release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def drain(self, timeout_s: float) -> bool:
        """Refuse new calls, wait for calls in flight; True when none is left."""
        with self._cond:
            self._draining = True
            return self._cond.wait_for(lambda: self._in_flight == 0, timeout=timeout_s)


class _DrainInterceptor(HandlerInterceptor):
    def __init__(self, drain: _Drain) -> None:
        self._drain = drain

    def wrap(self, handler: Handler, method: str) -> Handler:
        if method.startswith(_HEALTH_PREFIX):
            return handler
        return guard_handler(handler, self._drain.admit, self._drain.release)


class NodeServer:
    """A gRPC server with identity checks, health service and graceful stop."""

    def __init__(
        self,
        server: grpc.Server,
        address: str,
        credentials: grpc.ServerCredentials | None,
        drain: _Drain,
    ) -> None:
        self._server = server
        self._address = address
        self._credentials = credentials
        self._drain = drain
        self._port: int | None = None
        self.health = health.HealthServicer()
        self.health.set(health.OVERALL_HEALTH, health_pb2.HealthCheckResponse.NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)

    @property
    def port(self) -> int:
        """The bound port; ConfigError before ``start``."""
        if self._port is None:
            raise ConfigError(f"server for {self._address} is not started")
        return self._port

    def add(self, register_fn: Callable[[_S, grpc.Server], None], servicer: _S) -> None:
        """Register a servicer, e.g. ``add(job_pb2_grpc.add_JobServicer_to_server, s)``."""
        register_fn(servicer, self._server)

    def add_generic_handlers(self, handlers: Iterable[grpc.GenericRpcHandler[Any, Any]]) -> None:
        """Register handlers made with ``grpc.method_handlers_generic_handler``."""
        self._server.add_generic_rpc_handlers(tuple(handlers))

    def start(self) -> int:
        """Bind, start serving, report SERVING; return the bound port (real when asked for 0)."""
        try:
            if self._credentials is None:
                port = self._server.add_insecure_port(self._address)
            else:
                port = self._server.add_secure_port(self._address, self._credentials)
        except RuntimeError as exc:
            raise ConfigError(f"cannot listen on {self._address}: {exc}") from exc
        if port == 0:
            raise ConfigError(f"cannot listen on {self._address}: address in use or invalid")
        self._server.start()
        self._port = port
        self.health.set(health.OVERALL_HEALTH, health_pb2.HealthCheckResponse.SERVING)
        return port

    def stop(self, grace_seconds: float) -> None:
        """Stop gracefully: NOT_SERVING, refuse new calls, let calls in flight finish.

        Calls still running after ``grace_seconds`` are cancelled. Returns once stopped.
        """
        deadline = time.monotonic() + grace_seconds
        self.health.enter_graceful_shutdown()
        self._drain.drain(grace_seconds)
        # Application calls have finished (or the grace is over); only health checks and
        # watches can remain, and they need no grace.
        remaining = max(0.0, deadline - time.monotonic())
        self._server.stop(min(remaining, 0.1)).wait()

    def wait_for_termination(self, timeout_s: float | None = None) -> bool:
        """Block until the server stops; True when it did within ``timeout_s``."""
        return self._server.wait_for_termination(timeout_s)


def build_server(
    address: str,
    *,
    credentials: grpc.ServerCredentials | None,
    allowed_parties: set[str],
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_workers: int = 16,
    interceptors: Sequence[ServerInterceptorBase] = (),
    pins: Mapping[str, str] | None = None,
) -> NodeServer:
    """A node server for ``address`` (not yet bound; ``start`` binds it).

    ``credentials`` from ``tls.load_server_credentials``; None means insecure mode, for local
    debugging only, and prints a warning to stderr. Only callers in ``allowed_parties`` are
    served (PERMISSION_DENIED otherwise), health checks included, and a caller named in
    ``pins`` (party name to certificate SHA-256) only with that certificate (UNAUTHENTICATED
    otherwise). ``interceptors`` are extra
    server interceptors, added after the built-in ones (identity check, drain, decoding); tests
    use them to record every message that crosses the wire.
    """
    if credentials is None:
        print(INSECURE_WARNING.format(address=address), file=sys.stderr)
    if max_message_bytes < 1 or max_workers < 1:
        raise ConfigError("max_message_bytes and max_workers must be positive")
    drain = _Drain()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fedcredit-rpc"),
        interceptors=[
            IdentityInterceptor(allowed_parties, secure=credentials is not None, pins=pins),
            _DrainInterceptor(drain),
            DecodeInterceptor(),
            *interceptors,
        ],
        options=server_options(max_message_bytes),
    )
    return NodeServer(server, address, credentials, drain)
