"""Who is calling: the party name from the caller's verified client certificate.

With mutual TLS the server has already checked the client certificate against the federation
CA during the handshake. The caller's party name is the one DNS subject alternative name of
that certificate (``certificate_party``), the same name a client checks when it connects to a
server; a common name, if any, must agree, and a certificate that names no party or several is
no identity at all. Where the federation file pins a party's certificate (``cert_sha256``), a
caller with that name must present exactly that certificate. ``IdentityInterceptor`` refuses
callers without a valid identity (UNAUTHENTICATED) or outside the allowed set
(PERMISSION_DENIED), health checks included, and servicers ask ``caller_party(context)`` who
called. A party name written in a request field is never evidence of anything.

Insecure mode (no TLS) takes the caller's name from the ``x-fedcredit-party`` metadata, which
anyone can forge: it exists for local debugging only and must never face a network.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

PARTY_METADATA = "x-fedcredit-party"
#: DNS names some certificates carry for local runs; never a party's name.
LOCAL_NAMES: Final = frozenset({"localhost"})
_PEM_KEY = "x509_pem_cert"
_SECURITY_KEY = "transport_security_type"
_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9-]{0,62}$")

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


def certificate_party(cert: x509.Certificate) -> str | None:
    """The party ``cert`` was issued to: its one DNS subject alternative name that is a party
    name (``localhost`` aside). None when it names no party or several, or when a common name
    says another: such a certificate identifies nobody."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    names = [n for n in san.get_values_for_type(x509.DNSName) if n not in LOCAL_NAMES]
    if len(names) != 1 or not _NAME_RE.match(names[0]):
        return None
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if any(attribute.value != names[0] for attribute in common):
        return None
    return names[0]


def certificate_sha256(cert: x509.Certificate) -> str:
    """The SHA-256 fingerprint of ``cert`` (of its DER encoding), as 64 lowercase hex digits."""
    return cert.fingerprint(hashes.SHA256()).hex()


@functools.lru_cache(maxsize=256)
def _peer(pem: bytes) -> tuple[str | None, str]:
    """(party name or None, SHA-256) of a peer certificate; parsed once per certificate."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None, ""
    return certificate_party(cert), certificate_sha256(cert)


def _peer_pem(context: grpc.ServicerContext) -> bytes | None:
    pems = cast(dict[str, list[bytes]], context.auth_context()).get(_PEM_KEY, [])
    return pems[0] if len(pems) == 1 else None


def caller_party(context: grpc.ServicerContext) -> str:
    """The verified party name of the caller; aborts the call UNAUTHENTICATED when unknown.

    Under TLS: the DNS SAN of the client certificate (``certificate_party``). In insecure
    mode: the ``x-fedcredit-party`` metadata (forgeable, for local debugging only).
    """
    name = _identify(context)
    if name is None:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "caller has no party identity")
    return name


def _is_tls(context: grpc.ServicerContext) -> bool:
    auth = cast(dict[str, list[bytes]], context.auth_context())
    return auth.get(_SECURITY_KEY) == [b"ssl"]


def _identify(context: grpc.ServicerContext) -> str | None:
    if _is_tls(context):
        pem = _peer_pem(context)
        return None if pem is None else _peer(pem)[0]
    values = [v for k, v in context.invocation_metadata() if k == PARTY_METADATA]
    return values[0] if len(values) == 1 and isinstance(values[0], str) else None


class IdentityInterceptor(HandlerInterceptor):
    """Refuses every call whose caller is not in ``allowed_parties`` (PERMISSION_DENIED), and
    under TLS every caller whose certificate is not the one ``pins`` (party name to SHA-256
    fingerprint) names for it (UNAUTHENTICATED)."""

    def __init__(
        self,
        allowed_parties: Iterable[str],
        *,
        secure: bool = True,
        pins: Mapping[str, str] | None = None,
    ) -> None:
        self._allowed = frozenset(allowed_parties)
        self._secure = secure
        self._pins = dict(pins or {})

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
        pin = self._pins.get(name)
        if pin is not None and self._secure:
            pem = _peer_pem(context)
            if pem is None or _peer(pem)[1] != pin:
                context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"the certificate presented as {name!r} is not the one the federation "
                    "file pins for it",
                )


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
