"""Who is calling: the party name from the caller's verified client certificate.

With mutual TLS the server has already checked the client certificate against the federation
CA during the handshake; the common name of that certificate is the caller's party name.
``IdentityInterceptor`` refuses callers whose name is not in the allowed set (health checks
included) with PERMISSION_DENIED, and servicers ask ``caller_party(context)`` who called. A
party name written in a request field is never evidence of anything.

Insecure mode (no TLS) takes the caller's name from the ``x-fedcredit-party`` metadata, which
anyone can forge: it exists for local debugging only and must never face a network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

import grpc

PARTY_METADATA = "x-fedcredit-party"
_CN_KEY = "x509_common_name"
_SECURITY_KEY = "transport_security_type"

Behaviour = Callable[[Any, grpc.ServicerContext], Any]
Guard = Callable[[grpc.ServicerContext], None]

# grpc-stubs declares the interceptor classes generic; at run time they are not subscriptable.
if TYPE_CHECKING:
    ServerInterceptorBase = grpc.ServerInterceptor[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    ServerInterceptorBase = grpc.ServerInterceptor
    Handler = grpc.RpcMethodHandler


class HandlerInterceptor(ServerInterceptorBase):
    """An interceptor that replaces each method's handler by ``wrap(handler, method)``."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return self.wrap(handler, handler_call_details.method)

    def wrap(self, handler: Handler, method: str) -> Handler:
        raise NotImplementedError


def caller_party(context: grpc.ServicerContext) -> str:
    """The verified party name of the caller; aborts the call UNAUTHENTICATED when unknown.

    Under TLS: the common name of the client certificate. In insecure mode: the
    ``x-fedcredit-party`` metadata (forgeable, for local debugging only).
    """
    name = _identify(context)
    if name is None:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "caller has no party identity")
    return name


def _is_tls(context: grpc.ServicerContext) -> bool:
    auth = cast(dict[str, list[bytes]], context.auth_context())
    return auth.get(_SECURITY_KEY) == [b"ssl"]


def _identify(context: grpc.ServicerContext) -> str | None:
    auth = cast(dict[str, list[bytes]], context.auth_context())
    if _is_tls(context):
        names = auth.get(_CN_KEY, [])
        # A certificate with several common names is ambiguous: refuse rather than pick one.
        return names[0].decode() if len(names) == 1 else None
    values = [v for k, v in context.invocation_metadata() if k == PARTY_METADATA]
    return values[0] if len(values) == 1 and isinstance(values[0], str) else None


class IdentityInterceptor(HandlerInterceptor):
    """Refuses every call whose caller is not in ``allowed_parties`` (PERMISSION_DENIED)."""

    def __init__(self, allowed_parties: Iterable[str], *, secure: bool = True) -> None:
        self._allowed = frozenset(allowed_parties)
        self._secure = secure

    def wrap(self, handler: Handler, method: str) -> Handler:
        return guard_handler(handler, self._check)

    def _check(self, context: grpc.ServicerContext) -> None:
        if self._secure and not _is_tls(context):
            # Never fall back to the forgeable header on a server that was built with TLS.
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "call did not arrive over TLS")
        name = _identify(context)
        if name is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "caller has no party identity")
        if name not in self._allowed:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"party {name!r} is not allowed")


def guard_handler(
    handler: grpc.RpcMethodHandler[Any, Any],
    guard: Guard,
    on_done: Callable[[], None] | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler with ``guard(context)`` run before the method body.

    ``guard`` may abort the call. ``on_done``, when given, runs once when an admitted call
    terminates, however it ends. Works for all four kinds of method.
    """
    h: Any = handler
    kinds: tuple[tuple[str, Callable[..., grpc.RpcMethodHandler[Any, Any]]], ...] = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    )
    for attribute, make in kinds:
        behaviour: Behaviour | None = getattr(h, attribute)
        if behaviour is not None:
            return make(
                _guarded(behaviour, guard, on_done),
                request_deserializer=h.request_deserializer,
                response_serializer=h.response_serializer,
            )
    return handler


def _guarded(behaviour: Behaviour, guard: Guard, on_done: Callable[[], None] | None) -> Behaviour:
    def run(request: Any, context: grpc.ServicerContext) -> Any:
        guard(context)
        if on_done is not None and not context.add_callback(on_done):
            # The call already ended (cancelled by the client): nothing will run on_done.
            on_done()
        return behaviour(request, context)

    return run


class DecodeInterceptor(HandlerInterceptor):
    """Parses requests inside the call, so that bytes that are no valid message get
    INVALID_ARGUMENT (gRPC's own deserialization answers INTERNAL) after the identity check."""

    def wrap(self, handler: Handler, method: str) -> Handler:
        return decode_handler(handler, method)


def decode_handler(
    handler: grpc.RpcMethodHandler[Any, Any], method: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler taking raw bytes and parsing them itself (INVALID_ARGUMENT if corrupt)."""
    h: Any = handler
    parse = h.request_deserializer
    if parse is None:
        return handler

    def one(data: bytes, context: grpc.ServicerContext) -> Any:
        try:
            return parse(data)
        except Exception:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{method}: not a valid message")

    def many(requests: Iterable[bytes], context: grpc.ServicerContext) -> Iterator[Any]:
        for data in requests:
            yield one(data, context)

    def unary(behaviour: Behaviour) -> Behaviour:
        return lambda data, context: behaviour(one(data, context), context)

    def stream(behaviour: Behaviour) -> Behaviour:
        return lambda data, context: behaviour(many(data, context), context)

    kinds: tuple[
        tuple[
            str, Callable[..., grpc.RpcMethodHandler[Any, Any]], Callable[[Behaviour], Behaviour]
        ],
        ...,
    ] = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler, unary),
        ("unary_stream", grpc.unary_stream_rpc_method_handler, unary),
        ("stream_unary", grpc.stream_unary_rpc_method_handler, stream),
        ("stream_stream", grpc.stream_stream_rpc_method_handler, stream),
    )
    for attribute, make, wrap in kinds:
        behaviour: Behaviour | None = getattr(h, attribute)
        if behaviour is not None:
            return make(
                wrap(behaviour),
                request_deserializer=None,
                response_serializer=h.response_serializer,
            )
    return handler
