"""Plain logistic regression over text columns: numbers standardized, categories one-hot.

Without a ``[binning]`` table a party's design matrix is its standardized numeric columns. A
categorical column (a text column found by the loader, or one listed in the party's
``categorical`` key) holds category codes, not quantities, so its party one-hot encodes it
itself right after alignment, from its own **training rows** only (no label is needed; the
validation and test rows never shape the encoding):

- a category holding at least ``MIN_LEVEL_SHARE`` (5%) of the training rows is a level of its
  own; the rarer ones share one level, ``(other)``, which also takes a category first seen
  after training;
- a missing cell is a category like any other: level ``(missing)`` when at least 5% of the
  training rows are missing, else part of ``(other)``;
- the most frequent level is the reference and gets no column (the lender's intercept carries
  it), so a column with k levels becomes k - 1 indicator columns named ``column=level``. When
  the training rows had no rare category (so no ``(other)`` level), a category first seen
  later scores like the reference;
- a level (``(other)`` included) with too few rows in all or in one mini-batch of the job gets
  no column (``fedcredit.protocol.design_floor``: one row alone in a column of a batch would
  give its party that row's residual, so its label): a category joins ``(other)``, a too small
  ``(other)`` scores like the reference.

Numeric columns are standardized with the training mean and standard deviation, exactly as the
plain path does without an encoder: with an encoder set, ``PartyColumns._design`` only clips its
output to ±8 and quantizes it. The encoder is kept in the party's model part (``to_dict``, kind
``"onehot"``) and restored for scoring by ``encoder_from_dict``, which also restores binning's
``"bins"`` encoders. Category names stay with their party: they appear in its model part and
feature names, never in a message (a category longer than 6 UTF-8 bytes is named by a hash, see
``fedcredit.protocol.categories.category_code``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedcredit.errors import ConfigError, DataError, ProtocolError
from fedcredit.protocol.binning.encoder import BinEncoder, centred_indicators
from fedcredit.protocol.categories import category_label, label_code
from fedcredit.protocol.columns import ColumnEncoder, PartyColumns
from fedcredit.protocol.design_floor import columned_levels

IntArray = npt.NDArray[np.int64]

#: A category needs this share of the training rows for a level (and a design column) of its own.
MIN_LEVEL_SHARE = 0.05
OTHER = "(other)"
MISSING = "(missing)"


@dataclass(frozen=True)
class NumericColumn:
    """A numeric raw column, standardized with its training mean and standard deviation."""

    name: str
    index: int
    mean: float
    std: float


@dataclass(frozen=True)
class CategoryColumn:
    """A categorical raw column: its levels, and which one is the reference (no column).

    ``levels`` are the category labels with a level of their own (``""``: missing), most
    frequent first; with ``has_other`` the rare categories share one more level, the last.
    """

    name: str
    index: int
    levels: tuple[str, ...]
    has_other: bool
    reference: int
    # Each active level's share of the training rows: the indicators are centred (the model is
    # the same, the intercept absorbs it; a partner's Newton steps then converge faster).
    centre: tuple[float, ...] = ()

    @property
    def n_levels(self) -> int:
        return len(self.levels) + int(self.has_other)

    @property
    def active(self) -> tuple[int, ...]:
        """The levels that get a design column: all but the reference."""
        return tuple(k for k in range(self.n_levels) if k != self.reference)

    def level_names(self) -> list[str]:
        names = [label if label else MISSING for label in self.levels]
        return [*names, OTHER] if self.has_other else names

    def levels_of(self, codes: np.ndarray) -> IntArray:
        """The level of every row's category code (unknown: ``(other)``, else the reference)."""
        lookup = {label_code(label): k for k, label in enumerate(self.levels)}
        fallback = len(self.levels) if self.has_other else self.reference
        unique, inverse = np.unique(np.asarray(codes, dtype=np.float64), return_inverse=True)
        mapped = np.array([lookup.get(v, fallback) for v in unique.tolist()], dtype=np.int64)
        levels: IntArray = mapped[np.reshape(inverse, -1)]
        return levels


