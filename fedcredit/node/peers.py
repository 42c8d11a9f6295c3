"""A node's connections to the other nodes of a job: channels, stubs, calls with deadlines."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from typing import Any

import grpc

from fedcredit.crypto import PackedCiphertexts, PublicKey
from fedcredit.crypto.keys import check_peer_key
from fedcredit.node import convert
from fedcredit.node.client import call, open_channel
from fedcredit.proto.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc, party_pb2_grpc

COORDINATOR = "coordinator"


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

    def call_party(
        self, name: str, method: str, request: Any, timeout_s: float, *, idempotent: bool = True
    ) -> Any:
        stub = party_pb2_grpc.PartyStub(self.channel(name))
        return call(
            getattr(stub, method), request, party=name, timeout_s=timeout_s, idempotent=idempotent
        )

    def call_coordinator(
        self, method: str, request: Any, timeout_s: float, *, idempotent: bool = True
    ) -> Any:
        stub = coordinator_pb2_grpc.CoordinatorStub(self.channel(COORDINATOR))
        return call(
            getattr(stub, method),
            request,
            party=COORDINATOR,
            timeout_s=timeout_s,
            idempotent=idempotent,
        )

    def coordinator_key(self) -> PublicKey:
        """The coordinator's current public key (and job id), asked once and cached.

        Safe under concurrent callers (a lender scores many applicants at once): the first asks,
        the others wait for its answer, and nobody sees the key without its job id. A key that
        fails the key policy (``check_peer_key``) is refused (CryptoError) and not kept.
        """
        key = self._key
        if key is not None:
            return key
        with self._key_lock:
            if self._key is None:
                reply = self.call_coordinator(
                    "GetPublicKey", coordinator_pb2.PublicKeyRequest(), 30.0
                )
                key = check_peer_key(
                    PublicKey.from_json(reply.public_key_json),
                    allow_small=self.allow_small_keys,
                    party="the coordinator",
                )
                # The job id first: a reader that sees the key must also see its job.
                self.coordinator_job = reply.env.job_id
                self._key = key
            return self._key

    def decrypt_masked(self, env: common_pb2.Envelope, packed: PackedCiphertexts) -> list[int]:
        reply = self.call_coordinator(
            "DecryptMasked",
            coordinator_pb2.DecryptRequest(
                env=env,
                packed=convert.packed_to_proto(packed, self.coordinator_key()),
                phase="score",
            ),
            60.0,
        )
        return convert.ints_from_bytes(reply.slots, reply.slot_bytes, reply.count)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
