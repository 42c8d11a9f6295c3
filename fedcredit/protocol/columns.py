"""A party's aligned columns: its rows in the shared order, their split, batches and design matrix.

Family-neutral: every model family (logistic regression, the trees of the next issue) and the
binning phase start from here. After private set intersection every party holds the same
ordered list of common ids; ``align`` keeps those rows, splits them with the job seed
(``fedcredit.protocol.split``) and standardizes the columns on the training rows. Nothing here
leaves the party: its raw values, its ids and its design matrix stay local; what it reports is
counts (``AlignStats``).

A family's roles extend ``PartyColumns`` (``fedcredit.protocol.logistic.partner.FeatureParty``)
and react to a new design matrix in ``_design_changed``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fedcredit.crypto import PublicKey
from fedcredit.errors import ProtocolError
from fedcredit.protocol.fixedpoint import CLIP, quantize
from fedcredit.protocol.split import Split, batch_count, batch_rows, split_rows

PHASES = ("train", "validation", "test")


class ColumnEncoder(Protocol):
    """Turns a party's raw columns into design columns (e.g. one-hot bins), locally."""

    @property
    def feature_names(self) -> list[str]: ...

    def transform(self, raw: np.ndarray) -> np.ndarray: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PartyData:
    """One party's rows as its file gave them (never leave the party): what roles are made of."""

    name: str
    ids: list[str]
    features: np.ndarray
    feature_names: list[str]


@dataclass(frozen=True)
class AlignStats:
    """What a party reports after alignment: counts only."""

    common: int
    train: int
    validation: int
    test: int


