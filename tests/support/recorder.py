"""A server interceptor that keeps the exact serialized bytes of every call a node serves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from fedcredit.node.transport.identity import ServerInterceptorBase, caller_party


@dataclass
class Exchange:
    """One call served by ``node``: the request bytes as they arrived, the reply as it left."""

    node: str
    method: str
    caller: str = ""
    request: bytes = b""
    response: bytes = b""


class Recorder(ServerInterceptorBase):
    """A server interceptor keeping the exact serialized bytes of every unary call."""

    def __init__(self, node: str, exchanges: list[Exchange], unrecorded: list[str]) -> None:
        self._node = node
        self._exchanges = exchanges
        self._unrecorded = unrecorded

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler: Any = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary is None:
            # No streaming call is part of a training job; the test fails if one happens.
            self._unrecorded.append(method)
            return handler  # type: ignore[no-any-return]
        # This runs once per call, so the closures below belong to this call alone.
        exchange = Exchange(self._node, method)
        self._exchanges.append(exchange)
        parse, dump, behaviour = (
            handler.request_deserializer,
            handler.response_serializer,
            handler.unary_unary,
        )

        def read(data: bytes) -> Any:
            exchange.request = data
            return parse(data)

        def write(reply: Any) -> bytes:
            data: bytes = dump(reply)
            exchange.response = data
            return data

        def run(request: Any, context: grpc.ServicerContext) -> Any:
            exchange.caller = caller_party(context)
            return behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(
            run, request_deserializer=read, response_serializer=write
        )