def fit_levels(
    name: str,
    index: int,
    codes: np.ndarray,
    min_share: float,
    *,
    exclude: Collection[str] = (),
    fold_other: bool = False,
) -> CategoryColumn:
    """Levels of one categorical column from its training rows' category codes.

    Categories in ``exclude`` get no level of their own; with ``fold_other`` the rare ones
    score like the reference instead of sharing ``(other)`` (``fit_floored_levels``).
    """
    unique, counts = np.unique(np.asarray(codes, dtype=np.float64), return_counts=True)
    rows = int(counts.sum())
    labels = [category_label(code) for code in unique.tolist()]
    # Most frequent first, ties by label, so every run of the same rows gives the same encoder.
    order = sorted(range(len(unique)), key=lambda k: (-int(counts[k]), labels[k]))
    kept = [k for k in order if rows and counts[k] >= min_share * rows and labels[k] not in exclude]
    other_rows = rows - sum(int(counts[k]) for k in kept)
    has_other = (other_rows > 0 and not fold_other) or not kept
    sizes = [int(counts[k]) for k in kept] + ([other_rows] if has_other else [])
    reference = int(np.argmax(sizes))  # the first of equals: a kept category before (other)
    centre = tuple(sizes[k] / max(1, rows) for k in range(len(sizes)) if k != reference)
    return CategoryColumn(name, index, tuple(labels[k] for k in kept), has_other, reference, centre)


def fit_floored_levels(
    name: str, index: int, codes: np.ndarray, min_share: float, settings: Any
) -> CategoryColumn:
    """``fit_levels``, then every level too small for a design column, in all or in one
    mini-batch of the job (``fedcredit.protocol.design_floor``), joins ``(other)``, and a
    too small ``(other)`` scores like the reference. ``codes``: the training rows in order."""
    exclude: set[str] = set()
    fold_other = False
    while True:
        column = fit_levels(name, index, codes, min_share, exclude=exclude, fold_other=fold_other)
        active = columned_levels(
            column.levels_of(codes),
            column.n_levels,
            column.reference,
            min_share=min_share,
            settings=settings,
        )
        sparse = [k for k in column.active if k not in active]
        if not sparse:
            return column
        if not active:  # what would have no column is itself too sparse: no column at all
            return fit_levels(name, index, codes, min_share, exclude=set(column.levels))
        exclude.update(column.levels[k] for k in sparse if k < len(column.levels))
        fold_other = fold_other or any(k >= len(column.levels) for k in sparse)


