"""A party's aligned columns, binned for trees: quantile edges fitted locally, never sent.

Both roles extend this. Edges are fitted on the party's own training rows with ``bins`` bins,
merged so that every bin holds at least ``min_rows`` training rows (the privacy floor per bin);
a column whose missing values are fewer than the floor folds them into bin 0, so no cell of
missing rows below the floor exists either.

A categorical column (``categorical``: a text column of the file or one its ``categorical`` key
names) is binned by a category map instead (``fedcredit.model.tree_categories``): one bin per
category of the training rows, the rare ones and any category unseen in training in one "other"
bin, the map fitted on the party's own training rows and kept like edges (``categories``). Its
folded missing cells go to "other". The lender splits its own categorical columns by category
groups (``group_columns``); a partner's are cut in its own bin order (most frequent first).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedcredit.errors import ProtocolError
from fedcredit.model.tree_categories import bin_categories, fit_categories, is_missing
from fedcredit.model.trees import IntArray, bin_matrix, fit_edges
from fedcredit.protocol.columns import PartyColumns


class TreeColumns(PartyColumns):
    """A party's binned columns: ``bins`` (aligned rows x columns), ``n_regular`` per column."""

    def __init__(
        self,
        name: str,
        ids: list[str],
        features: np.ndarray,
        feature_names: list[str],
        settings: Any,
    ) -> None:
        super().__init__(name, ids, features, feature_names, settings)
        self.edges: list[np.ndarray] = []
        self.fold_missing: np.ndarray = np.zeros(0, dtype=bool)
        self.categories: dict[int, np.ndarray] = {}  # column -> kept codes, in bin order
        self.bins: IntArray = np.zeros((0, 0), dtype=np.int64)
        self.n_regular: list[int] = []
        self.epoch = 0  # trees finished (the node's checkpoints count them)

    @property
    def n_weights(self) -> int:
        """This party's columns (a tree has no weights: the driver's size checks read this)."""
        return int(self.raw.shape[1])

    def _design(self, raw: np.ndarray) -> np.ndarray:
        # Trees use bins, not the logistic family's fixed-point design matrix.
        return np.zeros((len(raw), 0), dtype=np.int64)

    @property
    def category_columns(self) -> list[int]:
        """Indices of this party's categorical raw columns."""
        return [j for j, n in enumerate(self.column_names) if n in set(self.categorical)]

    @property
    def group_columns(self) -> frozenset[int]:
        """Columns split by category groups: none but the lender's (``GrowingLender``)."""
        return frozenset()

    def _aligned(self) -> None:
        split = self._require_split()
        raw = self._normalized(self._raw[self.aligned_rows], self.category_columns)
        train = raw[split.train]
        floor = int(self.settings.min_rows)
        cats = self.category_columns
        self.edges = [
            np.zeros(0) if j in cats else fit_edges(train[:, j], int(self.settings.bins), floor)
            for j in range(raw.shape[1])
        ]
        missing = np.isnan(train).sum(axis=0) if raw.shape[1] else np.zeros(0)
        self.fold_missing = (missing > 0) & (missing < max(floor, 1))
        self.categories = {
            j: fit_categories(train[:, j], floor, int(missing[j]) if self.fold_missing[j] else 0)
            for j in cats
        }
        self._set_n_regular()
        self.bins = self.bins_for(raw)

    def _set_n_regular(self) -> None:
        self.n_regular = [
            len(self.categories[j]) + 1 if j in self.categories else len(e) + 1
            for j, e in enumerate(self.edges)
        ]

    @staticmethod
    def _normalized(raw: np.ndarray, columns: list[int]) -> np.ndarray:
        x = np.array(raw, dtype=np.float64, copy=True)
        for j in columns:
            x[is_missing(x[:, j]), j] = np.nan  # an empty cell's code is a missing value
        return x

    def bins_for(self, raw: np.ndarray) -> IntArray:
        """Bins of rows of this party's raw columns (its own file's units)."""
        # The columns of the category maps (a part stored before them has none: codes as numbers).
        x = self._normalized(raw, sorted(self.categories))
        if x.shape[1]:
            x[:, self.fold_missing] = np.where(
                np.isnan(x[:, self.fold_missing]), -np.inf, x[:, self.fold_missing]
            )
        out = bin_matrix(x, self.edges)
        for j, kept in self.categories.items():
            out[:, j] = bin_categories(x[:, j], kept)
        return out

    def bin_maps(self) -> dict[str, Any]:
        """What a model part keeps of the binning: edges, folded missing, category maps."""
        return {
            "edges": [e.tolist() for e in self.edges],
            "fold_missing": self.fold_missing.tolist(),
            "categories": {str(j): c.tolist() for j, c in self.categories.items()},
        }

    def load_bin_maps(self, part: Any) -> None:
        """``bin_maps`` back (a part stored before category maps has none)."""
        self.edges = [np.asarray(e, dtype=np.float64) for e in part["edges"]]
        self.fold_missing = np.asarray(part["fold_missing"], dtype=bool)
        self.categories = {
            int(j): np.asarray(c, dtype=np.float64)
            for j, c in dict(part.get("categories", {})).items()
        }
        self._set_n_regular()

    @property
    def train_bins(self) -> IntArray:
        out: IntArray = self.bins[self._require_split().train]
        return out

    def raw_for_ids(self, ids: list[str]) -> tuple[np.ndarray, list[int]]:
        """Raw rows of the ids this party holds (NaN rows for the others), and their positions."""
        if not self._index:
            self._index = {cid: i for i, cid in enumerate(self._ids)}
        found = [self._index.get(cid, -1) for cid in ids]
        missing = [i for i, r in enumerate(found) if r < 0]
        rows = np.array([max(r, 0) for r in found], dtype=np.int64)
        return self._raw[rows], missing

    # -- what each role stores (``fedcredit.protocol.trees.store``) ------------------------------
    def state(self) -> dict[str, Any]:
        raise ProtocolError(f"party {self.name!r} keeps no trees checkpoint")

    def load_state(self, state: Any) -> None:
        raise ProtocolError(f"party {self.name!r} keeps no trees checkpoint")

    def model_part(self) -> dict[str, Any]:
        raise ProtocolError(f"party {self.name!r} keeps no trees model part")

    def load_model_part(self, part: Any) -> None:
        raise ProtocolError(f"party {self.name!r} scores trees from its node's memory only")

    def _require_bins(self) -> None:
        if not self.n_regular and self._raw.shape[1]:
            raise ProtocolError(f"party {self.name!r} has not aligned ids yet")


__all__ = ["TreeColumns"]
