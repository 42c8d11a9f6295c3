"""The domain messages of federated binning (what travels, and who may read it).

Flow, once per job after alignment, lender L and partners P_1..P_N (each arrow one message):

1. ``L -> P_i``  the training labels ``[[y]]`` under the lender's own fresh key (one ciphertext
   per training row, scale 0): P_i learns their count, which it knows.
2. ``P_i -> L``  ``EncryptedBinSums``: per fine bin of each column its rows (plain, noised when
   the job asks for noise) and ``[[sum of labels]]`` packed and re-randomized: L learns per-bin
   event counts (noised), never a row's bin.
3. ``L -> P_i``  ``ColumnPlan`` per column: keep it or not, which fine bins merge, which merged
   bins fold into the reference. P_i learns the lender's decisions, no label statistic.
4. ``P_i -> L``  its count of design columns (the batch-size rule and the coordinator's
   decryption schedule need it).

The coordinator decrypts nothing in this phase (``fedcredit.protocol.binning.schedule``).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedcredit.crypto import PackedCiphertexts

#: Value bits of a packed per-bin event sum; every sum travels as ``sum + 2**(bits - 1)``.
EVENT_VALUE_BITS = 48
EVENT_OFFSET = 1 << (EVENT_VALUE_BITS - 1)


@dataclass(frozen=True)
class EncryptedBinSums:
    """What a partner sends the lender: names, per-bin rows, packed per-bin event sums."""

    names: tuple[str, ...]
    rows: tuple[tuple[int, ...], ...]
    events: PackedCiphertexts
    noisy: bool
    unordered: tuple[bool, ...] = ()  # categorical columns: bins have no order to merge along


@dataclass(frozen=True)
class ColumnPlan:
    """The lender's decision for one column: keep it, and the groups of its regular fine bins.

    ``fold``: merged bins (the missing bin is the last) that get no design column and score
    like the reference, because they hold too few training rows (``design_floor``).
    """

    name: str
    keep: bool
    groups: tuple[tuple[int, ...], ...]
    fold: tuple[int, ...] = ()
