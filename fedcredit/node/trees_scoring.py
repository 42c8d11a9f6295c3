"""Scoring with a saved trees model (docs/TREES.md, "Scoring"): one round of partner calls.

The lender's node asks every partner, in parallel, for its answer about the applicants
(``ScoreTrees``): in mix mode, per tree of the partner's, the leaves each applicant can reach;
in joint mode, each applicant's side at every split the partner holds a token for. Each partner
applies the federation file's [scoring] policy first, as for a logistic partial score
(``fedcredit.node.partner.PartnerScoring.trees_answer``: lender only, the single-partner rule,
``unknown_ids``, quota and audit log). The lender walks its own splits, combines the answers
(``fedcredit.protocol.trees.scoring.explain``) and gets the margin: the probability, the
scorecard's score and grade follow from it as for logistic regression. Nothing is encrypted and
the coordinator is not asked: what the lender learns is what the answers say (each applicant's
leaf in every partner tree, or side at every partner split), which it needs for the margin.

Reasons: the margin's path-dependent TreeSHAP attribution over the training rows' cover (the
lender's own columns each, every partner's splits summed into one figure, ``"partners"``).
"""

from __future__ import annotations

import numpy as np

from fedcredit.errors import ProtocolError
from fedcredit.node.results import ApplicantScore, scored_applicants
from fedcredit.node.serde import common, scoring
from fedcredit.node.serde import trees as serde
from fedcredit.node.state import PartyNode
from fedcredit.protocol.guard import Header
from fedcredit.protocol.trees.lender import TreesLender
from fedcredit.protocol.trees.messages import LeafMasks, SplitBits
from fedcredit.protocol.trees.partner import TreesPartner
from fedcredit.protocol.trees.scoring import explain

SCORE_TIMEOUT_S = 30.0


def partner_answer(node: PartyNode, caller: str, ids: list[str], job: str) -> LeafMasks | SplitBits:
    """This trees partner's answer for the lender's applicants, under its scoring policy."""
    party = node.scoring_role()
    if not isinstance(party, TreesPartner):
        raise ProtocolError(f"party {node.name!r}: its model is not a trees partner's")
    return node.partner.trees_answer(caller, job, ids, party, node.scoring_peers())


def _needs(lender: TreesLender) -> dict[str, tuple[dict[int, np.ndarray], set[str]]]:
    """What the lender needs of each partner: the leaves of its mix trees, its joint tokens."""
    needs: dict[str, tuple[dict[int, np.ndarray], set[str]]] = {}
    for t, record in enumerate(lender.model[: lender.kept]):
        tree = record.own
        if record.owner and record.owner != lender.name:
            leaves = tree.exists & np.array([not by for by in record.split_by])
            needs.setdefault(record.owner, ({}, set()))[0][t] = leaves
        for j, by in enumerate(record.split_by):
            if by and by != lender.name and j in record.tokens:
                needs.setdefault(by, ({}, set()))[1].add(record.tokens[j])
    return needs


def score_trees(node: PartyNode, ids: list[str]) -> list[ApplicantScore]:
    """Probability, score, grade and reasons of each applicant from a trees model."""
    lender = node.scoring_role()
    if not isinstance(lender, TreesLender):
        raise ProtocolError(f"party {node.name!r} is not the lender: it does not score")
    peers = node.scoring_peers()
    env = common.envelope(Header(peers.coordinator_job or "scoring", 0, 0, 0))
    request = scoring.score_ids(env, ids)
    replies = peers.fan_out(
        peers.hosts, lambda s: s.trees.ScoreTrees, lambda _: request, SCORE_TIMEOUT_S
    )
    needs = _needs(lender)
    answers = {
        p: serde.answer_of(
            reply,
            rows=len(ids),
            leaves=needs.get(p, ({}, set()))[0],
            tokens=needs.get(p, ({}, set()))[1],
        )
        for p, reply in replies.items()
    }
    raw, missing = lender.raw_for_ids(ids)
    explained = explain(
        lender.model[: lender.kept],
        lender.name,
        lender.base,
        lender.bins_for(raw),
        lender.n_regular,
        answers,
    )
    return scored_applicants(
        node.scorecard,
        ids,
        explained.margins,
        missing,
        lambda i: dict(zip(lender.feature_names, explained.own[i].tolist(), strict=True)),
        lambda i: float(explained.partners[i]),
    )


__all__ = ["partner_answer", "score_trees"]
