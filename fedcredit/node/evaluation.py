"""The lender's evaluation of the held-out rows, for either model family.

From the test rows' labels and margins (logits) the lender computes the committee's metrics
(``fedcredit.protocol.report``), and, when its federation file has a ``[policy]``, the
decision mix per grade: how many of those rows the policy would approve, refer and decline,
by the same code as ``fedcredit decide`` (``fedcredit.decision.decision_mix``). Only those
per-grade counts join the metrics the driver receives, as coarse as the grade table next to
them (docs/THREAT-MODEL.md, section 7). It also returns the score deciles ``fedcredit monitor``
compares a new population with; they stay in the lender's model part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from fedcredit.decision import Policy, decision_mix
from fedcredit.decision.stability import ScoreBaseline, decile_baseline
from fedcredit.model.logistic import sigmoid
from fedcredit.model.scorecard import Scorecard
from fedcredit.node.results import Evaluation
from fedcredit.protocol.report import evaluation_files, evaluation_metrics

EVALUATION_CSV: Final = "evaluation.csv"


def lender_evaluation(
    scorecard: Scorecard,
    policy: Policy | None,
    y: np.ndarray,
    margins: np.ndarray,
    threshold: float,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Evaluation, ScoreBaseline]:
    """The metrics (``extra`` added, and ``decisions`` with a policy) and files of the test
    rows, and their score deciles for monitoring."""
    p = sigmoid(margins)
    metrics = evaluation_metrics(y, p, scorecard, threshold)
    metrics.update(extra or {})
    if policy is not None:
        # The grade table's scores (from p), so each grade's decisions add up to its rows.
        scores = scorecard.score(p)
        grades = [str(g) for g in scorecard.grade(scores).tolist()]
        metrics["decisions"] = decision_mix(
            policy, scores, grades, [name for name, _ in scorecard.grades]
        )
    baseline = decile_baseline(scorecard.score_from_logit(margins))
    return Evaluation(metrics, evaluation_files(y, p, scorecard, metrics)), baseline


def evaluation_csv(ids: Sequence[str], y: np.ndarray, p: np.ndarray) -> str:
    """``evaluation.csv``, kept in the lender's own job folder: id, label, probability per
    test row. The lender learns these scores anyway; keeping them lets its risk team check
    the evaluation and compare ``fedcredit score`` with it. They never leave the lender."""
    lines = ["id,label,probability"]
    lines += [
        f"{i},{int(label)},{prob!r}"
        for i, label, prob in zip(ids, y.tolist(), p.tolist(), strict=True)
    ]
    return "\n".join(lines) + "\n"


__all__ = ["EVALUATION_CSV", "evaluation_csv", "lender_evaluation"]
