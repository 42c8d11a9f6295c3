"""A node's connections to the other nodes of a job: channels, typed stubs, calls with deadlines.

Every RPC to a peer goes through a typed stub method: ``peers.call(name, lambda s: s.job.Setup,
request, timeout_s)`` picks the method on the peer's ``PeerStubs`` (one attribute per service),
so the request and reply types are checked. ``fan_out`` calls the same RPC on several peers at
once and returns every reply, or raises the first error in the order of the names (each names
its party: ``PartyUnavailableError`` or ``RemoteCallError``).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TypeVar

import grpc

from fedcredit.crypto import PublicKey
from fedcredit.crypto.keys import check_peer_key
from fedcredit.errors import CryptoError
from fedcredit.node.errors import PeerKeyError
from fedcredit.node.transport.client import call, open_channel
from fedcredit.proto.v1 import (
    binning_pb2_grpc,
    coordinator_pb2,
    coordinator_pb2_grpc,
    debt_pb2_grpc,
    job_pb2,
    job_pb2_grpc,
    logistic_pb2,
    logistic_pb2_grpc,
    psi_pb2,
    psi_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    trees_pb2_grpc,
)

COORDINATOR = "coordinator"

PARTY_SERVICES = (
    job_pb2.DESCRIPTOR.services_by_name["Job"],
    psi_pb2.DESCRIPTOR.services_by_name["Psi"],
    logistic_pb2.DESCRIPTOR.services_by_name["Logistic"],
    scoring_pb2.DESCRIPTOR.services_by_name["Scoring"],
)
"""The services every data party's node serves (binning and debt come with their tables)."""

PARTY_RPC_PATHS = {
    method.name: f"/{service.full_name}/{method.name}"
    for service in PARTY_SERVICES
    for method in service.methods
}
"""Each party RPC's name -> its full gRPC path, e.g. ``"Setup" -> "/fedcredit.v1.Job/Setup"``."""

S = TypeVar("S")
Req = TypeVar("Req")
Rep = TypeVar("Rep")


class PeerStubs:
    """Typed stubs of every service a node may serve, over one channel.

    ``job``, ``psi``, ``logistic`` and ``scoring`` are a data party's services, ``binning`` its
    binning phase, ``trees`` the trees family's rounds, ``coordinator`` and ``debt`` the
    coordinator's and the loan-stacking check's.
    The RPCs of the four party services are also attributes of their own (``stubs.Setup``), for
    callers written against the single party service they replace.
    """

    def __init__(self, channel: grpc.Channel) -> None:
        self.job = job_pb2_grpc.JobStub(channel)
        self.psi = psi_pb2_grpc.PsiStub(channel)
        self.logistic = logistic_pb2_grpc.LogisticStub(channel)
        self.scoring = scoring_pb2_grpc.ScoringStub(channel)
        self.binning = binning_pb2_grpc.BinningStub(channel)
        self.coordinator = coordinator_pb2_grpc.CoordinatorStub(channel)
        self.debt = debt_pb2_grpc.DebtServiceStub(channel)
        self.trees = trees_pb2_grpc.TreesStub(channel)
        self.Setup = self.job.Setup
        self.EndEpoch = self.job.EndEpoch
        self.Restore = self.job.Restore
        self.SaveModel = self.job.SaveModel
        self.PsiBlind = self.psi.PsiBlind
        self.PsiApply = self.psi.PsiApply
        self.PsiFinish = self.psi.PsiFinish
        self.PsiAlign = self.psi.PsiAlign
        self.PsiCommit = self.psi.PsiCommit
        self.ComputePartial = self.logistic.ComputePartial
        self.PutPartial = self.logistic.PutPartial
        self.ComputeResidual = self.logistic.ComputeResidual
        self.PutResidual = self.logistic.PutResidual
        self.ComputeGradient = self.logistic.ComputeGradient
        self.Evaluate = self.logistic.Evaluate
        self.PartialScore = self.scoring.PartialScore
        self.Score = self.scoring.Score


def fan_out(
    stubs: Mapping[str, S],
    rpc: Callable[[S], grpc.UnaryUnaryMultiCallable[Req, Rep]],
    make: Callable[[str], Req],
    *,
    timeout_s: float,
    idempotent: bool = True,
    pool: Executor | None = None,
) -> dict[str, Rep]:
    """The same RPC on every peer of ``stubs`` (name -> stub), in parallel on ``pool`` (in turn
    without one); ``make(name)`` is each peer's request.

    Returns the replies by name, in the order of ``stubs``. Every call runs to its end; then the
    first error in that order is raised (it names its party).
    """
    if pool is None:
        return {
            name: call(
                rpc(stub), make(name), party=name, timeout_s=timeout_s, idempotent=idempotent
            )
            for name, stub in stubs.items()
        }
    futures = {
        name: pool.submit(
            call, rpc(stub), make(name), party=name, timeout_s=timeout_s, idempotent=idempotent
        )
        for name, stub in stubs.items()
    }
    errors = [f.exception() for f in futures.values()]
    for error in errors:
        if error is not None:
            raise error
    return {name: future.result() for name, future in futures.items()}


