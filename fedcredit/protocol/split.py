"""Seeded splits and mini-batches that every party computes identically from the job seed.

After alignment every party holds the same ordered list of common ids, so a permutation drawn
from the shared seed picks the same customers everywhere without any message. The split is not
stratified: stratifying would need the labels, which only the lender holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fedcredit.errors import ConfigError


@dataclass(frozen=True)
class Split:
    """Row indices (into the aligned order) of the train, validation and test parts."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split_rows(n: int, *, test_fraction: float, validation_fraction: float, seed: int) -> Split:
    """Split ``n`` aligned rows; the validation part is taken from what is not test."""
    if not 0.0 <= test_fraction < 1.0 or not 0.0 <= validation_fraction < 1.0:
        raise ConfigError("test_fraction and validation_fraction must lie in [0, 1)")
    perm = np.random.default_rng([seed, 0x5EED]).permutation(n)
    n_test = round(n * test_fraction)
    n_val = round((n - n_test) * validation_fraction)
    test = np.sort(perm[:n_test])
    validation = np.sort(perm[n_test : n_test + n_val])
    train = np.sort(perm[n_test + n_val :])
    return Split(train=train, validation=validation, test=test)


def batch_rows(train: np.ndarray, batch_size: int, seed: int, epoch: int, batch: int) -> np.ndarray:
    """The rows of mini-batch ``batch`` of ``epoch``: a fresh seeded shuffle every epoch."""
    count = batch_count(len(train), batch_size)
    if not 0 <= batch < count:
        raise ConfigError(f"batch {batch} is past the {count} batches of this epoch")
    perm = np.random.default_rng([seed, epoch, 0xBA7C]).permutation(len(train))
    start = batch * batch_size
    # The last batch takes the remainder, so no batch is ever smaller than batch_size (a tiny
    # batch would let a party solve for residuals from its gradient).
    stop = len(train) if batch == count - 1 else start + batch_size
    return train[np.sort(perm[start:stop])]


def batch_of_rows(rows: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """The mini-batch of every training position ``0..rows-1`` in ``epoch`` (``batch_rows``'s
    batches, all at once: position ``i`` of the training rows is in batch ``out[i]``)."""
    count = batch_count(rows, batch_size)
    perm = np.random.default_rng([seed, epoch, 0xBA7C]).permutation(rows)
    out = np.empty(rows, dtype=np.int64)
    out[perm] = np.minimum(np.arange(rows) // batch_size, count - 1)
    return out


def batch_count(rows: int, batch_size: int) -> int:
    """Mini-batches per epoch: whole batches, the remainder joining the last one."""
    return max(1, rows // batch_size)


def smallest_batch(rows: int, batch_size: int) -> int:
    """The size of the smallest mini-batch an epoch will have."""
    return rows if rows < batch_size else batch_size


# -- the batch-size privacy rule ------------------------------------------------------------------
def residuals_hidden(width: int, train_rows: int, batch_size: int) -> bool:
    """The batch-size privacy rule: True when a party with ``width`` design columns cannot
    solve a mini-batch's residuals from its own gradient.

    A party learns ``X.T @ d`` for each mini-batch: ``width`` equations in the batch's unknown
    residuals (and, for a partner, so in the labels). Only a batch with more rows than
    equations keeps them hidden, the smallest batch of the epoch included. The one home of
    the rule: the driver checks it before training, the coordinator's decryption gate before
    it accepts a job's schedule.
    """
    return width < smallest_batch(train_rows, batch_size)


def widest_exposed(
    widths: Mapping[str, int], train_rows: int, batch_size: int
) -> tuple[str, int] | None:
    """The widest party (the first of equals) if it breaks ``residuals_hidden``, else None."""
    if not widths:
        return None
    worst = max(widths, key=lambda p: widths[p])
    if residuals_hidden(widths[worst], train_rows, batch_size):
        return None
    return worst, widths[worst]


def check_batch_rule(
    widths: Mapping[str, int], train_rows: int, batch_size: int, *, what: str = "features"
) -> None:
    """ConfigError naming the widest party when ``residuals_hidden`` fails for it.

    ``what`` names the party's columns in the message (``"binned features"`` after binning).
    """
    exposed = widest_exposed(widths, train_rows, batch_size)
    if exposed is not None:
        party, width = exposed
        raise ConfigError(
            f"only {train_rows} training rows: a mini-batch of "
            f"{smallest_batch(train_rows, batch_size)} is not larger than the {width} {what} "
            f"of party {party!r}"
        )
