"""Stability monitoring as the lender's operator: the scores of a population and every party's
column indices, from local nodes loaded with a model (``scoring_session``).

``population_scores`` scores the ids through the lender's ``Score`` RPC, as ``fedcredit score``
does; ``column_stability`` asks each party's node, with the lender's own certificate, for the
characteristic stability index of each of its columns on the same ids (``Stability``): each
party computes it from the reference in its own model part and answers the index values only.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Final

import numpy as np

from fedcredit.decision.stability import FeatureStability
from fedcredit.driver.scoring import SCORE_TIMEOUT_S, ScoringSession
from fedcredit.node.serde.scoring import stabilities_of, stability_request
from fedcredit.node.transport.client import call
from fedcredit.proto.v1 import common_pb2, scoring_pb2

SCORE_CHUNK: Final = 2000


def population_scores(session: ScoringSession, ids: Sequence[str]) -> tuple[np.ndarray, int]:
    """The scores of the applicants the lender could score, in order, and how many it could
    not (not in its data)."""
    scores: list[float] = []
    unscored = 0
    for start in range(0, len(ids), SCORE_CHUNK):
        request = scoring_pb2.ScoreRequest(ids=list(ids[start : start + SCORE_CHUNK]))
        reply = call(session.stub.Score, request, party=session.lender, timeout_s=SCORE_TIMEOUT_S)
        for item in reply.applicants:
            if item.error:
                unscored += 1
            else:
                scores.append(float(item.score))
    return np.asarray(scores, dtype=np.float64), unscored


def column_stability(
    session: ScoringSession, parties: Sequence[str], ids: Sequence[str]
) -> list[FeatureStability]:
    """Every column's CSI on ``ids``, party by party in the order given (the lender's own node
    included), each computed at the party that holds the column."""
    env = common_pb2.Envelope(job_id=f"monitor-{uuid.uuid4().hex[:8]}", seq=1)
    request = stability_request(env, ids)
    found: list[FeatureStability] = []
    for party in parties:
        reply = session.call_as_lender(
            party, lambda s: s.scoring.Stability, request, timeout_s=SCORE_TIMEOUT_S
        )
        found += stabilities_of(party, reply)
    return found


__all__ = ["column_stability", "population_scores"]
