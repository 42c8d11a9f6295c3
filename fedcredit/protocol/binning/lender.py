"""The lender's side of federated binning: its own key and labels, the partners' counts, the plan.

The lender makes a Paillier key pair of its own for the job, encrypts its training labels and
sends them to each partner; it decrypts per-bin event counts, computes WOE and IV of every
column, keeps the columns whose IV reaches the threshold (and, among its own columns, drops the
weaker of highly correlated pairs), merges fine bins into groups of monotonic event rate and
tells each partner only which columns to keep, which fine bins to merge and which merged bins
are too small for a design column.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Protocol

import numpy as np

from fedcredit.crypto import (
    EncryptedVector,
    PrivateKey,
    PublicKey,
    decrypt_packed,
    encrypt_vector,
    generate_keypair,
)
from fedcredit.errors import ProtocolError
from fedcredit.model.woe import select_by_correlation
from fedcredit.protocol.binning.bins import BinnedParty, fit_columns, train_positions, train_raw
from fedcredit.protocol.binning.encoder import BinEncoder, EncodedColumn
from fedcredit.protocol.binning.messages import EVENT_OFFSET, ColumnPlan, EncryptedBinSums
from fedcredit.protocol.binning.plan import (
    MAX_CORRELATION,
    ColumnReport,
    ColumnStats,
    plain_stats,
    plan_columns,
    replace_kept,
)
from fedcredit.protocol.design_floor import total_floor


class LabelledParty(BinnedParty, Protocol):
    """The lender's aligned columns with the default label (e.g. the logistic ``LabelParty``)."""

    def labels(self, rows: np.ndarray) -> np.ndarray: ...


def encrypt_train_labels(
    lender: LabelledParty, key_bits: int, *, allow_small: bool = False
) -> tuple[PublicKey, PrivateKey, EncryptedVector]:
    """A fresh key pair of the lender's own and its training labels encrypted under it.

    A partner receiving the vector learns its length (the training rows, which it knows).
    """
    if lender.split is None:
        raise ProtocolError("the lender encrypts labels only after alignment")
    public, private = generate_keypair(key_bits, allow_small=allow_small)
    labels = lender.labels(lender.split.train).astype(np.float64)
    return public, private, encrypt_vector(public, labels, 0)


def open_bin_sums(
    private_key: PrivateKey, party: str, sums: EncryptedBinSums, train_rows: int
) -> list[ColumnStats]:
    """Decrypt a partner's per-bin event sums; ProtocolError when they are inconsistent."""
    names = len(sums.names)
    if len(sums.rows) != names or len(sums.unordered) != names or len(set(sums.names)) != names:
        raise ProtocolError(f"bin sums of {party!r}: names and counts do not match")
    if any(len(r) < 2 for r in sums.rows) or sum(len(r) for r in sums.rows) != sums.events.count:
        raise ProtocolError(f"bin sums of {party!r}: {sums.events.count} sums for the bins sent")
    slots = decrypt_packed(private_key, sums.events)
    events = np.array([s - EVENT_OFFSET for s in slots], dtype=np.int64)
    out: list[ColumnStats] = []
    at = 0
    for name, counts in zip(sums.names, sums.rows, strict=True):
        rows = np.array(counts, dtype=np.int64)
        ev = events[at : at + len(rows)]
        at += len(rows)
        if sums.noisy:
            rows = np.maximum(rows, 0)
            ev = np.clip(ev, 0, rows)
        elif int(rows.sum()) != train_rows or np.any(ev < 0) or np.any(ev > rows):
            raise ProtocolError(f"bin sums of {party!r}, column {name!r}: counts out of range")
        out.append(ColumnStats(party, name, rows, ev.astype(np.int64)))
    return out


class LenderBinning:
    """The lender's side: its key and labels, the partners' decrypted counts, the decisions."""

    def __init__(
        self, lender: LabelledParty, settings: Any, categorical: Collection[str] = ()
    ) -> None:
        self.lender = lender
        self.settings = settings
        self.categorical = frozenset(categorical) | frozenset(lender.categorical)
        self._private: PrivateKey | None = None
        self._labels: EncryptedVector | None = None
        self.stats: dict[str, tuple[list[ColumnStats], frozenset[str]]] = {}

    def encrypt_labels(self, key_bits: int, *, allow_small: bool = False) -> EncryptedVector:
        """The training labels under the lender's own fresh key (made once per job)."""
        if self._labels is None:
            _, self._private, self._labels = encrypt_train_labels(
                self.lender, key_bits, allow_small=allow_small
            )
        return self._labels

    @property
    def public_key(self) -> PublicKey:
        """The lender's own key of this job (after ``encrypt_labels``)."""
        if self._labels is None:
            raise ProtocolError("the lender has not encrypted its labels yet")
        return self._labels.public_key

    def receive_sums(self, partner: str, sums: EncryptedBinSums) -> None:
        if self._private is None or self.lender.split is None:
            raise ProtocolError("bin sums arrived before the lender sent its labels")
        stats = open_bin_sums(self._private, partner, sums, len(self.lender.split.train))
        unordered = frozenset(n for n, u in zip(sums.names, sums.unordered, strict=True) if u)
        self.stats[partner] = (stats, unordered)

    def select(
        self, partners: Sequence[str]
    ) -> tuple[dict[str, list[ColumnPlan]], list[ColumnReport], int]:
        """Plans for every partner, the IV report, and the lender's own encoder (applied)."""
        missing = sorted(set(partners) - set(self.stats))
        if missing:
            raise ProtocolError(f"no bin sums from {', '.join(missing)}")
        threshold = float(self.settings.iv_threshold)
        # The label owner folds a partner's small merged bins itself (the partner's encoder
        # applies the batch floors on top); it can judge only from the counts it was sent.
        train_rows = len(train_positions(self.lender))
        min_rows = total_floor(float(self.settings.min_bin_share), train_rows)
        plans: dict[str, list[ColumnPlan]] = {}
        reports: list[ColumnReport] = []
        for partner in partners:
            stats, unordered = self.stats[partner]
            plans[partner], rows = plan_columns(stats, unordered, threshold, min_rows)
            reports.extend(rows)
        own_reports, features = self._own_columns(threshold)
        return plans, own_reports + reports, features

    def _own_columns(self, threshold: float) -> tuple[list[ColumnReport], int]:
        lender = self.lender
        columns = fit_columns(lender, self.settings, self.categorical)
        raw = train_raw(lender)
        y = lender.labels(train_positions(lender))
        stats = plain_stats(lender.name, raw, y, columns)
        plans, reports = plan_columns(stats, self.categorical, threshold)
        encoded = []
        for c, plan, report in zip(columns, plans, reports, strict=True):
            if plan.keep:
                merged = c.binning.regroup(plan.groups)
                encoded.append(
                    EncodedColumn(c.name, c.index, merged, c.categorical, "woe", report.woe)
                )
        encoder = BinEncoder(encoded, int(raw.shape[1]))
        if len(encoded) > 1:
            x = encoder.transform(raw)
            iv = {
                c.name: r.iv for c, r in zip(encoded, [r for r in reports if r.kept], strict=True)
            }
            kept = set(select_by_correlation(x, [c.name for c in encoded], iv, MAX_CORRELATION))
            encoder = BinEncoder([c for c in encoded if c.name in kept], int(raw.shape[1]))
            reports = [replace_kept(r, r.kept and r.column in kept) for r in reports]
        lender.set_encoder(encoder)
        encoder.bind_weights(lambda: lender.weights, has_intercept=True)
        return reports, len(encoder.feature_names)
