"""Binning of one column for the scorecard pipeline.

A ``Binning`` maps raw values to bin indices ``0..n_bins-1``:

- numeric columns: ``edges`` are the inner cut points, bins are right-closed:
  bin 0 is ``(-inf, e0]``, bin ``i`` is ``(e[i-1], e[i]]``, the last regular bin is
  ``(e[-1], inf)``;
- categorical (string) columns: ``groups`` lists the categories of each regular bin;
  rare categories (and any category not seen when fitting) go to ``other_bin``;
- missing values (NaN, None, "") always go to the last bin, ``missing_bin``, even when
  there were none at fit time, so a transform never fails on a new missing value.

Fitting edges needs only the party's own column. Merging bins by label (monotonic
event rate, chi-square) works from per-bin counts only: the lender learns the event
counts of a partner's fine bins federatedly, computes the grouping with
``merge_monotonic`` or ``merge_chi2`` and sends back only the groups, which the partner
applies with ``Binning.regroup``. Groups never include the missing bin.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedcredit.errors import ConfigError, DataError
from fedcredit.model.woe import woe_iv

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Groups = list[list[int]]

METHODS = ("quantile", "equal_width", "categorical")
CHI2_95 = 3.841458820694124
"""Chi-square with one degree of freedom at 95 %: the usual ChiMerge threshold."""


@dataclass(frozen=True)
class Binning:
    """The fitted bins of one column (see the module docstring for the layout)."""

    kind: str
    edges: tuple[float, ...] = ()
    groups: tuple[tuple[str, ...], ...] = ()
    other_bin: int = -1

    def __post_init__(self) -> None:
        if self.kind == "numeric":
            if any(not a < b for a, b in zip(self.edges, self.edges[1:], strict=False)):
                raise ConfigError("bin edges must be strictly increasing")
            if any(not math.isfinite(e) for e in self.edges):
                raise ConfigError("bin edges must be finite")
        elif self.kind == "categorical":
            if not 0 <= self.other_bin < len(self.groups):
                raise ConfigError("a categorical binning needs an 'other' bin among its groups")
            seen = [c for group in self.groups for c in group]
            if len(seen) != len(set(seen)):
                raise ConfigError("a category appears in two bins")
        else:
            raise ConfigError(f"binning kind must be 'numeric' or 'categorical', not {self.kind!r}")

    @property
    def n_regular(self) -> int:
        """Bins for present values (everything but the missing bin)."""
        return len(self.edges) + 1 if self.kind == "numeric" else len(self.groups)

    @property
    def n_bins(self) -> int:
        """All bins, the missing bin included."""
        return self.n_regular + 1

    @property
    def missing_bin(self) -> int:
        """Index of the bin for missing values (always the last one)."""
        return self.n_regular

    def transform(self, values: npt.ArrayLike) -> IntArray:
        """Bin index of every value, as int64."""
        if self.kind == "numeric":
            numbers = _as_float(values)
            index = np.searchsorted(np.asarray(self.edges, dtype=np.float64), numbers, side="left")
            return np.where(np.isnan(numbers), self.missing_bin, index).astype(np.int64)
        lookup = {c: k for k, group in enumerate(self.groups) for c in group}
        raw = np.asarray(values, dtype=object).ravel()
        out = [
            self.missing_bin if _is_missing(v) else lookup.get(str(v), self.other_bin) for v in raw
        ]
        return np.asarray(out, dtype=np.int64)

    def labels(self) -> list[str]:
        """Readable names of the bins, for reports and points tables."""
        if self.kind == "numeric":
            bounds = ["-inf", *(f"{e:g}" for e in self.edges), "inf"]
            regular = [
                f"({lo}, {hi}]" if hi != "inf" else f"({lo}, {hi})"
                for lo, hi in itertools.pairwise(bounds)
            ]
        else:
            regular = [
                "|".join([*group, "other"] if k == self.other_bin else group)
                for k, group in enumerate(self.groups)
            ]
        return [*regular, "missing"]

    def regroup(self, groups: Sequence[Sequence[int]]) -> Binning:
        """Merge regular bins: ``groups`` partitions ``0..n_regular-1``; new bin k is group k.

        For a numeric column every group must be a run of adjacent bins, in order.
        """
        checked = _check_partition(groups, self.n_regular)
        if self.kind == "numeric":
            flat = [k for group in checked for k in group]
            if flat != list(range(self.n_regular)):
                raise ConfigError("numeric bins can only be merged in runs of adjacent bins")
            keep = [group[-1] for group in checked[:-1]]
            return Binning("numeric", edges=tuple(self.edges[k] for k in keep))
        new_groups = tuple(tuple(c for k in group for c in self.groups[k]) for group in checked)
        other = next(i for i, group in enumerate(checked) if self.other_bin in group)
        return Binning("categorical", groups=new_groups, other_bin=other)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description; ``Binning.from_dict`` reads it back."""
        if self.kind == "numeric":
            return {"kind": "numeric", "edges": list(self.edges)}
        return {
            "kind": "categorical",
            "groups": [list(group) for group in self.groups],
            "other_bin": self.other_bin,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Binning:
        """Rebuild a binning from ``to_dict`` output; ``ConfigError`` when it is malformed."""
        try:
            if data["kind"] == "numeric":
                return cls("numeric", edges=tuple(float(e) for e in data["edges"]))
            return cls(
                str(data["kind"]),
                groups=tuple(tuple(str(c) for c in group) for group in data["groups"]),
                other_bin=int(data["other_bin"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed binning description: {exc!r}") from exc


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    return isinstance(value, str) and value.strip() == ""


def _as_float(values: npt.ArrayLike) -> FloatArray:
    try:
        numbers = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise DataError(f"numeric binning got values that are not numbers: {exc}") from exc
    if np.any(np.isinf(numbers)):
        raise DataError("numeric binning got an infinite value")
    return numbers


def _check_partition(groups: Sequence[Sequence[int]], n: int) -> Groups:
    checked = [[int(k) for k in group] for group in groups]
    flat = sorted(k for group in checked for k in group)
    if flat != list(range(n)) or any(not group for group in checked):
        raise ConfigError(f"groups must split bins 0..{n - 1} into non-empty parts, each once")
    return checked


def fit_bins(
    values: npt.ArrayLike, method: str = "quantile", n_bins: int = 10, min_share: float = 0.05
) -> Binning:
    """Fit the bins of one column without labels.

    ``method`` is ``"quantile"``, ``"equal_width"`` or ``"categorical"``; string values
    are always binned as categories. Numeric bins holding less than ``min_share`` of the
    present values are merged into their smaller neighbour. Categories below
    ``min_share``, and all but the ``n_bins - 1`` most frequent, go to ``"other"``. The missing
    and ``"other"`` bins may be small (they have no neighbour to join); a one-hot encoder gives
    them no design column then (``fedcredit.protocol.design_floor``, security review F3).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown binning method {method!r}; choose one of {METHODS}")
    if n_bins < 1:
        raise ConfigError(f"n_bins must be >= 1, got {n_bins}")
    if not 0.0 <= min_share < 1.0:
        raise ConfigError(f"min_share must be in [0, 1), got {min_share}")
    array = np.asarray(values)
    if method == "categorical" or array.dtype.kind in "OUS":
        return _fit_categorical(array, n_bins, min_share)
    numbers = _as_float(array)
    present = numbers[~np.isnan(numbers)]
    if present.size == 0:
        return Binning("numeric")
    if method == "quantile":
        # Edges are observed values (the inverted CDF), so with right-closed bins each
        # quantile bin holds its share of rows and no bin falls between two values.
        levels = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
        cuts = np.quantile(present, levels, method="inverted_cdf")
    else:
        cuts = np.linspace(present.min(), present.max(), n_bins + 1)[1:-1]
    edges = np.unique(cuts)
    edges = edges[edges < present.max()]
    binning = Binning("numeric", edges=tuple(float(e) for e in edges))
    counts = np.bincount(binning.transform(present), minlength=binning.n_bins)[:-1]
    return binning.regroup(merge_small(counts, min_share))


def _fit_categorical(array: npt.NDArray[Any], n_bins: int, min_share: float) -> Binning:
    present = [str(v) for v in array.ravel().tolist() if not _is_missing(v)]
    counts = Counter(present)
    total = max(len(present), 1)
    frequent = [c for c, k in counts.items() if k / total >= min_share]
    frequent.sort(key=lambda c: (-counts[c], c))
    kept = sorted(frequent[: max(n_bins - 1, 0)])
    groups = (*tuple((c,) for c in kept), ())
    return Binning("categorical", groups=groups, other_bin=len(kept))


def bin_counts(
    bin_index: npt.ArrayLike, y: npt.ArrayLike, n_bins: int
) -> tuple[IntArray, IntArray]:
    """Rows and events (label 1) per bin, the only figures label-aware merging needs."""
    index = np.asarray(bin_index, dtype=np.int64)
    labels = np.asarray(y, dtype=np.int64)
    if index.shape != labels.shape:
        raise DataError("bin indices and labels differ in length")
    if index.size and (index.min() < 0 or index.max() >= n_bins):
        raise DataError(f"bin indices must be in 0..{n_bins - 1}")
    counts = np.bincount(index, minlength=n_bins).astype(np.int64)
    events = np.bincount(index, weights=labels, minlength=n_bins).astype(np.int64)
    return counts, events


def _check_counts(
    counts: npt.ArrayLike, events: npt.ArrayLike | None = None
) -> tuple[IntArray, IntArray]:
    c = np.asarray(counts, dtype=np.int64)
    e = np.zeros_like(c) if events is None else np.asarray(events, dtype=np.int64)
    if c.ndim != 1 or c.shape != e.shape or c.size == 0:
        raise DataError("bin counts and events must be 1-D, non-empty and of the same length")
    if np.any(c < 0) or np.any(e < 0) or np.any(e > c):
        raise DataError("bin counts must satisfy 0 <= events <= rows in every bin")
    return c, e


def group_counts(values: npt.ArrayLike, groups: Sequence[Sequence[int]]) -> IntArray:
    """Sum per-bin figures (rows or events) over each group."""
    array = np.asarray(values, dtype=np.int64)
    return np.asarray([int(array[list(group)].sum()) for group in groups], dtype=np.int64)


def compose_groups(first: Sequence[Sequence[int]], second: Sequence[Sequence[int]]) -> Groups:
    """Fine-bin groups after merging by ``first``, then by ``second`` (over first's groups)."""
    return [[k for g in group for k in first[g]] for group in second]


def merge_small(counts: npt.ArrayLike, min_share: float) -> Groups:
    """Merge adjacent bins until each holds at least ``min_share`` of all rows.

    The smallest bin is merged first, into its smaller neighbour (the left one on a tie).
    Empty bins are always merged, whatever ``min_share``.
    """
    c, _ = _check_counts(counts)
    groups: Groups = [[k] for k in range(c.size)]
    sizes = [int(v) for v in c]
    total = sum(sizes)
    while len(groups) > 1 and total > 0 and (min(sizes) == 0 or min(sizes) / total < min_share):
        i = int(np.argmin(sizes))
        if i == 0:
            j = 1
        elif i == len(groups) - 1:
            j = i - 1
        else:
            j = i - 1 if sizes[i - 1] <= sizes[i + 1] else i + 1
        lo, hi = min(i, j), max(i, j)
        groups[lo : hi + 1] = [groups[lo] + groups[hi]]
        sizes[lo : hi + 1] = [sizes[lo] + sizes[hi]]
    return groups


def _pava(counts: IntArray, events: IntArray, increasing: bool) -> Groups:
    """Pool adjacent violators: merge runs until event rates strictly rise (or fall)."""
    blocks: list[list[int]] = []  # [rows, events, first bin, last bin]
    pending: list[int] = []
    for k in range(counts.size):
        if counts[k] == 0:
            # An empty bin has no rate; it joins its left neighbour (or the next bin).
            if blocks:
                blocks[-1][3] = k
            else:
                pending.append(k)
            continue
        blocks.append([int(counts[k]), int(events[k]), pending[0] if pending else k, k])
        pending = []
        while len(blocks) > 1:
            (n1, e1, _, _), (n2, e2, _, _) = blocks[-2], blocks[-1]
            # Compare rates e1/n1 and e2/n2 exactly in integers.
            ordered = e1 * n2 < e2 * n1 if increasing else e1 * n2 > e2 * n1
            if ordered:
                break
            last = blocks.pop()
            blocks[-1] = [n1 + last[0], e1 + last[1], blocks[-1][2], last[3]]
    if not blocks:
        return [list(range(counts.size))]
    if pending:
        blocks[-1][3] = pending[-1]
    return [list(range(first, last + 1)) for _, _, first, last in blocks]


def merge_monotonic(
    bin_counts: npt.ArrayLike, bin_events: npt.ArrayLike, direction: str = "auto"
) -> Groups:
    """Groups of adjacent bins whose event rates are strictly monotonic.

    Works from per-bin row and event counts alone. ``direction`` is ``"increasing"``,
    ``"decreasing"`` or ``"auto"`` (the direction whose merged bins have the larger
    information value; increasing on a tie). Empty bins join their left neighbour.
    """
    counts, events = _check_counts(bin_counts, bin_events)
    if direction not in ("auto", "increasing", "decreasing"):
        raise ConfigError(f"direction must be auto, increasing or decreasing, not {direction!r}")
    if direction != "auto":
        return _pava(counts, events, direction == "increasing")
    up = _pava(counts, events, True)
    down = _pava(counts, events, False)
    return up if _grouped_iv(counts, events, up) >= _grouped_iv(counts, events, down) else down


def _grouped_iv(counts: IntArray, events: IntArray, groups: Groups) -> float:
    n, e = group_counts(counts, groups), group_counts(events, groups)
    if e.sum() == 0 or e.sum() == n.sum():
        return 0.0
    return woe_iv(n, e)[1]


def _chi2(n1: int, e1: int, n2: int, e2: int) -> float:
    """Chi-square of the 2x2 table (bin x label) of two adjacent bins."""
    total, events = n1 + n2, e1 + e2
    statistic = 0.0
    for rows, ev in ((n1, e1), (n2, e2)):
        for observed, column_total in ((ev, events), (rows - ev, total - events)):
            expected = rows * column_total / total if total else 0.0
            if expected > 0:
                statistic += (observed - expected) ** 2 / expected
    return statistic


def merge_chi2(
    bin_counts: npt.ArrayLike,
    bin_events: npt.ArrayLike,
    max_bins: int = 10,
    threshold: float = CHI2_95,
) -> Groups:
    """ChiMerge: merge the adjacent pair with the smallest chi-square until every pair
    differs significantly (chi-square >= ``threshold``) and at most ``max_bins`` remain."""
    counts, events = _check_counts(bin_counts, bin_events)
    if max_bins < 1:
        raise ConfigError(f"max_bins must be >= 1, got {max_bins}")
    groups: Groups = [[k] for k in range(counts.size)]
    n = [int(v) for v in counts]
    e = [int(v) for v in events]
    while len(groups) > 1:
        stats = [_chi2(n[i], e[i], n[i + 1], e[i + 1]) for i in range(len(groups) - 1)]
        i = int(np.argmin(stats))
        if len(groups) <= max_bins and stats[i] >= threshold:
            break
        groups[i : i + 2] = [groups[i] + groups[i + 1]]
        n[i : i + 2] = [n[i] + n[i + 1]]
        e[i : i + 2] = [e[i] + e[i + 1]]
    return groups