class PartyColumns:
    """One party's raw columns, aligned to the shared order, split and encoded (never sent)."""

    #: Raw columns holding category codes (``fedcredit.protocol.categories.category_code``): the
    #: text columns of the data file and those its ``categorical`` key names. Set by whoever
    #: builds the party from a file (``fedcredit.node.runtime.make_party_node``).
    categorical: tuple[str, ...] = ()

    def __init__(
        self,
        name: str,
        ids: list[str],
        features: np.ndarray,
        feature_names: list[str],
        settings: Any,
    ) -> None:
        self.name = name
        self.settings = settings
        self._ids = ids
        self._raw = np.asarray(features, dtype=np.float64)
        self.feature_names = list(feature_names)
        # The raw columns' names as the file gives them (``feature_names`` becomes the
        # encoder's design columns once one is set).
        self.column_names = list(feature_names)
        self.public_key: PublicKey | None = None
        self.data_hash = _hash_data(ids, self._raw)
        self._index: dict[str, int] = {}
        self.split: Split | None = None
        self.mean = np.zeros(self._raw.shape[1])
        self.std = np.ones(self._raw.shape[1])
        self._x_int = np.zeros((0, 0), dtype=np.int64)
        # An optional column encoder (binning): when set, the design matrix is its output
        # instead of the standardized raw columns.
        self.encoder: ColumnEncoder | None = None

    # -- alignment -----------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        return self._ids

    @property
    def n_columns(self) -> int:
        """Columns of the design matrix before any intercept."""
        return (
            len(self.encoder.feature_names) if self.encoder is not None else int(self._raw.shape[1])
        )

    @property
    def raw(self) -> np.ndarray:
        """This party's raw columns in its own file order (never leaves the party)."""
        return self._raw

    @property
    def aligned_rows(self) -> np.ndarray:
        """Indices into the raw rows of the aligned customers, in the shared order."""
        return self._aligned_rows

    @property
    def x_scale_bits(self) -> int:
        return int(self.settings.x_scale_bits)

    def set_encoder(self, encoder: ColumnEncoder | None) -> None:
        """Use ``encoder`` (e.g. one-hot bins) for the design matrix (``_design_changed`` next)."""
        self.encoder = encoder
        if encoder is not None:
            self.feature_names = list(encoder.feature_names)
        self._design_changed(rebuilt=self.split is not None)

    def _design_changed(self, *, rebuilt: bool) -> None:
        """The encoder changed; with ``rebuilt`` the aligned design matrix was made again."""
        if rebuilt:
            self._x_int = self._design(self._raw[self._aligned_rows])

    def align(self, common_ids: list[str]) -> AlignStats:
        """Keep the common customers in the shared order, split them and standardize."""
        position = {cid: i for i, cid in enumerate(self._ids)}
        missing = [cid for cid in common_ids[:5] if cid not in position]
        if missing:
            raise ProtocolError(f"party {self.name!r}: aligned ids not in its data: {missing}")
        rows = np.array([position[cid] for cid in common_ids], dtype=np.int64)
        self._aligned_rows = rows
        self.split = split_rows(
            len(common_ids),
            test_fraction=float(self.settings.test_fraction),
            validation_fraction=float(self.settings.validation_fraction),
            seed=int(self.settings.seed),
        )
        raw = self._raw[rows]
        train = raw[self.split.train]
        self.mean = train.mean(axis=0) if len(train) else np.zeros(raw.shape[1])
        std = train.std(axis=0) if len(train) else np.ones(raw.shape[1])
        self.std = np.where(std > 0, std, 1.0)
        self._x_int = self._design(raw)
        self._aligned()
        return AlignStats(
            common=len(common_ids),
            train=len(self.split.train),
            validation=len(self.split.validation),
            test=len(self.split.test),
        )

    def _aligned(self) -> None:
        """Called once the aligned design matrix exists (a family prepares its model here)."""

    def _design(self, raw: np.ndarray) -> np.ndarray:
        """Standardized (or encoded), clipped, fixed-point columns (the lender adds the intercept)."""
        if self.encoder is not None:
            return quantize(np.clip(self.encoder.transform(raw), -CLIP, CLIP), self.x_scale_bits)
        z = np.clip((raw - self.mean) / self.std, -CLIP, CLIP)
        return quantize(z, self.x_scale_bits)

    def design_for(self, raw: np.ndarray) -> np.ndarray:
        """The fixed-point design matrix for new rows (scoring)."""
        return self._design(np.asarray(raw, dtype=np.float64))

    def rows_of(self, phase: str, epoch: int, batch: int) -> np.ndarray:
        """Indices into the aligned rows for a step; identical at every party."""
        split = self._require_split()
        if phase == "train":
            return batch_rows(
                split.train, int(self.settings.batch_size), self.settings.seed, epoch, batch
            )
        if phase == "validation":
            return split.validation
        if phase == "test":
            return split.test
        raise ProtocolError(f"unknown phase {phase!r}")

    def batches_per_epoch(self) -> int:
        return batch_count(len(self._require_split().train), int(self.settings.batch_size))

    def _require_split(self) -> Split:
        if self.split is None:
            raise ProtocolError(f"party {self.name!r} has not aligned ids yet")
        return self.split

    def _require_key(self) -> PublicKey:
        if self.public_key is None:
            raise ProtocolError(f"party {self.name!r} has no public key for this job")
        return self.public_key

    # -- scoring -------------------------------------------------------------------------
    def rows_for_ids(self, ids: list[str]) -> tuple[np.ndarray, list[int]]:
        """Fixed-point rows for the ids this party holds, and the positions it lacks."""
        if not self._index:
            self._index = {cid: i for i, cid in enumerate(self._ids)}
        found = [self._index.get(cid, -1) for cid in ids]
        missing = [i for i, r in enumerate(found) if r < 0]
        rows = np.array([r if r >= 0 else 0 for r in found], dtype=np.int64)
        return self.design_for(self._raw[rows]), missing


def _hash_data(ids: list[str], values: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update("\n".join(ids).encode())
    digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()[:32]


__all__ = ["PHASES", "AlignStats", "ColumnEncoder", "PartyColumns", "PartyData"]
