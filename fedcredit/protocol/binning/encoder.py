"""The encoder the parties train with: merged bins as one-hot or WOE design columns.

Partners encode their merged bins one-hot (one reference bin per column dropped). Sending WOE
values back would tell a partner the label statistics of its bins; one-hot weights are learned
by the model and never leave it. The lender encodes its own columns by WOE.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedcredit.errors import ConfigError, DataError
from fedcredit.model.binning import Binning
from fedcredit.model.scorecard import Scorecard
from fedcredit.model.woe import apply_woe
from fedcredit.protocol.binning.bins import bins_of


@dataclass(frozen=True)
class EncodedColumn:
    """A kept column: merged bins and how they become design columns."""

    name: str
    index: int
    binning: Binning
    categorical: bool
    mode: str  # "onehot" or "woe"
    woe: tuple[float, ...] = ()
    active: tuple[int, ...] = ()  # one-hot: bins with a design column (reference and empty: none)
    # One-hot: each active column's share of the training rows, subtracted so the columns are
    # centred. The model is the same (the intercept absorbs the shift); the party's Newton
    # steps then no longer fight the lender's intercept (docs/BINNING.md, "Encoding").
    centre: tuple[float, ...] = ()


def centred_indicators(
    levels: np.ndarray, active: Sequence[int], centre: Sequence[float]
) -> np.ndarray:
    """One indicator column per ``active`` level, minus its training share (``centre``; none
    for a model part saved before columns were centred)."""
    onehot = (levels[:, None] == np.asarray(active, dtype=np.int64)[None, :]).astype(np.float64)
    shift = np.asarray(centre if centre else [0.0] * len(active), dtype=np.float64)
    centred: np.ndarray = onehot - shift[None, :]
    return centred


class BinEncoder:
    """Raw columns -> one-hot or WOE design columns (``PartyColumns.set_encoder``)."""

    def __init__(self, columns: Sequence[EncodedColumn], n_raw: int) -> None:
        self.columns = list(columns)
        self.n_raw = n_raw
        self._weights: Callable[[], np.ndarray] | None = None
        self._has_intercept = False

    @property
    def feature_names(self) -> list[str]:
        names: list[str] = []
        for c in self.columns:
            if c.mode == "woe":
                names.append(f"{c.name}:woe")
            else:
                labels = c.binning.labels()
                names.extend(f"{c.name}={labels[k]}" for k in c.active)
        return names

    def transform(self, raw: np.ndarray) -> np.ndarray:
        data = np.asarray(raw, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self.n_raw:
            raise DataError(f"encoder expects {self.n_raw} raw columns, got shape {data.shape}")
        parts = []
        for c in self.columns:
            bins = bins_of(c.binning, data[:, c.index], c.categorical)
            if c.mode == "woe":
                parts.append(apply_woe(bins, np.asarray(c.woe))[:, None])
            else:
                parts.append(centred_indicators(bins, c.active, c.centre))
        return np.hstack(parts) if parts else np.zeros((len(data), 0))

    def bind_weights(self, source: Callable[[], np.ndarray], *, has_intercept: bool) -> None:
        """Let ``to_dict`` add the points table of the party's current weights."""
        self._weights, self._has_intercept = source, has_intercept

    def points(
        self, weights: np.ndarray, scorecard: Scorecard, intercept: float = 0.0
    ) -> dict[str, Any]:
        """Points per bin of every kept column (and the base points, with the intercept)."""
        logits: dict[str, list[float]] = {}
        at = 0
        for c in self.columns:
            if c.mode == "woe":
                logits[c.name] = [float(weights[at]) * w for w in c.woe]
                at += 1
            else:
                shares = c.centre or (0.0,) * len(c.active)
                column = weights[at : at + len(c.active)]
                shift = float(np.dot(column, shares))
                values = [-shift] * c.binning.n_bins
                for k, w in zip(c.active, column.tolist(), strict=True):
                    values[k] = float(w) - shift
                at += len(c.active)
                logits[c.name] = values
        table = scorecard.points_table(intercept, logits)
        rows = [
            {
                "column": c.name,
                "bin": k,
                "label": label,
                "points": round(float(table.points[c.name][k]), 4),
            }
            for c in self.columns
            for k, label in enumerate(c.binning.labels())
        ]
        return {"base": round(table.base, 4), "rows": rows}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "bins",
            "n_raw": self.n_raw,
            "columns": [
                {
                    "name": c.name,
                    "index": c.index,
                    "binning": c.binning.to_dict(),
                    "categorical": c.categorical,
                    "mode": c.mode,
                    "woe": list(c.woe),
                    "active": list(c.active),
                    "centre": list(c.centre),
                }
                for c in self.columns
            ],
        }
        if self._weights is not None:
            weights = np.asarray(self._weights(), dtype=np.float64)
            intercept = float(weights[-1]) if self._has_intercept else 0.0
            table = self.points(weights, Scorecard(), intercept)
            if not self._has_intercept:
                table.pop("base")
            out["points"] = table
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BinEncoder:
        """Rebuild from ``to_dict`` output (ConfigError when malformed)."""
        try:
            columns = [
                EncodedColumn(
                    str(c["name"]),
                    int(c["index"]),
                    Binning.from_dict(c["binning"]),
                    bool(c["categorical"]),
                    str(c["mode"]),
                    tuple(float(w) for w in c["woe"]),
                    tuple(int(k) for k in c["active"]),
                    tuple(float(v) for v in c.get("centre", ())),
                )
                for c in data["columns"]
            ]
            return cls(columns, int(data["n_raw"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed bin encoder in the model part: {exc!r}") from exc
