"""Fine bins at each party, fitted on its own training rows without labels (never sent).

Every party bins its own columns (``fedcredit.model.binning``); no value and no bin edge leaves
it. ``BinnedParty`` is what binning reads of a party: its aligned columns
(``fedcredit.protocol.columns.PartyColumns``) and the weights of the model it trains on the
binned columns (the points table of ``BinEncoder`` needs them).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from fedcredit.crypto import PublicKey
from fedcredit.errors import ConfigError, ProtocolError
from fedcredit.model.binning import Binning, fit_bins
from fedcredit.protocol.categories import MISSING_CODE, category_label, label_code
from fedcredit.protocol.columns import ColumnEncoder
from fedcredit.protocol.split import Split

IntArray = npt.NDArray[np.int64]


class BinnedParty(Protocol):
    """A party's aligned columns as binning uses them (e.g. the logistic ``FeatureParty``)."""

    @property
    def name(self) -> str: ...

    @property
    def split(self) -> Split | None: ...

    @property
    def raw(self) -> np.ndarray: ...

    @property
    def aligned_rows(self) -> np.ndarray: ...

    @property
    def feature_names(self) -> list[str]: ...

    @property
    def categorical(self) -> tuple[str, ...]: ...

    @property
    def settings(self) -> Any: ...

    @property
    def public_key(self) -> PublicKey | None: ...

    @property
    def weights(self) -> np.ndarray: ...

    def set_encoder(self, encoder: ColumnEncoder | None) -> None: ...


@dataclass(frozen=True)
class FineColumn:
    """One column's fine bins at its own party (never sent anywhere)."""

    name: str
    index: int
    binning: Binning
    categorical: bool

    def bins_of(self, raw: np.ndarray) -> IntArray:
        return bins_of(self.binning, raw[:, self.index], self.categorical)


def bins_of(binning: Binning, column: np.ndarray, categorical: bool) -> IntArray:
    if not categorical:
        return binning.transform(column)
    lookup = {label_code(c): k for k, group in enumerate(binning.groups) for c in group}
    out = [
        binning.missing_bin if v == MISSING_CODE else lookup.get(float(v), binning.other_bin)
        for v in column.tolist()
    ]
    return np.asarray(out, dtype=np.int64)


def train_raw(party: BinnedParty) -> np.ndarray:
    """The party's raw training rows in the shared aligned order."""
    return np.asarray(party.raw[party.aligned_rows[train_positions(party)]], dtype=np.float64)


def train_positions(party: BinnedParty) -> np.ndarray:
    if party.split is None:
        raise ProtocolError(f"party {party.name!r} bins only after alignment")
    return party.split.train


def fit_columns(
    party: BinnedParty, settings: Any, categorical: Collection[str]
) -> list[FineColumn]:
    """Fit fine bins of every raw column of ``party`` on its training rows, without labels."""
    raw = train_raw(party)
    unknown = sorted(set(categorical) - set(party.feature_names))
    if unknown:
        raise ConfigError(
            f"party {party.name!r}: categorical columns {unknown} are not in its data"
        )
    columns = []
    for index, name in enumerate(party.feature_names):
        is_cat = name in categorical
        values: npt.ArrayLike = (
            np.array(
                [category_label(v) if v != MISSING_CODE else "" for v in raw[:, index]],
                dtype=object,
            )
            if is_cat
            else raw[:, index]
        )
        method = "categorical" if is_cat else str(settings.method)
        binning = fit_bins(values, method, int(settings.bins), float(settings.min_bin_share))
        columns.append(FineColumn(name, index, binning, is_cat))
    return columns


def bin_matrix(raw: np.ndarray, columns: Sequence[FineColumn]) -> IntArray:
    """Fine bin index of every row (rows) and column (columns)."""
    return np.column_stack([c.bins_of(raw) for c in columns]).astype(np.int64)
