"""Credit scores from probabilities of default: points, grades and reason codes.

Convention (higher score = lower risk):

- ``odds`` below are the odds of default ``p / (1 - p)``; ``base_odds`` is given as
  good:bad, so at ``score == base_score`` the odds of default are ``1 / base_odds``.
- ``factor = pdo / ln 2`` and ``offset = base_score - factor * ln(base_odds)``.
- ``score = offset - factor * ln(p / (1 - p)) = offset - factor * z`` where ``z`` is the
  model's logit. Halving the odds of default (doubling good:bad) adds ``pdo`` points.
- Scores are clipped to ``[min_score, max_score]``.

With the defaults (600 points at 50:1, 20 points to double the odds) a 2 % default
risk scores about 600 and a 22 % one about 523.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fedcredit.errors import ConfigError, DataError

FloatArray = npt.NDArray[np.float64]

PARTNERS = "partners"
"""The one reason item standing for every partner's columns together."""

DEFAULT_GRADES: tuple[tuple[str, float], ...] = (
    ("A", 680.0),
    ("B", 620.0),
    ("C", 560.0),
    ("D", 500.0),
    ("E", -math.inf),
)

_P_EPS = 1e-15


@dataclass(frozen=True)
class Reason:
    """One reason code: a column (or ``"partners"``) and the points it cost the applicant."""

    name: str
    points: float


@dataclass(frozen=True)
class PointsTable:
    """Points per bin: ``score = base + sum of points[column][bin]`` (before clipping)."""

    base: float
    points: dict[str, FloatArray]