def check_key(key: PublicKey, *, allow_small: bool, party: str) -> PublicKey:
    """``key`` when it meets the key policy for a peer's key, else ``PeerKeyError`` naming
    ``party`` (a text the caller may see: it says which rule the key breaks)."""
    try:
        return check_peer_key(key, allow_small=allow_small, party=party)
    except PeerKeyError:
        raise
    except CryptoError as exc:
        raise PeerKeyError(str(exc)) from exc


class Peers:
    """Stubs for every party of the job and for the coordinator, made lazily, reused."""

    def __init__(
        self,
        addresses: Mapping[str, str],
        lender: str,
        *,
        credentials: grpc.ChannelCredentials | None,
        own_name: str,
        allow_small_keys: bool = False,
    ) -> None:
        self.addresses = dict(addresses)
        # The test-only switch: the coordinator's key may then be 512 to 2047 bits.
        self.allow_small_keys = allow_small_keys
        self.lender = lender
        self.parties = sorted(n for n in self.addresses if n != COORDINATOR)
        self.hosts = [n for n in self.parties if n != lender]
        self._credentials = credentials
        self._own = own_name
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, PeerStubs] = {}
        self._lock = threading.Lock()
        self._key: PublicKey | None = None
        # Apart from ``_lock``: the key is fetched with a call, which takes ``_lock``.
        self._key_lock = threading.Lock()
        self.coordinator_job = ""
        self._seq = itertools.count(1)

    def channel(self, name: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(name)
            if channel is None:
                channel = open_channel(
                    self.addresses[name],
                    party_name=name,
                    credentials=self._credentials,
                    self_name=self._own,
                )
                self._channels[name] = channel
            return channel

    def stubs(self, name: str) -> PeerStubs:
        """The typed stubs of node ``name`` (a party or ``COORDINATOR``)."""
        channel = self.channel(name)
        with self._lock:
            stubs = self._stubs.get(name)
            if stubs is None:
                stubs = self._stubs[name] = PeerStubs(channel)
            return stubs

    def call(
        self,
        name: str,
        rpc: Callable[[PeerStubs], grpc.UnaryUnaryMultiCallable[Req, Rep]],
        request: Req,
        timeout_s: float,
        *,
        idempotent: bool = True,
    ) -> Rep:
        """``rpc`` of node ``name`` with ``request``: ``peers.call(p, lambda s: s.job.Setup, r, t)``."""
        return call(
            rpc(self.stubs(name)), request, party=name, timeout_s=timeout_s, idempotent=idempotent
        )

    def fan_out(
        self,
        names: Sequence[str],
        rpc: Callable[[PeerStubs], grpc.UnaryUnaryMultiCallable[Req, Rep]],
        make: Callable[[str], Req],
        timeout_s: float,
        *,
        idempotent: bool = True,
    ) -> dict[str, Rep]:
        """``rpc`` on each of ``names`` at once (``fan_out``); the replies by name.

        Each fan-out has threads of its own, one per peer: concurrent fan-outs (a lender
        scoring many applicants at once) never wait for each other's calls.
        """
        stubs = {name: self.stubs(name) for name in names}
        with ThreadPoolExecutor(max_workers=max(1, len(stubs)), thread_name_prefix="peer") as pool:
            return fan_out(stubs, rpc, make, timeout_s=timeout_s, idempotent=idempotent, pool=pool)

    def coordinator_key(self) -> PublicKey:
        """The coordinator's current public key (and job id), asked once and cached.

        Safe under concurrent callers (a lender scores many applicants at once): the first asks,
        the others wait for its answer, and nobody sees the key without its job id. A key that
        fails the key policy (``check_key``) is refused (``PeerKeyError``) and not kept.
        """
        key = self._key
        if key is not None:
            return key
        with self._key_lock:
            if self._key is None:
                reply = self.call(
                    COORDINATOR,
                    lambda s: s.coordinator.GetPublicKey,
                    coordinator_pb2.PublicKeyRequest(),
                    30.0,
                )
                key = check_key(
                    PublicKey.from_json(reply.public_key_json),
                    allow_small=self.allow_small_keys,
                    party="the coordinator",
                )
                # The job id first: a reader that sees the key must also see its job.
                self.coordinator_job = reply.env.job_id
                self._key = key
            return self._key

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            self._stubs.clear()
