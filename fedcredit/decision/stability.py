"""Population stability: does the population being scored still look like the training one?

Both indices are the same sum over bins, with ``p`` the baseline's share of a bin and ``q`` the
new population's::

    index = sum_i (q_i - p_i) * ln(q_i / p_i)

- the **population stability index** (PSI) over the score, binned by the scorecard's grade
  bands (``grade_baseline``) or by the deciles of the baseline scores (``decile_baseline``, the
  10 bins fixed at training and stored with the model as ``ScoreBaseline.to_dict()``);
- the **characteristic stability index** (CSI) of one feature over its own scorecard bins
  (``fedcredit.model.binning.Binning``), computed by the party that holds the column: only the
  index leaves it (``FeatureStability``), never a bin count.

Thresholds, as risk teams use them: below 0.1 stable, 0.1 to 0.25 watch, above 0.25 act.

A bin that is empty in one population would make the index infinite; every share below
``SHARE_FLOOR`` (0.01 %) is raised to it before the logarithm, without renormalising. An empty
bin against a share ``q`` in the other population then adds ``(q - 1e-4) * ln(q / 1e-4)``:
about 0.69 for 10 %, so a real shift still reads as one.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fedcredit.errors import DataError
from fedcredit.model.binning import Binning
from fedcredit.model.scorecard import Scorecard

STABLE_BELOW: Final = 0.1
WATCH_UP_TO: Final = 0.25
STABLE: Final = "stable"
WATCH: Final = "watch"
ACT: Final = "act"
SHARE_FLOOR: Final = 1e-4
DECILES: Final = 10

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def stability_status(index: float) -> str:
    """``stable`` below 0.1, ``watch`` from 0.1 to 0.25, ``act`` above 0.25."""
    if not math.isfinite(index) or index < 0.0:
        raise DataError(f"a stability index is a finite number of at least 0, got {index}")
    if index < STABLE_BELOW:
        return STABLE
    return WATCH if index <= WATCH_UP_TO else ACT


def shares(counts: npt.ArrayLike, floor: float = SHARE_FLOOR) -> FloatArray:
    """Each bin's share of the total, raised to ``floor`` where it is smaller."""
    c = _counts(counts, "bin counts")
    total = float(c.sum())
    if total <= 0.0:
        raise DataError("bin counts must not all be zero: a population needs at least one row")
    return np.maximum(c / total, floor)


def bin_terms(expected: npt.ArrayLike, actual: npt.ArrayLike) -> FloatArray:
    """Each bin's term ``(q - p) * ln(q / p)`` of the index (every term is at least 0)."""
    p, q = shares(expected), shares(actual)
    if p.shape != q.shape:
        raise DataError(f"the populations have {p.size} and {q.size} bins: they must match")
    terms: FloatArray = (q - p) * np.log(q / p)
    return terms


