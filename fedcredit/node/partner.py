"""A partner's side of online scoring: whom it answers, how much, what, and its log.

The lender's node asks each partner for its encrypted partial scores of a list of applicants
(``PartialScore``). Before answering, the partner applies the federation file's [scoring]
table, which every party reads and agrees to (parties/README.md):

- it answers the lender only, and not at all when it is the federation's only partner unless
  ``allow_single_partner`` (the final score would hand the lender its partial score, F1);
- an id it does not hold gets the answer ``unknown_ids`` says (``fedcredit.protocol.disclosure``:
  by default one the lender cannot tell from a customer's, F2);
- at most ``quota_per_day`` applicants to the lender in any 24 hours, every query in its
  audit log (``fedcredit.node.audit``, F14);
- each partial score rounded to ``precision_bits`` (done by the party, ``release_bits``).

A trees partner answers ``ScoreTrees`` instead (``trees_answer``: per tree the leaves an
applicant can reach, or its side at each of its splits) under the same rules; its answers are
exact (nothing to round), and an unknown id under ``sample`` is answered as the keyed stand-in
customer's, under ``mean`` as a row of missing values (mix: every leaf, which the lender
averages; joint: each split's learned default side).

The lender's ``Stability`` queries (``fedcredit monitor``, ``fedcredit.node.stability``) are
about applicants too: the same caller rule, quota and audit log (without the single-partner
rule: a column's index holds no partial score).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fedcredit.config import ScoringSettings
from fedcredit.crypto import EncryptedVector
from fedcredit.decision.stability import FeatureStability
from fedcredit.errors import ProtocolError
from fedcredit.node.audit import ScoringAudit
from fedcredit.node.secret import keyed_int, keyed_tag, node_secret
from fedcredit.node.stability import (
    QUERY,
    SampledRows,
    StabilityQuery,
    check_query,
    columns_stability,
)
from fedcredit.node.transport.peers import Peers
from fedcredit.protocol.columns import PartyColumns
from fedcredit.protocol.disclosure import UnknownAnswers
from fedcredit.protocol.logistic.partner import FeatureParty
from fedcredit.protocol.reference import StabilityReference
from fedcredit.protocol.trees.messages import LeafMasks, SplitBits
from fedcredit.protocol.trees.partner import TreesPartner

log = logging.getLogger("fedcredit.node")


class PartnerScoring:
    """Policy, quota and audit log of one partner node for the lender's scoring requests."""

    def __init__(self, name: str, home: Path, settings: ScoringSettings) -> None:
        self.name = name
        self.home = home
        self.settings = settings
        self._lock = threading.Lock()
        self._audit: ScoringAudit | None = None
        self._answers: tuple[FeatureParty, UnknownAnswers] | None = None
        self._secret: bytes | None = None
        self._sampled: SampledRows | None = None

    def secret(self) -> bytes:
        """The node's secret (``fedcredit.node.secret``), read once."""
        if self._secret is None:
            self._secret = node_secret(self.home, self.name)
        return self._secret

    def fingerprint(self, job_id: str, data_hash: str) -> str:
        """What the driver gets for ``data_hash``: a per-job keyed tag only this node can
        recompute (it cannot test a guess of the data with it, nor link two jobs)."""
        return keyed_tag(self.secret(), "data", f"{job_id}\0{data_hash}")

    def audit(self) -> ScoringAudit:
        with self._lock:
            if self._audit is None:
                self._audit = ScoringAudit(
                    self.name, self.home / "audit", self.secret(), self.settings.quota_per_day
                )
            return self._audit

    def partial_score(
        self, caller: str, job: str, ids: list[str], party: FeatureParty, peers: Peers
    ) -> EncryptedVector:
        """The encrypted partial scores of ``ids`` for the lender, or a logged refusal."""
        self._admit(caller, job, ids, party, peers)
        party.public_key = peers.coordinator_key()
        vector, missing = party.partial_for_ids(ids, self._unknown(party))
        if missing:
            log.info(
                "scoring: %d applicant(s) unknown here answered as unknown_ids = %r says",
                len(missing),
                self.settings.unknown_ids,
            )
        return vector

    def trees_answer(
        self, caller: str, job: str, ids: list[str], party: TreesPartner, peers: Peers
    ) -> LeafMasks | SplitBits:
        """This trees partner's scoring answer for the lender, or a logged refusal."""
        self._admit(caller, job, ids, party, peers)
        missing = party.raw_for_ids(ids)[1]
        if missing and self.settings.unknown_ids == "sample":
            rows = self._sampled_rows().for_party(party)([ids[i] for i in missing])
            ids = list(ids)
            for i, row in zip(missing, rows.tolist(), strict=True):
                ids[i] = party.ids[row]
        if missing:
            log.info(
                "scoring: %d applicant(s) unknown here answered as unknown_ids = %r says",
                len(missing),
                self.settings.unknown_ids,
            )
        return party.answer_ids(ids)

    def _admit(
        self, caller: str, job: str, ids: list[str], party: PartyColumns, peers: Peers
    ) -> None:
        """Log the scoring query as answered (within the quota), or log it refused and raise."""
        audit = self.audit()
        refusal = self._refusal(caller, ids, party, peers)
        if refusal is not None:
            audit.refuse(caller, job, ids, refusal)
            raise ProtocolError(refusal)
        audit.admit(caller, job, ids)

    def _sampled_rows(self) -> SampledRows:
        """Which customer stands in for an unknown id, by row (``unknown_ids = "sample"``):
        the consistent keyed choice ``PartialScore`` makes, shared by trees answers and
        stability queries."""
        with self._lock:
            if self._sampled is None:
                self._sampled = SampledRows(self.secret())
            return self._sampled

    def stability(
        self, query: StabilityQuery, party: PartyColumns, reference: StabilityReference
    ) -> list[FeatureStability]:
        """The CSI of each of this partner's columns on the query's ids for the lender (the
        index values only), or a logged refusal."""
        audit = self.audit()
        refusal = self._stability_refusal(query, party)
        if refusal is not None:
            audit.refuse(query.caller, query.job, query.ids, refusal, QUERY)
            raise ProtocolError(refusal)
        audit.admit(query.caller, query.job, query.ids, QUERY)
        unknown = None
        if self.settings.unknown_ids == "sample":
            unknown = self._sampled_rows().for_party(party)
        return columns_stability(party, reference, query.ids, unknown)

    def _stability_refusal(self, query: StabilityQuery, party: PartyColumns) -> str | None:
        if query.caller != query.lender:
            return f"stability indices are only given to the lender, not {query.caller!r}"
        try:
            check_query(self.name, query.ids)
        except ProtocolError as exc:
            return str(exc)
        if self.settings.unknown_ids == "refuse" and party.rows_for_ids(list(query.ids))[1]:
            return (
                f"party {self.name!r} does not hold every applicant asked about, and the "
                'federation file\'s [scoring] unknown_ids = "refuse"'
            )
        return None

    def _refusal(
        self, caller: str, ids: list[str], party: PartyColumns, peers: Peers
    ) -> str | None:
        if caller != peers.lender:
            return f"partial scores are only given to the lender, not {caller!r}"
        if len(peers.hosts) == 1 and not self.settings.allow_single_partner:
            return (
                f"party {self.name!r} is the federation's only partner: the final score would "
                "give the lender its partial score of every applicant, so it does not score "
                "alone unless the federation file's [scoring] allow_single_partner = true"
            )
        if self.settings.unknown_ids == "refuse" and party.rows_for_ids(ids)[1]:
            return (
                f"party {self.name!r} does not hold every applicant asked for, and the "
                'federation file\'s [scoring] unknown_ids = "refuse"'
            )
        return None

    def _unknown(self, party: FeatureParty) -> Callable[[list[str]], np.ndarray] | None:
        if self.settings.unknown_ids == "refuse":
            return None
        with self._lock:
            if self._answers is None or self._answers[0] is not party:
                secret = self.secret()
                partials = party.linear(party.design_for(party.raw))
                answers = UnknownAnswers(
                    self.settings.unknown_ids,
                    party.ids,
                    partials,
                    lambda purpose, text: keyed_int(secret, purpose, text),
                )
                self._answers = (party, answers)
            return self._answers[1].answer
