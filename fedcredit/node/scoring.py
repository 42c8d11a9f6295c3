"""Online and batch scoring at the lender: partners' encrypted parts, one masked decryption.

The lender asks each partner for its encrypted partial scores (packed into the slots of the
masked decryption before encryption: one ciphertext per slots-per-ciphertext applicants), adds
its own and a fresh mask per slot, and has the coordinator decrypt the masked slots. It learns
the final score and so, per applicant, the partners' contribution as one aggregate, each
partner's part rounded to the federation file's [scoring] precision_bits: with one partner,
that partner's part (which is why a single partner answers only under
``allow_single_partner``). What a partner answers, for whom and how
often is its own policy (``fedcredit.node.partner``): by default an applicant it does not hold
gets an answer the lender cannot tell from a customer's (``fedcredit.protocol.disclosure``).

A lender of a loan-stacking consortium (``debt``) also asks, in parallel, how many other
lenders each applicant owes and how much (docs/DEBT.md); the two aggregates go next to the
score. A failed debt check leaves them out with a reason and never fails the score.

A trees model is scored by ``fedcredit.node.trees_scoring`` (one round of partner calls, no
decryption); the debt check and the batching are the same.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from fedcredit.debt import DebtResult
from fedcredit.errors import FedCreditError, ProtocolError
from fedcredit.node.results import ApplicantScore, scored_applicants
from fedcredit.node.serde import common, keys, scoring
from fedcredit.node.state import PartyNode
from fedcredit.node.transport.peers import COORDINATOR
from fedcredit.node.trees_scoring import score_trees
from fedcredit.protocol.guard import Header
from fedcredit.protocol.logistic.lender import LabelParty
from fedcredit.protocol.trees.lender import TreesLender

log = logging.getLogger("fedcredit.node")

SCORE_TIMEOUT_S = 30.0
DECRYPT_TIMEOUT_S = 60.0
MAX_SCORE_BATCH = 100_000

DebtCheck = Callable[[Sequence[str]], list[DebtResult]]
"""Asks the consortium about applicants: one result per applicant, in order."""


def score_applicants(
    node: PartyNode, ids: list[str], debt: DebtCheck | None = None
) -> list[ApplicantScore]:
    """Probability, score, grade and reasons for each applicant, in the order given.

    With ``debt``, each applicant also gets ``other_lenders``, ``total_outstanding`` and
    ``debt_reason`` (or only a reason, when the check failed).
    """
    if not ids:
        return []
    if len(ids) > MAX_SCORE_BATCH:
        raise ProtocolError(f"at most {MAX_SCORE_BATCH} applicants per call, got {len(ids)}")
    if debt is None:
        return _score(node, ids)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="debt-check")
    try:
        pending = pool.submit(debt, ids)
        scored = _score(node, ids)
    finally:
        # A failed score does not wait for the debt check (it ends on its own deadlines).
        pool.shutdown(wait=False)
    return add_debt(scored, pending)


def common_customers(node: PartyNode) -> list[str]:
    """The customers the lender's current job aligned with every partner (private set
    intersection), in the shared order; ``ProtocolError`` when no job was aligned."""
    party = node.job.party
    if party.split is None:
        raise ProtocolError(
            f"party {node.name!r} has aligned no customers: run the private alignment first"
        )
    return [str(party.ids[i]) for i in party.aligned_rows]


def add_debt(
    scored: list[ApplicantScore], pending: Future[list[DebtResult]]
) -> list[ApplicantScore]:
    """Each applicant's score with its debt aggregates (or why they are missing)."""
    try:
        results = pending.result()
    except FedCreditError as exc:
        log.warning("debt check failed: %s", exc)
        reason = f"debt check unavailable: {exc}"
    except Exception:  # An optional addition must never fail the score.
        log.exception("debt check failed")
        reason = "debt check unavailable: internal error (see the lender node's log)"
    else:
        return [
            dataclasses.replace(
                item,
                other_lenders=result.other_lenders,
                total_outstanding=(
                    result.total_outstanding if result.total_outstanding_cents is not None else None
                ),
                debt_reason=result.reason,
            )
            for item, result in zip(scored, results, strict=True)
        ]
    return [dataclasses.replace(item, debt_reason=reason) for item in scored]


def _score(node: PartyNode, ids: list[str]) -> list[ApplicantScore]:
    # The loaded model's family decides (its part says "family": "trees" or nothing).
    if isinstance(node.scoring_role(), TreesLender):
        return score_trees(node, ids)
    lender = node.scoring_party()
    if not isinstance(lender, LabelParty):
        raise ProtocolError(f"party {node.name!r} is not the lender: it does not score")
    peers = node.scoring_peers()
    key = peers.coordinator_key()
    lender.public_key = key
    # The lender's own part is added in the clear: the partners' fresh ciphertexts already hide
    # the sum, and ``packed_score_request`` re-randomizes it before the coordinator sees
    # anything, so encrypting it would buy nothing.
    own, contributions, missing = lender.own_part_for_ids(ids)
    env = common.envelope(Header(peers.coordinator_job, 0, 0, 0))
    request = scoring.score_ids(env, ids)
    replies = peers.fan_out(
        peers.hosts, lambda s: s.scoring.PartialScore, lambda _: request, SCORE_TIMEOUT_S
    )
    # Each partner packs its partial scores into the slots of the masked decryption, so one
    # ciphertext carries as many applicants as one packed decryption does.
    partials = [
        scoring.packed_partials(name, reply, key, len(ids))
        for name, reply in sorted(replies.items())
    ]
    if not partials:
        raise ProtocolError("scoring needs at least one partner's partial scores")
    z_enc = partials[0]
    for vector in partials[1:]:
        z_enc = z_enc.add(vector)
    packed, pending = LabelParty.packed_score_request(z_enc, own)
    decrypt = keys.decrypt_request(env, packed, key, "score")
    slots = peers.call(
        COORDINATOR, lambda s: s.coordinator.DecryptMasked, decrypt, DECRYPT_TIMEOUT_S
    )
    decrypted = keys.slots_of(slots)
    z = LabelParty.finish_scores(decrypted, pending)
    own_z = contributions.sum(axis=1)
    names = lender.feature_names
    return scored_applicants(
        node.scorecard,
        ids,
        z,
        missing,
        lambda i: {n: float(v) for n, v in zip(names, contributions[i, :-1], strict=True)},
        lambda i: float(z[i] - own_z[i]),
    )
