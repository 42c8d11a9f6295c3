"""What a node's steps return, as plain values: ``fedcredit.node.serde`` turns them into
replies, so the job state (``fedcredit.node.state``) never builds a protobuf message."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedcredit.crypto import EncryptedVector, PublicKey
from fedcredit.model.logistic import sigmoid
from fedcredit.model.scorecard import Scorecard

IncomingVector = Callable[[PublicKey, int, "int | None"], EncryptedVector]
"""A peer's ciphertext vector, loaded once the receiver knows what to expect:
``incoming(key, scale_bits, count)`` validates key, scale and count (``serde.common``)."""


@dataclass(frozen=True)
class SetupSummary:
    """A party's answer to Setup: counts, its checkpoints, names, a keyed data fingerprint."""

    rows: int
    features: int
    checkpoints: list[int]
    data_hash: str
    feature_names: list[str]


@dataclass(frozen=True)
class Alignment:
    """Counts after PSI alignment, and the weights the party then has."""

    common: int
    train: int
    validation: int
    test: int
    features: int


@dataclass(frozen=True)
class EpochLosses:
    """The losses the lender computed in the epoch just ended (None: not asked)."""

    train: float | None = None
    validation: float | None = None


@dataclass(frozen=True)
class Evaluation:
    """The lender's test metrics and its aggregate-only files (plots, report)."""

    metrics: Mapping[str, Any]
    files: Mapping[str, bytes]


@dataclass(frozen=True)
class ApplicantScore:
    """One applicant's score at the lender; ``error`` set when it could not be scored.

    ``other_lenders`` and ``total_outstanding`` are the loan-stacking aggregates (None: absent),
    ``debt_reason`` says why a total is withheld or why the check did not run.
    """

    id: str
    probability: float = 0.0
    score: float = 0.0
    grade: str = ""
    reasons: str = ""
    error: str = ""
    other_lenders: int | None = None
    total_outstanding: str | None = None
    debt_reason: str = ""


def scored_applicants(
    scorecard: Scorecard,
    ids: Sequence[str],
    z: np.ndarray,
    missing: Sequence[int],
    own: Callable[[int], Mapping[str, float]],
    partners: Callable[[int], float],
) -> list[ApplicantScore]:
    """Each applicant's probability, 350-950 score, grade and reasons from its logit ``z``
    (any family): ``own(i)`` is the lender's per-column part of applicant ``i``'s logit, and
    ``partners(i)`` the partners' part as one aggregate; an applicant in ``missing`` (not in
    the lender's data) gets only an error."""
    p = sigmoid(z)
    scores = scorecard.score_from_logit(z)
    grades = scorecard.grade(scores)
    unknown = set(missing)
    scored: list[ApplicantScore] = []
    for i, applicant in enumerate(ids):
        if i in unknown:
            scored.append(ApplicantScore(applicant, error="not in the lender's data"))
            continue
        reasons = scorecard.reasons(dict(own(i)), float(partners(i)))
        scored.append(
            ApplicantScore(
                applicant,
                probability=float(p[i]),
                score=float(scores[i]),
                grade=str(grades[i]),
                reasons=";".join(r.name for r in reasons),
            )
        )
    return scored
