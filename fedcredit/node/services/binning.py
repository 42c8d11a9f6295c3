"""The Binning service of a data party's node (binning.proto): callers checked, messages
converted, each step one call of ``fedcredit.node.binning_job``.

The driver calls SendLabels (lender), ComputeBinSums (partners) and SelectBins (lender); the
lender and each partner call PutLabels, PutBinSums and PutBinPlan on each other directly. The
caller's name comes from its certificate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc

from fedcredit.errors import ProtocolError
from fedcredit.node.binning_job import BinningJob
from fedcredit.node.serde import binning, common
from fedcredit.node.services.errors import rpc
from fedcredit.node.state import PartyNode
from fedcredit.node.transport.identity import caller_party
from fedcredit.proto.v1 import binning_pb2, binning_pb2_grpc, common_pb2
from fedcredit.protocol.binning import LenderBinning, PartnerBinning
from fedcredit.protocol.binning.settings import BinningSettings
from fedcredit.protocol.guard import Header, SequenceGuard

R = TypeVar("R")


class BinningServicer(binning_pb2_grpc.BinningServicer):
    """One per party node. ``recorded`` (when a list) keeps every message this node handles:
    requests it serves with their replies, and the replies of the calls it makes."""

    def __init__(
        self,
        node: PartyNode,
        settings: BinningSettings | None,
        categorical: Sequence[str] = (),
        *,
        driver: str = "coordinator",
        record: bool = False,
    ) -> None:
        self.node = node
        self.driver = driver
        self.guard: SequenceGuard[Any] = SequenceGuard()
        self.recorded: list[tuple[str, Any, Any]] | None = [] if record else None
        self.job = BinningJob(node, settings, categorical, self.recorded)

    def _side(self) -> LenderBinning | PartnerBinning:
        return self.job.side()

    def _run(
        self,
        context: grpc.ServicerContext,
        name: str,
        request: Any,
        step: Callable[[str, Header], R],
        *,
        allowed: Callable[[str], bool],
    ) -> R:
        """Check the caller and the job, run ``step`` once per sequence number, record."""
        caller = caller_party(context)
        if not allowed(caller):
            raise ProtocolError(f"{name} may not come from {caller!r}")
        self.guard.start_job(self.node.job.job_id)
        header = common.header_of(request.env)
        reply: R = self.guard.run_once(caller, name, header, lambda: step(caller, header))
        if self.recorded is not None:
            self.recorded.append((name, request, reply))
        return reply

    def _from_driver(self, caller: str) -> bool:
        return caller == self.driver

    # -- lender ----------------------------------------------------------------------------
    @rpc
    def SendLabels(
        self, request: binning_pb2.BinningStep, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        def step(_: str, header: Header) -> common_pb2.Ack:
            self.job.send_labels(header)
            return common.ack(request.env)

        return self._run(context, "SendLabels", request, step, allowed=self._from_driver)

    @rpc
    def PutBinSums(
        self, request: binning_pb2.BinSums, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        def step(caller: str, _: Header) -> common_pb2.Ack:
            self.job.receive_sums(caller, binning.bin_sums_of(request, self.job.label_key()))
            return common.ack(request.env)

        return self._run(context, "PutBinSums", request, step, allowed=self.job.is_host)

    @rpc
    def SelectBins(
        self, request: binning_pb2.BinningStep, context: grpc.ServicerContext
    ) -> binning_pb2.SelectReply:
        def step(_: str, header: Header) -> binning_pb2.SelectReply:
            report_json, features = self.job.select_bins(header)
            return binning.select_reply(request.env, report_json, features)

        return self._run(context, "SelectBins", request, step, allowed=self._from_driver)

    # -- partners --------------------------------------------------------------------------
    @rpc
    def PutLabels(
        self, request: binning_pb2.LabelVector, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        def step(_: str, __: Header) -> common_pb2.Ack:
            incoming = common.incoming_vector(request.labels)
            self.job.receive_labels(request.public_key_json, incoming)
            return common.ack(request.env)

        return self._run(context, "PutLabels", request, step, allowed=self.job.is_lender)

    @rpc
    def ComputeBinSums(
        self, request: binning_pb2.BinningStep, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        def step(_: str, header: Header) -> common_pb2.Ack:
            self.job.send_bin_sums(header)
            return common.ack(request.env)

        return self._run(context, "ComputeBinSums", request, step, allowed=self._from_driver)

    @rpc
    def PutBinPlan(
        self, request: binning_pb2.BinPlan, context: grpc.ServicerContext
    ) -> binning_pb2.PlanReply:
        def step(_: str, __: Header) -> binning_pb2.PlanReply:
            return binning.plan_reply(request.env, self.job.apply_plan(binning.plans_of(request)))

        return self._run(context, "PutBinPlan", request, step, allowed=self.job.is_lender)
