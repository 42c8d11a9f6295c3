"""A partner's side of federated binning: encrypted per-bin label sums, then the lender's plan.

A partner sums the lender's encrypted labels per fine bin of each of its columns
(``fedcredit.crypto.bin_sums``, the same sums as ``X_onehot.T @ [[y]]``), adds exact two-sided geometric noise (on by default), packs the sums
several to a ciphertext, re-randomizes them and sends them back with its per-bin row counts.
It then applies the lender's plan: its kept columns, merged, encoded one-hot for training.
What each side learns is stated in docs/BINNING.md.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from fedcredit.crypto import EncryptedVector, PublicKey, bin_sums
from fedcredit.crypto.keys import MIN_KEY_BITS, check_peer_key
from fedcredit.crypto.packing import pack_for_owner
from fedcredit.errors import ConfigError, ProtocolError
from fedcredit.model.noise import two_sided_geometric
from fedcredit.protocol.binning.bins import (
    BinnedParty,
    FineColumn,
    IntArray,
    bin_matrix,
    bins_of,
    fit_columns,
    train_raw,
)
from fedcredit.protocol.binning.encoder import BinEncoder, EncodedColumn
from fedcredit.protocol.binning.messages import (
    EVENT_OFFSET,
    EVENT_VALUE_BITS,
    ColumnPlan,
    EncryptedBinSums,
)
from fedcredit.protocol.design_floor import columned_levels

#: Geometric noise is clipped here (reached with probability below 1e-9 for epsilon >= 1e-4).
NOISE_CLIP = 1 << 40
#: L1 change of one column's per-bin rows and events when one customer moves between its bins.
NOISE_SENSITIVITY = 4


def geometric_noise(size: int, epsilon: float, rng: random.Random | None = None) -> IntArray:
    """Exact two-sided geometric (discrete Laplace) noise, ``P(k) ~ exp(-epsilon |k| / 4)``,
    sampled with integers only (``fedcredit.model.noise``), clipped at ``NOISE_CLIP``.

    The scale fits the L1 sensitivity 4 of one column's per-bin rows and events (BINNING.md,
    "The noise option"). Without ``rng`` the draws come fresh from ``secrets.SystemRandom``, so
    two runs never share noise that a difference of their counts would cancel.
    """
    return two_sided_geometric(size, epsilon, NOISE_SENSITIVITY, rng, clip=NOISE_CLIP)


def compute_bin_sums(
    party: BinnedParty,
    columns: Sequence[FineColumn],
    labels: EncryptedVector,
    *,
    noise_epsilon: float = 0.0,
    rng: random.Random | None = None,
) -> EncryptedBinSums:
    """Per fine bin: rows (plain) and ``[[sum of labels]]`` (packed, re-randomized).

    The re-randomization matters: the lender knows the randomness of each label ciphertext and,
    from an unrandomized product, could test which rows fall in a bin.
    """
    raw = train_raw(party)
    if len(labels) != len(raw):
        raise ProtocolError(f"{len(labels)} encrypted labels for {len(raw)} training rows")
    if labels.scale_bits != 0:
        raise ProtocolError("encrypted labels must be at scale 0")
    index = bin_matrix(raw, columns)
    sizes = [c.binning.n_bins for c in columns]
    rows = np.concatenate(
        [np.bincount(index[:, j], minlength=size) for j, size in enumerate(sizes)]
    ).astype(np.int64)
    # One product of label ciphertexts per fine bin, on this party's executor (the same residues
    # as the one-hot ``X.T @ [[y]]`` it replaces, at one multiplication a row and column).
    per_bin = bin_sums(labels, None, index, sizes)
    sums = per_bin[0].concat(*per_bin[1:])
    extra = np.zeros(len(rows), dtype=np.int64)
    noisy = noise_epsilon > 0
    if noisy:
        # Fresh draws from the operating system's generator unless a test passes ``rng``.
        source = rng or secrets.SystemRandom()
        rows = np.maximum(rows + geometric_noise(len(rows), noise_epsilon, source), 0)
        extra = geometric_noise(len(rows), noise_epsilon, source)
    packed = pack_for_owner(
        sums.add_plain_ints([int(v) + EVENT_OFFSET for v in extra.tolist()]), EVENT_VALUE_BITS
    )
    per_column = np.split(rows, np.cumsum(sizes)[:-1])
    return EncryptedBinSums(
        tuple(c.name for c in columns),
        tuple(tuple(int(v) for v in r) for r in per_column),
        packed,
        noisy,
        tuple(c.categorical for c in columns),
    )


def partner_encoder(
    party: BinnedParty,
    columns: Sequence[FineColumn],
    plans: Sequence[ColumnPlan],
    min_share: float = 0.0,
) -> BinEncoder:
    """One-hot encoder of a partner's kept columns; the largest merged bin is the reference.

    A merged bin gets a design column only when the plan does not fold it and it holds enough
    training rows, in all and in every mini-batch of the job (``design_floor``, ``min_share``
    being the job's ``min_bin_share``); the others score like the reference.
    """
    by_name = {p.name: p for p in plans}
    if sorted(by_name) != sorted(c.name for c in columns) or len(by_name) != len(plans):
        raise ProtocolError(f"party {party.name!r}: the bin plan does not name exactly its columns")
    raw = train_raw(party)
    encoded = []
    for c in columns:
        plan = by_name[c.name]
        if not plan.keep:
            continue
        try:
            merged = c.binning.regroup(plan.groups)
        except ConfigError as exc:
            raise ProtocolError(
                f"party {party.name!r}, column {c.name!r}: bad merge: {exc}"
            ) from exc
        if any(not 0 <= k < merged.n_bins for k in plan.fold):
            raise ProtocolError(f"party {party.name!r}, column {c.name!r}: bad fold {plan.fold}")
        bins = bins_of(merged, raw[:, c.index], c.categorical)
        counts = np.bincount(bins, minlength=merged.n_bins)
        reference = int(np.argmax(counts))
        active = columned_levels(
            bins,
            merged.n_bins,
            reference,
            min_share=min_share,
            settings=party.settings,
            exclude=plan.fold,
        )
        shares = tuple(float(counts[k]) / max(1, len(raw)) for k in active)
        encoded.append(
            EncodedColumn(c.name, c.index, merged, c.categorical, "onehot", (), active, shares)
        )
    return BinEncoder(encoded, int(party.raw.shape[1]))


# -- each side's state for one job ----------------------------------------------------------------
class PartnerBinning:
    """A partner's side: fine bins, encrypted label sums, then the lender's plan applied."""

    def __init__(
        self, party: BinnedParty, settings: Any, categorical: Collection[str] = ()
    ) -> None:
        self.party = party
        self.settings = settings
        # The party's own categorical columns (text columns found in its file) count too.
        self.categorical = frozenset(categorical) | frozenset(party.categorical)
        self.columns: list[FineColumn] = []
        self.labels: EncryptedVector | None = None

    def receive_labels(self, labels: EncryptedVector, *, allow_small: bool = False) -> None:
        """Keep the lender's encrypted labels; refuses a key weaker than the job's, and one that
        fails the key policy (``check_peer_key``, CryptoError naming the lender)."""
        job_key = self.party.public_key
        if job_key is not None and labels.public_key.bits < job_key.bits:
            raise ProtocolError(
                f"the lender's label key has {labels.public_key.bits} bits, "
                f"below the job's {job_key.bits}"
            )
        # The job key passed the same policy at setup: one below 2048 bits means a test run.
        small = allow_small or (job_key is not None and job_key.bits < MIN_KEY_BITS)
        check_peer_key(labels.public_key, allow_small=small, party="the lender")
        rows = len(train_raw(self.party))
        if len(labels) != rows or labels.scale_bits != 0:
            raise ProtocolError(f"expected {rows} encrypted labels at scale 0, got {len(labels)}")
        self.labels = labels

    @property
    def label_key(self) -> PublicKey:
        """The lender's key of this job's labels."""
        if self.labels is None:
            raise ProtocolError(f"party {self.party.name!r} has no encrypted labels yet")
        return self.labels.public_key

    def bin_sums(self, rng: random.Random | None = None) -> EncryptedBinSums:
        if self.labels is None:
            raise ProtocolError(f"party {self.party.name!r} has no encrypted labels yet")
        self.columns = fit_columns(self.party, self.settings, self.categorical)
        epsilon = float(getattr(self.settings, "noise_epsilon", 0.0))
        return compute_bin_sums(
            self.party, self.columns, self.labels, noise_epsilon=epsilon, rng=rng
        )

    def apply_plan(self, plans: Sequence[ColumnPlan]) -> int:
        """Encode the kept columns one-hot for training; returns the design column count."""
        if not self.columns:
            raise ProtocolError(f"party {self.party.name!r} has no bins to apply a plan to")
        min_share = float(self.settings.min_bin_share)
        encoder = partner_encoder(self.party, self.columns, plans, min_share)
        self.party.set_encoder(encoder)
        party = self.party
        encoder.bind_weights(lambda: party.weights, has_intercept=False)
        return len(encoder.feature_names)
