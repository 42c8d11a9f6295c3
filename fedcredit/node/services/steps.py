"""What the party services share: the node, the driver's name, and one sequence guard.

Every step the driver asks for runs once per (caller, step, envelope) and only for the job set
up last (``fedcredit.protocol.guard``); the caller's party name comes from its certificate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from fedcredit.errors import ProtocolError
from fedcredit.node.serde import common
from fedcredit.node.state import PartyNode
from fedcredit.node.transport.identity import caller_party
from fedcredit.proto.v1 import common_pb2
from fedcredit.protocol.guard import Header, SequenceGuard

R = TypeVar("R")


class DriverSteps:
    """One per party node, shared by its Job, Psi, Logistic and Scoring servicers."""

    def __init__(self, node: PartyNode, driver: str = "coordinator") -> None:
        self.node = node
        self.driver = driver
        self.guard: SequenceGuard[Any] = SequenceGuard()

    def from_driver(self, context: grpc.ServicerContext) -> str:
        caller = caller_party(context)
        if caller != self.driver:
            raise ProtocolError(f"only the coordinator drives a job; {caller!r} may not")
        return caller

    def run(
        self,
        context: grpc.ServicerContext,
        method: str,
        env: common_pb2.Envelope,
        fn: Callable[[Header], R],
    ) -> R:
        """``fn(header)`` for a step the driver asks for, once per sequence number."""
        caller = self.from_driver(context)
        header = common.header_of(env)
        result: R = self.guard.run_once(caller, method, header, lambda: fn(header))
        return result

    def run_for(
        self,
        caller: str,
        method: str,
        env: common_pb2.Envelope,
        fn: Callable[[Header], R],
    ) -> R:
        """``fn(header)`` for a message a peer party sends, once per sequence number."""
        header = common.header_of(env)
        result: R = self.guard.run_once(caller, method, header, lambda: fn(header))
        return result
