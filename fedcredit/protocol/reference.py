"""A party's stability reference: how its own raw columns were spread over its training rows.

``fedcredit monitor`` asks each party for the characteristic stability index (CSI) of each of
its columns on a new population. The party computes it against this reference, which it stores
inside its own model part at training (``SaveModel``): per raw column, bins fitted on the
column's training rows (deciles for a numeric column, the frequent categories for a categorical
one, and always a missing bin) and how many training rows fell in each. Edges, categories and
counts never leave the party: only the index of each column does (``fedcredit.node.stability``).

Family-neutral: it reads only a party's aligned columns (``PartyColumns``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fedcredit.errors import ConfigError
from fedcredit.model.binning import Binning, fit_bins
from fedcredit.protocol.categories import MISSING_CODE
from fedcredit.protocol.columns import PartyColumns

REFERENCE_BINS: Final = 10
"""Bins per numeric column: deciles of its training rows."""
REFERENCE_MIN_SHARE: Final = 0.05
"""A numeric bin holding less than this share of the training rows joins its neighbour."""

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ColumnReference:
    """One raw column's training-time bins and the training rows in each (missing bin last)."""

    feature: str
    binning: Binning
    counts: tuple[int, ...]
    categorical: bool = False

    def __post_init__(self) -> None:
        if len(self.counts) != self.binning.n_bins or any(c < 0 for c in self.counts):
            raise ConfigError(
                f"stability reference of {self.feature!r}: one count of at least 0 per bin"
            )

    def bin_counts(self, values: npt.ArrayLike) -> IntArray:
        """Rows per bin of ``values`` (this column's raw values of a new population)."""
        index = self.binning.transform(_prepared(values, self.categorical))
        return np.bincount(index, minlength=self.binning.n_bins).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "categorical": self.categorical,
            "binning": self.binning.to_dict(),
            "counts": list(self.counts),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnReference:
        try:
            return cls(
                str(data["feature"]),
                Binning.from_dict(dict(data["binning"])),
                tuple(int(c) for c in data["counts"]),
                bool(data.get("categorical", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed stability reference: {exc!r}") from exc


@dataclass(frozen=True)
class StabilityReference:
    """Every raw column's reference, in the party's column order."""

    columns: tuple[ColumnReference, ...]
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StabilityReference:
        try:
            columns = tuple(ColumnReference.from_dict(c) for c in data["columns"])
            return cls(columns, int(data["rows"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed stability reference: {exc!r}") from exc


def column_reference(party: PartyColumns) -> StabilityReference:
    """The reference of ``party``'s raw columns on its training rows (after alignment)."""
    if party.split is None:
        raise ConfigError(f"party {party.name!r}: a stability reference needs aligned rows")
    rows = party.aligned_rows[party.split.train]
    raw = party.raw[rows]
    names = party.column_names
    columns = []
    for j, name in enumerate(names):
        categorical = name in party.categorical
        values = _prepared(raw[:, j], categorical)
        binning = fit_bins(
            values,
            method="categorical" if categorical else "quantile",
            n_bins=REFERENCE_BINS,
            min_share=REFERENCE_MIN_SHARE,
        )
        counts = np.bincount(binning.transform(values), minlength=binning.n_bins)
        columns.append(ColumnReference(name, binning, tuple(int(c) for c in counts), categorical))
    return StabilityReference(tuple(columns), len(rows))


def _prepared(values: npt.ArrayLike, categorical: bool) -> npt.NDArray[Any]:
    """A numeric column as floats; a categorical one's codes as text, missing as NaN."""
    numbers = np.asarray(values, dtype=np.float64).ravel()
    if not categorical:
        return numbers
    text: Sequence[object] = [
        float("nan") if v == MISSING_CODE or np.isnan(v) else repr(float(v))
        for v in numbers.tolist()
    ]
    return np.asarray(text, dtype=object)


__all__ = [
    "REFERENCE_BINS",
    "ColumnReference",
    "StabilityReference",
    "column_reference",
]