def population_stability(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """The stability index of ``actual`` bin counts against ``expected`` (baseline) ones: PSI
    for score bins, CSI for a feature's bins. Raises ``DataError`` for counts that are negative,
    of different lengths, or all zero."""
    return float(bin_terms(expected, actual).sum())


@dataclass(frozen=True)
class ScoreBaseline:
    """The training-time score bins and counts a new population is compared with.

    ``edges`` are the ascending inner cut points; bins are closed below like grade bands: bin 0
    is ``score < edges[0]``, bin ``i`` is ``edges[i-1] <= score < edges[i]``, the last bin is
    ``score >= edges[-1]``. ``labels`` name the bins (grades or score ranges).
    """

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.edges) + 1 or len(self.labels) != len(self.counts):
            raise DataError("a score baseline needs one count and one label per bin")
        if any(not a < b for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise DataError("score baseline edges must be strictly increasing")
        _counts(self.counts, "baseline counts")

    def bin_counts(self, scores: npt.ArrayLike) -> IntArray:
        """How many of ``scores`` fall in each bin."""
        s = np.asarray(scores, dtype=np.float64).ravel()
        if not np.all(np.isfinite(s)):
            raise DataError("scores must be finite numbers")
        index = np.searchsorted(np.asarray(self.edges, dtype=np.float64), s, side="right")
        return np.bincount(index, minlength=len(self.counts)).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, to store with the model."""
        return {"edges": list(self.edges), "counts": list(self.counts), "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreBaseline:
        """The baseline ``to_dict`` wrote; ``DataError`` when it is not one."""
        try:
            edges = tuple(float(e) for e in data["edges"])
            counts = tuple(int(c) for c in data["counts"])
            labels = tuple(str(label) for label in data["labels"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"not a score baseline: {exc}") from exc
        return cls(edges, counts, labels)


def decile_baseline(scores: npt.ArrayLike, bins: int = DECILES) -> ScoreBaseline:
    """Bins at the quantiles of the baseline ``scores`` (deciles by default), with its counts.

    Cut points that coincide (many scores clipped at the scorecard's bounds) are merged, so
    there may be fewer bins than asked; each holds about ``1 / bins`` of the baseline.
    """
    s = _scores(scores)
    if bins < 2:
        raise DataError(f"a score baseline needs at least 2 bins, got {bins}")
    cuts = np.quantile(s, np.arange(1, bins) / bins)
    edges = tuple(float(e) for e in np.unique(cuts) if e > s.min())
    bounds = ["-inf", *(f"{e:.1f}" for e in edges), "inf"]
    labels = tuple(f"[{lo}, {hi})" for lo, hi in itertools.pairwise(bounds))
    return _with_counts(edges, labels, s)


def grade_baseline(scores: npt.ArrayLike, scorecard: Scorecard) -> ScoreBaseline:
    """Bins at the scorecard's grade bands (worst grade first), with the baseline's counts."""
    s = _scores(scores)
    bands = list(reversed(scorecard.grades))  # worst first, so the lowest scores come first
    edges = tuple(low for _, low in bands[1:])
    labels = tuple(name for name, _ in bands)
    return _with_counts(edges, labels, s)


@dataclass(frozen=True)
class ScoreStability:
    """The score's PSI and, per bin, the two shares and the bin's term of the index."""

    psi: float
    status: str
    labels: tuple[str, ...]
    baseline_share: tuple[float, ...]
    new_share: tuple[float, ...]
    terms: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        bins = [
            {"bin": label, "baseline_share": p, "new_share": q, "term": t}
            for label, p, q, t in zip(
                self.labels, self.baseline_share, self.new_share, self.terms, strict=True
            )
        ]
        return {"score_psi": self.psi, "status": self.status, "bins": bins}


def score_stability(baseline: ScoreBaseline, scores: npt.ArrayLike) -> ScoreStability:
    """The PSI of ``scores`` against the baseline, with the figures per bin (raw shares, before
    the floor)."""
    actual = baseline.bin_counts(_scores(scores))
    expected = np.asarray(baseline.counts, dtype=np.int64)
    terms = bin_terms(expected, actual)
    psi = float(terms.sum())
    return ScoreStability(
        psi=psi,
        status=stability_status(psi),
        labels=baseline.labels,
        baseline_share=tuple(float(x) for x in expected / expected.sum()),
        new_share=tuple(float(x) for x in actual / actual.sum()),
        terms=tuple(float(x) for x in terms),
    )


@dataclass(frozen=True)
class FeatureStability:
    """One feature's CSI, as it leaves the party holding the column (the index only)."""

    party: str
    feature: str
    csi: float
    status: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "party": self.party,
            "feature": self.feature,
            "csi": self.csi,
            "status": self.status,
        }


def binned_counts(binning: Binning, values: npt.ArrayLike) -> IntArray:
    """Rows per bin of ``values`` under a fitted binning (the missing bin included)."""
    index = binning.transform(values)
    return np.bincount(index, minlength=binning.n_bins).astype(np.int64)


def feature_stability(
    party: str, feature: str, expected: npt.ArrayLike, actual: npt.ArrayLike
) -> FeatureStability:
    """The CSI of one feature from its training-time and current bin counts."""
    csi = population_stability(expected, actual)
    return FeatureStability(party, feature, csi, stability_status(csi))


@dataclass(frozen=True)
class StabilityReport:
    """The score's PSI and every feature's CSI: what ``monitor.json`` holds."""

    score: ScoreStability
    features: tuple[FeatureStability, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "score_psi": self.score.psi,
            "score_status": self.score.status,
            "score_bins": self.score.to_dict()["bins"],
            "csi": [f.to_dict() for f in self.features],
            "thresholds": {"stable_below": STABLE_BELOW, "watch_up_to": WATCH_UP_TO},
            "share_floor": SHARE_FLOOR,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        """A plain-text table: the score's bins, then one line per feature."""
        s = self.score
        lines = [f"score PSI {s.psi:.4f} ({s.status})", ""]
        width = max(len("bin"), *(len(label) for label in s.labels))
        lines.append(f"{'bin':<{width}}  {'baseline':>8}  {'new':>8}  {'term':>8}")
        for label, p, q, t in zip(s.labels, s.baseline_share, s.new_share, s.terms, strict=True):
            lines.append(f"{label:<{width}}  {p:>8.2%}  {q:>8.2%}  {t:>8.4f}")
        if self.features:
            party_w = max(len("party"), *(len(f.party) for f in self.features))
            feature_w = max(len("feature"), *(len(f.feature) for f in self.features))
            lines += ["", f"{'party':<{party_w}}  {'feature':<{feature_w}}  {'CSI':>8}  status"]
            for f in self.features:
                lines.append(
                    f"{f.party:<{party_w}}  {f.feature:<{feature_w}}  {f.csi:>8.4f}  {f.status}"
                )
        return "\n".join(lines) + "\n"


def _with_counts(edges: tuple[float, ...], labels: tuple[str, ...], s: FloatArray) -> ScoreBaseline:
    empty = ScoreBaseline(edges, (0,) * len(labels), labels)
    counts = tuple(int(c) for c in empty.bin_counts(s))
    return ScoreBaseline(edges, counts, labels)


def _scores(scores: npt.ArrayLike) -> FloatArray:
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise DataError("no scores to compare")
    if not np.all(np.isfinite(s)):
        raise DataError("scores must be finite numbers")
    return s


def _counts(counts: npt.ArrayLike, what: str) -> FloatArray:
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or c.size == 0:
        raise DataError(f"{what} must be a non-empty list")
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise DataError(f"{what} must be finite and at least 0")
    return c


__all__ = [
    "ACT",
    "DECILES",
    "SHARE_FLOOR",
    "STABLE",
    "STABLE_BELOW",
    "WATCH",
    "WATCH_UP_TO",
    "FeatureStability",
    "ScoreBaseline",
    "ScoreStability",
    "StabilityReport",
    "bin_terms",
    "binned_counts",
    "decile_baseline",
    "feature_stability",
    "grade_baseline",
    "population_stability",
    "score_stability",
    "shares",
    "stability_status",
]