@dataclass(frozen=True)
class Scorecard:
    """Score scaling and grade bands; see the module docstring for the convention.

    ``grades`` are ``(grade, lowest score)`` pairs from best to worst; the last one should
    have ``-inf`` as its lowest score so every score gets a grade.
    """

    base_score: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0
    min_score: float = 350.0
    max_score: float = 950.0
    grades: tuple[tuple[str, float], ...] = field(default=DEFAULT_GRADES)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.pdo) and self.pdo > 0):
            raise ConfigError(f"pdo must be a positive number, got {self.pdo}")
        if not (math.isfinite(self.base_odds) and self.base_odds > 0):
            raise ConfigError(f"base_odds must be a positive number, got {self.base_odds}")
        if not math.isfinite(self.base_score):
            raise ConfigError("base_score must be finite")
        if not self.min_score < self.max_score:
            raise ConfigError(
                f"min_score must be below max_score, got {self.min_score} and {self.max_score}"
            )
        if not self.grades:
            raise ConfigError("grades must hold at least one band")
        lows = [low for _, low in self.grades]
        if any(a <= b for a, b in itertools.pairwise(lows)):
            raise ConfigError(
                "grade bands must go from best to worst, their lowest scores strictly falling"
            )
        if lows[-1] > self.min_score:
            raise ConfigError(
                f"the last grade band starts at {lows[-1]}, above min_score {self.min_score}: "
                "some scores would have no grade"
            )

    @property
    def factor(self) -> float:
        """Points per unit of log-odds: ``pdo / ln 2``."""
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        """Score at odds of default 1 (logit 0): ``base_score - factor * ln(base_odds)``."""
        return self.base_score - self.factor * math.log(self.base_odds)

    def score_from_logit(self, z: npt.ArrayLike) -> FloatArray:
        """``offset - factor * z``, clipped to ``[min_score, max_score]``."""
        z_arr = np.asarray(z, dtype=np.float64)
        if not np.all(np.isfinite(z_arr)):
            raise DataError("logits contain NaN or infinity")
        return np.clip(self.offset - self.factor * z_arr, self.min_score, self.max_score)

    def score(self, p: npt.ArrayLike) -> FloatArray:
        """Scores of probabilities of default (clipped to ``[1e-15, 1 - 1e-15]`` first)."""
        p_arr = np.asarray(p, dtype=np.float64)
        if not np.all((p_arr >= 0.0) & (p_arr <= 1.0)):
            raise DataError("probabilities of default must lie in [0, 1]")
        q = np.clip(p_arr, _P_EPS, 1.0 - _P_EPS)
        return self.score_from_logit(np.log(q) - np.log1p(-q))

    def probability(self, score: npt.ArrayLike) -> FloatArray:
        """Probability of default at a score (the inverse of ``score`` inside the clip range)."""
        s_arr = np.asarray(score, dtype=np.float64)
        if not np.all(np.isfinite(s_arr)):
            raise DataError("scores contain NaN or infinity")
        z = (self.offset - s_arr) / self.factor
        return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)

    def grade(self, score: npt.ArrayLike) -> npt.NDArray[np.str_]:
        """Grade of each score: the first band whose lowest score it reaches."""
        s_arr = np.asarray(score, dtype=np.float64)
        names = [name for name, _ in self.grades]
        lows = np.array([low for _, low in self.grades], dtype=np.float64)
        # Bands are sorted by falling lowest score: count the bands a score falls short of.
        index = np.sum(s_arr[..., None] < lows, axis=-1)
        index = np.minimum(index, len(names) - 1)
        result: npt.NDArray[np.str_] = np.asarray(names, dtype=np.str_)[index]
        return result

    def points(self, logit_contribution: npt.ArrayLike) -> FloatArray:
        """Score points of a logit contribution: ``-factor * contribution`` (no offset, no clip)."""
        return -self.factor * np.asarray(logit_contribution, dtype=np.float64)

    def reasons(
        self, contributions: Mapping[str, float], partners_total: float, top: int = 3
    ) -> list[Reason]:
        """The ``top`` adverse reasons for one applicant, largest point loss first.

        ``contributions`` maps each lender column to its share of the applicant's logit
        (``w_j * x_j``, or ``w_j * (x_j - reference_j)`` against a reference applicant);
        ``partners_total`` is the sum of every partner's share, which is all the lender
        learns about partners. Only positive contributions (raising the risk) are
        adverse. The partners appear as one item named ``"partners"``, never one per
        partner. Each reason's ``points`` is the score it cost: ``factor * contribution``.
        """
        if top < 1:
            raise ConfigError(f"top must be >= 1, got {top}")
        if PARTNERS in contributions:
            raise ConfigError(f"a lender column may not be named {PARTNERS!r}: it is reserved")
        items = [*contributions.items(), (PARTNERS, partners_total)]
        for name, value in items:
            if not math.isfinite(value):
                raise DataError(f"contribution of {name!r} is not a finite number")
        adverse = [(name, value) for name, value in items if value > 0.0]
        adverse.sort(key=lambda item: (-item[1], item[0]))
        return [Reason(name, self.factor * value) for name, value in adverse[:top]]

    def points_table(
        self, intercept: float, bin_logits: Mapping[str, Sequence[float] | FloatArray]
    ) -> PointsTable:
        """Points per bin of a binned model.

        ``bin_logits[column][k]`` is what bin ``k`` of that column adds to the logit:
        ``w_column * woe[k]`` for a WOE-coded model, ``w_k`` for a one-hot model. Then
        ``points[column][k] = -factor * bin_logits[column][k]`` and
        ``base = offset - factor * intercept``, so an applicant's score is ``base`` plus
        the points of their bins (clip it to ``[min_score, max_score]`` afterwards).
        Negative points are bins that lower the score (riskier than the reference).
        """
        if not math.isfinite(intercept):
            raise DataError("intercept must be finite")
        points: dict[str, FloatArray] = {}
        for column, values in bin_logits.items():
            array = np.asarray(values, dtype=np.float64)
            if array.ndim != 1 or not np.all(np.isfinite(array)):
                raise DataError(f"bin logits of {column!r} must be a 1-D list of finite numbers")
            points[column] = self.points(array)
        return PointsTable(base=self.offset - self.factor * intercept, points=points)
