"""The one policy from domain errors to gRPC status codes, and the one ``@rpc`` decorator every
servicer method wears (the debt service's included).

A refusal reaches the peer as a status and one line naming a party, a step or a check, never a
value. A ``CryptoError`` reaches it as a fixed text only (the details go to this node's log):
its message may say how a ciphertext or point failed, which an attacker could use as an
oracle. A ``PeerKeyError`` is the exception: it names the key's owner and the rule it breaks.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from fedcredit.errors import (
    ConfigError,
    CryptoError,
    DataError,
    FedCreditError,
    PartyUnavailableError,
    ProtocolError,
    QuotaError,
    StorageError,
)
from fedcredit.node.errors import (
    CallerRefused,
    InvalidRequest,
    NotReady,
    NotServed,
    PeerKeyError,
)
from fedcredit.node.transport.client import RemoteCallError
from fedcredit.node.transport.identity import caller_party
from fedcredit.protocol.schedule import DecryptionRefused

log = logging.getLogger("fedcredit.node")

R = TypeVar("R")

OPAQUE_CRYPTO = "invalid ciphertexts, points or keys (details are in the receiving node's log)"

STATUS: list[tuple[type[FedCreditError], grpc.StatusCode]] = [
    (PartyUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (NotReady, grpc.StatusCode.UNAVAILABLE),
    (DecryptionRefused, grpc.StatusCode.PERMISSION_DENIED),
    (CallerRefused, grpc.StatusCode.PERMISSION_DENIED),
    (NotServed, grpc.StatusCode.UNIMPLEMENTED),
    (QuotaError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (CryptoError, grpc.StatusCode.INVALID_ARGUMENT),
    (DataError, grpc.StatusCode.INVALID_ARGUMENT),
    (ProtocolError, grpc.StatusCode.FAILED_PRECONDITION),
    (ConfigError, grpc.StatusCode.FAILED_PRECONDITION),
    (StorageError, grpc.StatusCode.FAILED_PRECONDITION),
]
"""Domain error -> status, the first matching entry wins (subclasses before their bases)."""


def status_for(error: FedCreditError) -> grpc.StatusCode:
    if isinstance(error, RemoteCallError) and error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return error.code  # a partner's quota: the lender's operator sees the same status
    for kind, code in STATUS:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def public_text(error: FedCreditError) -> str:
    """What the peer reads of ``error``."""
    if isinstance(error, CryptoError) and not isinstance(error, PeerKeyError):
        return OPAQUE_CRYPTO
    return str(error)


def abort(context: grpc.ServicerContext, name: str, exc: FedCreditError) -> None:
    """End the call with ``exc``'s status and public text (logged here in full)."""
    if isinstance(exc, CryptoError):
        log.warning("%s refused input from %s: %s", name, caller_party(context), exc)
    else:
        log.warning("%s refused: %s", name, exc)
    context.abort(status_for(exc), public_text(exc))


def rpc(method: Callable[..., R]) -> Callable[..., R]:
    """Map domain errors of a servicer method to gRPC status codes with a one-line message.

    Works for unary and client-streaming methods (the request argument is passed through).
    """

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> R:
        try:
            return method(self, request, context)
        except FedCreditError as exc:
            abort(context, method.__name__, exc)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            # Malformed input that slipped past validation: opaque to the peer, logged here.
            log.warning("%s: bad request: %r", method.__name__, exc)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{method.__name__}: malformed request")
        raise AssertionError("unreachable")  # context.abort raises

    return wrapper
