"""A party node's side of federated binning: the steps of ``fedcredit.protocol.binning`` with
their peer calls (the Binning servicer only checks callers and converts messages).

The driver asks the lender to send its encrypted labels (``send_labels``), each partner to send
its encrypted bin sums (``send_bin_sums``), and the lender to choose the bins (``select_bins``).
Ciphertexts under the lender's own key go between the lender and each partner directly: the
driver only sees acknowledgements and, at the end, the IV report (one IV and two bin counts per
column).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Sequence
from typing import Any

from fedcredit.crypto import PublicKey
from fedcredit.errors import ProtocolError
from fedcredit.node.results import IncomingVector
from fedcredit.node.serde import binning, common
from fedcredit.node.state import PartyNode
from fedcredit.node.transport.peers import check_key
from fedcredit.protocol.binning import (
    ColumnPlan,
    EncryptedBinSums,
    LenderBinning,
    PartnerBinning,
    report_rows,
    train_raw,
)
from fedcredit.protocol.binning.settings import BinningSettings
from fedcredit.protocol.guard import Header
from fedcredit.protocol.logistic.lender import LabelParty

PEER_TIMEOUT_S = 600.0


class BinningJob:
    """The binning state of one party node, made afresh for each job.

    ``recorded`` (when a list) gets the replies of the calls this node makes, as
    ``("reply:<RPC>", request, reply)``.
    """

    def __init__(
        self,
        node: PartyNode,
        settings: BinningSettings | None,
        categorical: Sequence[str] = (),
        recorded: list[tuple[str, Any, Any]] | None = None,
    ) -> None:
        self.node = node
        self.settings = settings
        self.categorical = tuple(categorical)
        self.recorded = recorded
        self._lock = threading.Lock()
        self._state: tuple[str, LenderBinning | PartnerBinning] | None = None
        self._seq = itertools.count(1)

    # -- who is who ------------------------------------------------------------------------
    def side(self) -> LenderBinning | PartnerBinning:
        job = self.node.job
        if self.settings is None:
            raise ProtocolError(f"binning is not enabled in {self.node.name!r}'s federation file")
        with self._lock:
            if self._state is None or self._state[0] != job.job_id:
                party = self.node._features()  # binning encodes the logistic family's columns
                side: LenderBinning | PartnerBinning
                if isinstance(party, LabelParty):
                    side = LenderBinning(party, self.settings, self.categorical)
                else:
                    side = PartnerBinning(party, self.settings, self.categorical)
                self._state = (job.job_id, side)
            return self._state[1]

    def lender(self) -> LenderBinning:
        side = self.side()
        if not isinstance(side, LenderBinning):
            raise ProtocolError(f"party {self.node.name!r} is not the label holder")
        return side

    def partner(self) -> PartnerBinning:
        side = self.side()
        if not isinstance(side, PartnerBinning):
            raise ProtocolError(f"party {self.node.name!r} holds the labels; it is no partner")
        return side

    def is_lender(self, caller: str) -> bool:
        return caller == self.node.job.peers.lender

    def is_host(self, caller: str) -> bool:
        return caller in self.node.job.peers.hosts

    def _next(self, header: Header) -> Header:
        return Header(header.job_id, header.epoch, header.batch, next(self._seq))

    def _record(self, rpc: str, request: Any, reply: Any) -> None:
        if self.recorded is not None:
            self.recorded.append((f"reply:{rpc}", request, reply))

    # -- lender ----------------------------------------------------------------------------
    def send_labels(self, header: Header) -> None:
        """Encrypt the training labels under a key of the lender's own and send them to every
        partner (PutLabels)."""
        side = self.lender()
        job_key = self.node.job.party.public_key
        if job_key is None:
            raise ProtocolError(f"party {self.node.name!r} has no job key")
        # The lender's own key is as large as the coordinator's, which the coordinator
        # refused to make below 2048 bits outside tests.
        labels = side.encrypt_labels(job_key.bits, allow_small=job_key.bits < 2048)
        peers = self.node.job.peers
        envs = {h: common.envelope(self._next(header)) for h in peers.hosts}
        requests = binning.label_vectors(envs, labels)
        replies = peers.fan_out(
            peers.hosts, lambda s: s.binning.PutLabels, requests.__getitem__, PEER_TIMEOUT_S
        )
        for host, reply in replies.items():
            self._record("PutLabels", requests[host], reply)

    def receive_sums(self, caller: str, sums: EncryptedBinSums) -> None:
        self.lender().receive_sums(caller, sums)

    def label_key(self) -> PublicKey:
        """The lender's own key, under which partners' bin sums arrive."""
        return self.lender().public_key

    def select_bins(self, header: Header) -> tuple[str, dict[str, int]]:
        """Choose every column's bins, send each partner its plans (PutBinPlan); the IV report
        as JSON and the weights of each party after binning."""
        side = self.lender()
        peers = self.node.job.peers
        plans, reports, own = side.select(peers.hosts)
        requests = {
            h: binning.bin_plan(common.envelope(self._next(header)), plans[h]) for h in peers.hosts
        }
        replies = peers.fan_out(
            peers.hosts, lambda s: s.binning.PutBinPlan, requests.__getitem__, PEER_TIMEOUT_S
        )
        for host, reply in replies.items():
            self._record("PutBinPlan", requests[host], reply)
        features = {host: int(r.features) for host, r in replies.items()}
        features[self.node.name] = own
        return json.dumps(report_rows(reports)), features

    # -- partners --------------------------------------------------------------------------
    def receive_labels(self, public_key_json: str, incoming: IncomingVector) -> None:
        side = self.partner()
        small = self.node.allow_small_keys
        key = PublicKey.from_json(public_key_json)
        # Before reading a ciphertext under it: the key policy (PeerKeyError naming the lender).
        check_key(key, allow_small=small, party="the lender")
        rows = len(train_raw(side.party))
        side.receive_labels(incoming(key, 0, rows), allow_small=small)

    def send_bin_sums(self, header: Header) -> None:
        """Encrypted event counts per bin, under the lender's key, to the lender (PutBinSums)."""
        side = self.partner()
        sums = side.bin_sums()
        message = binning.bin_sums_message(
            common.envelope(self._next(header)), sums, side.label_key
        )
        peers = self.node.job.peers
        reply = peers.call(peers.lender, lambda s: s.binning.PutBinSums, message, PEER_TIMEOUT_S)
        self._record("PutBinSums", message, reply)

    def apply_plan(self, plans: list[ColumnPlan]) -> int:
        return self.partner().apply_plan(plans)