class OneHotEncoder:
    """Raw columns -> standardized numbers and one-hot categories (``PartyColumns.set_encoder``).

    Every raw column of the party is one entry of ``columns``, in raw order.
    """

    kind = "onehot"

    def __init__(self, columns: Sequence[NumericColumn | CategoryColumn], min_share: float) -> None:
        self.columns = list(columns)
        self.min_share = min_share
        if [c.index for c in self.columns] != list(range(len(self.columns))):
            raise ConfigError("one-hot encoder: its columns must be the raw columns in order")

    @property
    def n_raw(self) -> int:
        return len(self.columns)

    @property
    def raw_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def categorical(self) -> list[str]:
        return [c.name for c in self.columns if isinstance(c, CategoryColumn)]

    @property
    def feature_names(self) -> list[str]:
        names: list[str] = []
        for c in self.columns:
            if isinstance(c, NumericColumn):
                names.append(c.name)
            else:
                levels = c.level_names()
                names.extend(f"{c.name}={levels[k]}" for k in c.active)
        return names

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Design columns of ``raw`` rows (not clipped: ``PartyColumns._design`` clips)."""
        data = np.asarray(raw, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self.n_raw:
            raise DataError(f"encoder expects {self.n_raw} raw columns, got shape {data.shape}")
        parts = []
        for c in self.columns:
            column = data[:, c.index]
            if isinstance(c, NumericColumn):
                parts.append(((column - c.mean) / c.std)[:, None])
            else:
                parts.append(centred_indicators(c.levels_of(column), c.active, c.centre))
        return np.hstack(parts) if parts else np.zeros((len(data), 0))

    def to_dict(self) -> dict[str, Any]:
        columns: list[dict[str, Any]] = []
        for c in self.columns:
            if isinstance(c, NumericColumn):
                columns.append({"name": c.name, "type": "numeric", "mean": c.mean, "std": c.std})
            else:
                columns.append(
                    {
                        "name": c.name,
                        "type": "categorical",
                        "levels": list(c.levels),
                        "other": c.has_other,
                        "reference": c.reference,
                        "centre": list(c.centre),
                    }
                )
        return {"kind": self.kind, "min_share": self.min_share, "columns": columns}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OneHotEncoder:
        """Rebuild from ``to_dict`` output (ConfigError when malformed)."""
        try:
            columns: list[NumericColumn | CategoryColumn] = []
            for index, c in enumerate(data["columns"]):
                if c["type"] == "numeric":
                    mean, std = float(c["mean"]), float(c["std"])
                    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
                        raise ValueError(f"mean {mean} / std {std} of {c['name']!r}")
                    columns.append(NumericColumn(str(c["name"]), index, mean, std))
                    continue
                if c["type"] != "categorical":
                    raise ValueError(f"column type {c['type']!r}")
                levels = tuple(str(label) for label in c["levels"])
                column = CategoryColumn(
                    str(c["name"]),
                    index,
                    levels,
                    bool(c["other"]),
                    int(c["reference"]),
                    tuple(float(v) for v in c.get("centre", ())),
                )
                if not 0 <= column.reference < column.n_levels:
                    raise ValueError(f"reference level {column.reference} of {column.name!r}")
                if column.centre and len(column.centre) != len(column.active):
                    raise ValueError(f"centre of {column.name!r} does not fit its levels")
                columns.append(column)
            return cls(columns, float(data["min_share"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed one-hot encoder in the model part: {exc!r}") from exc


def fit_onehot(party: PartyColumns, min_share: float = MIN_LEVEL_SHARE) -> OneHotEncoder:
    """The encoder of ``party``'s raw columns, fitted on its training rows (after alignment).

    The columns named in ``party.categorical`` are one-hot encoded, the others standardized.
    """
    if party.split is None:
        raise ProtocolError(f"party {party.name!r} encodes its columns only after alignment")
    unknown = sorted(set(party.categorical) - set(party.feature_names))
    if unknown:
        raise ConfigError(
            f"party {party.name!r}: categorical columns {unknown} are not in its data"
        )
    train = np.asarray(party.raw[party.aligned_rows[party.split.train]], dtype=np.float64)
    columns: list[NumericColumn | CategoryColumn] = []
    for index, name in enumerate(party.feature_names):
        values = train[:, index]
        if name in party.categorical:
            columns.append(fit_floored_levels(name, index, values, min_share, party.settings))
        else:
            std = float(values.std()) if len(values) else 1.0
            mean = float(values.mean()) if len(values) else 0.0
            columns.append(NumericColumn(name, index, mean, std if std > 0 else 1.0))
    return OneHotEncoder(columns, min_share)


def encoder_from_dict(data: Mapping[str, Any], party: PartyColumns) -> ColumnEncoder:
    """The encoder a model part stored, for ``party`` (its raw columns, before any encoder).

    Dispatches on ``data["kind"]``: ``"bins"`` (binning's ``BinEncoder``) or ``"onehot"``. A
    one-hot encoder must find the raw columns it was fitted on, in the same order, with the
    same categorical ones; otherwise the data changed since training (ConfigError).
    """
    kind = data.get("kind") if isinstance(data, Mapping) else None
    if kind == "bins":
        return BinEncoder.from_dict(data)
    if kind != OneHotEncoder.kind:
        raise ConfigError(
            f"party {party.name!r}: unknown encoder kind {kind!r} in the model part "
            "(this release knows 'bins' and 'onehot')"
        )
    encoder = OneHotEncoder.from_dict(data)
    if encoder.raw_names != party.feature_names:
        raise ConfigError(
            f"party {party.name!r}: the model was trained on the columns {encoder.raw_names}, "
            f"the data has {party.feature_names}"
        )
    if sorted(encoder.categorical) != sorted(party.categorical):
        raise ConfigError(
            f"party {party.name!r}: the model takes {sorted(encoder.categorical)} as categories, "
            f"the data's categorical columns are {sorted(party.categorical)}"
        )
    return encoder
