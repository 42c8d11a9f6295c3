"""The Binning service of a data party's node: thin RPCs over ``fedcredit.protocol.binning``.

The driver calls SendLabels (lender), ComputeBinSums (partners) and SelectBins (lender). The
ciphertexts under the lender's own key go between the lender and each partner directly
(PutLabels, PutBinSums, PutBinPlan): the driver only sees acknowledgements and, at the end, the
IV report (one IV and two bin counts per column). The caller's name comes from its certificate.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc

from fedcredit.crypto import PublicKey
from fedcredit.crypto.keys import check_peer_key
from fedcredit.errors import ProtocolError
from fedcredit.node import convert
from fedcredit.node.client import call
from fedcredit.node.identity import caller_party
from fedcredit.node.party_node import PartyNode
from fedcredit.node.services import rpc
from fedcredit.proto.v1 import binning_pb2, binning_pb2_grpc, common_pb2
from fedcredit.protocol.binning import (
    ColumnPlan,
    EncryptedBinSums,
    LenderBinning,
    PartnerBinning,
    report_rows,
    train_raw,
)
from fedcredit.protocol.binning.settings import BinningSettings
from fedcredit.protocol.guard import Header, SequenceGuard
from fedcredit.protocol.lender import LabelParty

PEER_TIMEOUT_S = 600.0

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
        self.settings = settings
        self.categorical = tuple(categorical)
        self.driver = driver
        self.guard: SequenceGuard[Any] = SequenceGuard()
        self.recorded: list[tuple[str, Any, Any]] | None = [] if record else None
        self._lock = threading.Lock()
        self._state: tuple[str, LenderBinning | PartnerBinning] | None = None
        self._seq = itertools.count(1)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="binning")

    # -- helpers ---------------------------------------------------------------------------
    def _side(self) -> LenderBinning | PartnerBinning:
        job = self.node.job
        if self.settings is None:
            raise ProtocolError(f"binning is not enabled in {self.node.name!r}'s federation file")
        with self._lock:
            if self._state is None or self._state[0] != job.job_id:
                party = job.party
                side: LenderBinning | PartnerBinning
                if isinstance(party, LabelParty):
                    side = LenderBinning(party, self.settings, self.categorical)
                else:
                    side = PartnerBinning(party, self.settings, self.categorical)
                self._state = (job.job_id, side)
            return self._state[1]

    def _lender(self) -> LenderBinning:
        side = self._side()
        if not isinstance(side, LenderBinning):
            raise ProtocolError(f"party {self.node.name!r} is not the label holder")
        return side

    def _partner(self) -> PartnerBinning:
        side = self._side()
        if not isinstance(side, PartnerBinning):
            raise ProtocolError(f"party {self.node.name!r} holds the labels; it is no partner")
        return side

    def _run(
        self,
        context: grpc.ServicerContext,
        name: str,
        request: Any,
        step: Callable[[str], R],
        *,
        allowed: Callable[[str], bool],
    ) -> R:
        """Check the caller and the job, run ``step`` once per sequence number, record."""
        caller = caller_party(context)
        if not allowed(caller):
            raise ProtocolError(f"{name} may not come from {caller!r}")
        self.guard.start_job(self.node.job.job_id)
        reply: R = self.guard.run_once(
            caller, name, convert.header_of(request.env), lambda: step(caller)
        )
        if self.recorded is not None:
            self.recorded.append((name, request, reply))
        return reply

    def _from_driver(self, caller: str) -> bool:
        return caller == self.driver

    def _from_lender(self, caller: str) -> bool:
        return caller == self.node.job.peers.lender

    def _from_host(self, caller: str) -> bool:
        return caller in self.node.job.peers.hosts

    def _env(self, env: common_pb2.Envelope) -> common_pb2.Envelope:
        return convert.envelope(Header(env.job_id, env.epoch, env.batch, next(self._seq)))

    def _call(self, party: str, method: str, request: Any) -> Any:
        stub = binning_pb2_grpc.BinningStub(self.node.job.peers.channel(party))
        reply = call(
            getattr(stub, method), request, party=party, timeout_s=PEER_TIMEOUT_S, idempotent=True
        )
        if self.recorded is not None:
            self.recorded.append((f"reply:{method}", request, reply))
        return reply

    def _call_hosts(self, method: str, make: Callable[[str], Any]) -> dict[str, Any]:
        hosts = self.node.job.peers.hosts
        futures = {h: self._pool.submit(self._call, h, method, make(h)) for h in hosts}
        return {h: f.result() for h, f in futures.items()}

    # -- lender ----------------------------------------------------------------------------
    @rpc
    def SendLabels(
        self, request: binning_pb2.BinningStep, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        def step(_: str) -> common_pb2.Ack:
            side = self._lender()
            job_key = self.node.job.party.public_key
            if job_key is None:
                raise ProtocolError(f"party {self.node.name!r} has no job key")
            # The lender's own key is as large as the coordinator's, which the coordinator
            # refused to make below 2048 bits outside tests.
            labels = side.encrypt_labels(job_key.bits, allow_small=job_key.bits < 2048)
            vector = convert.vector_to_proto(labels)
            key_json = labels.public_key.to_json()
            self._call_hosts(
                "PutLabels",
                lambda _: binning_pb2.LabelVector(
                    env=self._env(request.env), public_key_json=key_json, labels=vector
                ),
            )
            return common_pb2.Ack(env=request.env)

        return self._run(context, "SendLabels", request, step, allowed=self._from_driver)

    @rpc
    def PutBinSums(
        self, request: binning_pb2.BinSums, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        def step(caller: str) -> common_pb2.Ack:
            side = self._lender()
            key = side.public_key
            packed = convert.packed_from_proto(request.events, key)
            sums = EncryptedBinSums(
                names=tuple(c.name for c in request.columns),
                rows=tuple(tuple(int(v) for v in c.rows) for c in request.columns),
                events=packed,
                noisy=request.noisy,
                unordered=tuple(c.unordered for c in request.columns),
            )
            side.receive_sums(caller, sums)
            return common_pb2.Ack(env=request.env)

        return self._run(context, "PutBinSums", request, step, allowed=self._from_host)

    @rpc
    def SelectBins(
        self, request: binning_pb2.BinningStep, context: grpc.ServicerContext
    ) -> binning_pb2.SelectReply:
        def step(_: str) -> binning_pb2.SelectReply:
            side = self._lender()
            hosts = self.node.job.peers.hosts
            plans, reports, own = side.select(hosts)
            replies = self._call_hosts(
                "PutBinPlan",
                lambda host: binning_pb2.BinPlan(
                    env=self._env(request.env), columns=[_plan_to_proto(p) for p in plans[host]]
                ),
            )
            features = {host: int(r.features) for host, r in replies.items()}
            features[self.node.name] = own
            return binning_pb2.SelectReply(
                env=request.env, report_json=json.dumps(report_rows(reports)), features=features
            )

        return self._run(context, "SelectBins", request, step, allowed=self._from_driver)

    # -- partners --------------------------------------------------------------------------
    @rpc
    def PutLabels(
        self, request: binning_pb2.LabelVector, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        def step(_: str) -> common_pb2.Ack:
            side = self._partner()
            small = self.node.allow_small_keys
            key = PublicKey.from_json(request.public_key_json)
            # Before reading a ciphertext under it: the key policy (CryptoError naming the lender).
            check_peer_key(key, allow_small=small, party="the lender")
            rows = len(train_raw(side.party))
            side.receive_labels(
                convert.vector_from_proto(request.labels, key, scale_bits=0, count=rows),
                allow_small=small,
            )
            return common_pb2.Ack(env=request.env)

        return self._run(context, "PutLabels", request, step, allowed=self._from_lender)

    @rpc
    def ComputeBinSums(
        self, request: binning_pb2.BinningStep, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        def step(_: str) -> common_pb2.Ack:
            side = self._partner()
            sums = side.bin_sums()
            message = binning_pb2.BinSums(
                env=self._env(request.env),
                columns=[
                    binning_pb2.ColumnCounts(name=n, rows=list(r), unordered=u)
                    for n, r, u in zip(sums.names, sums.rows, sums.unordered, strict=True)
                ],
                events=convert.packed_to_proto(sums.events, side.label_key),
                noisy=sums.noisy,
            )
            self._call(self.node.job.peers.lender, "PutBinSums", message)
            return common_pb2.Ack(env=request.env)

        return self._run(context, "ComputeBinSums", request, step, allowed=self._from_driver)

    @rpc
    def PutBinPlan(
        self, request: binning_pb2.BinPlan, context: grpc.ServicerContext
    ) -> binning_pb2.PlanReply:
        def step(_: str) -> binning_pb2.PlanReply:
            side = self._partner()
            plans = [_plan_from_proto(c) for c in request.columns]
            return binning_pb2.PlanReply(env=request.env, features=side.apply_plan(plans))

        return self._run(context, "PutBinPlan", request, step, allowed=self._from_lender)


def _plan_to_proto(plan: ColumnPlan) -> binning_pb2.ColumnPlan:
    group_of_bin = [0] * sum(len(g) for g in plan.groups)
    for index, group in enumerate(plan.groups):
        for k in group:
            group_of_bin[k] = index
    return binning_pb2.ColumnPlan(
        name=plan.name, keep=plan.keep, group_of_bin=group_of_bin, fold=list(plan.fold)
    )


def _plan_from_proto(message: binning_pb2.ColumnPlan) -> ColumnPlan:
    groups: dict[int, list[int]] = {}
    for k, g in enumerate(message.group_of_bin):
        groups.setdefault(int(g), []).append(k)
    if sorted(groups) != list(range(len(groups))):
        raise ProtocolError(f"bin plan of {message.name!r}: group numbers are not 0..n-1")
    ordered = tuple(tuple(groups[g]) for g in range(len(groups)))
    return ColumnPlan(
        message.name, bool(message.keep), ordered, tuple(int(k) for k in message.fold)
    )
