"""Encrypted histograms: per bin of integer codes, the encrypted sum of the rows in that bin.

A trees partner sums the lender's encrypted g and h per bin of each of its columns at a node,
and a binning partner sums the lender's encrypted labels per fine bin: one product of
ciphertexts per (column, bin). The current executor (``fedcredit.crypto.executors``) computes
it: the thread pool one column per task, the Ray and ``processes`` executors blocks of rows
whose partial products are multiplied here. Every result is the unique residue mod n**2, so the
executor never changes a bit.

What the caller learns: nothing (it only multiplies ciphertexts). The sums are not
rerandomized: each is a deterministic function of its inputs, so whoever knows the inputs'
randomness (the key's owner) could test which rows a bin holds. Pack with
``pack_for_owner`` (or rerandomize) before sending.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fedcredit.crypto.executors.base import current_executor
from fedcredit.crypto.vector import EncryptedVector
from fedcredit.errors import CryptoError


def _check_codes(
    codes: npt.NDArray[Any], rows: npt.NDArray[np.int64], count: int, n_bins: Sequence[int]
) -> npt.NDArray[np.int64]:
    array = np.asarray(codes)
    if array.ndim != 2 or array.dtype.kind not in "iu":
        raise CryptoError(
            f"bin_sums needs a 2-D integer code matrix, got {array.dtype} {array.shape}"
        )
    if array.shape[0] != count:
        raise CryptoError(f"code matrix has {array.shape[0]} rows, the encrypted vector {count}")
    if len(n_bins) != array.shape[1]:
        raise CryptoError(f"{len(n_bins)} bin counts for {array.shape[1]} code columns")
    if rows.size and (int(rows.min()) < 0 or int(rows.max()) >= count):
        raise CryptoError(f"a row index is out of range for a vector of length {count}")
    picked = array[rows].astype(np.int64, copy=False)
    for j, size in enumerate(n_bins):
        column = picked[:, j]
        if int(size) < 1 or (column.size and (int(column.min()) < 0 or int(column.max()) >= size)):
            raise CryptoError(f"codes of column {j} must lie in [0, {size}) with at least one bin")
    return np.ascontiguousarray(picked)


def bin_sums(
    values: EncryptedVector,
    rows: Sequence[int] | npt.NDArray[np.integer[Any]] | None,
    codes: npt.NDArray[np.integer[Any]],
    n_bins: Sequence[int],
) -> list[EncryptedVector]:
    """Per column j of ``codes``: ``[[sum of values[i] over i in rows with codes[i, j] == b]]``
    for every bin ``b < n_bins[j]``, as one vector per column at ``values``' scale.

    ``codes`` has one row per entry of ``values``; ``rows`` selects the entries summed (``None``:
    all). An empty bin's sum is 1, the encryption of 0 with no randomness, as
    ``EncryptedVector.sum`` of nothing. A code outside ``[0, n_bins[j])`` is a CryptoError.
    Not rerandomized (module docstring).
    """
    count = len(values)
    picked = np.arange(count) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
    array = _check_codes(codes, picked, count, [int(b) for b in n_bins])
    cts = values.ciphertexts
    selected = cts if rows is None else [cts[i] for i in picked.tolist()]
    sizes = [int(b) for b in n_bins]
    out = current_executor().bin_sums(values.public_key.nsquare, selected, array, sizes)
    return [EncryptedVector(values.public_key, column, values.scale_bits) for column in out]


__all__ = ["bin_sums"]
