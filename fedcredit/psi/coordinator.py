"""The coordinator's side of the PSI: intersect sorted F-sets it cannot invert."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedcredit.errors import CryptoError, ProtocolError
from fedcredit.psi.group import check_points
from fedcredit.psi.points import POINT_BYTES, PointBuffer, buffer_of


@dataclass(frozen=True)
class IntersectionSummary:
    """What the coordinator may log: the size of each party's set and of the intersection."""

    set_sizes: tuple[int, ...]
    intersection_size: int


def _check_sorted(index: int, values: Sequence[bytes]) -> None:
    held = buffer_of(values)
    if held is not None:
        _check_sorted_buffer(index, held)
        return
    for position in range(1, len(values)):
        if not values[position - 1] < values[position]:
            problem = "repeats" if values[position - 1] == values[position] else "is not sorted"
            raise ProtocolError(f"PSI set {index} {problem} at position {position}")


def _check_sorted_buffer(index: int, data: bytes | bytearray) -> None:
    """_check_sorted on points back to back: as four big-endian words each, compared in order
    (``bytes`` compare as memcmp does), so no point becomes a ``bytes`` object."""
    words = np.frombuffer(data, dtype=">u8").reshape(-1, POINT_BYTES // 8)
    if len(words) < 2:
        return
    differ = words[1:] != words[:-1]
    first = differ.argmax(axis=1)
    rows = np.arange(len(first))
    bad = ~(differ.any(axis=1) & (words[:-1][rows, first] < words[1:][rows, first]))
    if bad.any():
        at = int(np.flatnonzero(bad)[0])
        problem = "repeats" if not differ[at].any() else "is not sorted"
        raise ProtocolError(f"PSI set {index} {problem} at position {at + 1}")


def intersect(sets: Sequence[Sequence[bytes]], *, validate: bool = True) -> Sequence[bytes]:
    """Return the values present in every set, sorted.

    Each set must be strictly increasing (sorted, no repeats: a party's sorted F-set)
    and, with ``validate``, made of valid Curve25519 u-coordinates; otherwise
    :class:`ProtocolError` or :class:`CryptoError` names the set and position. The
    coordinator learns the size of every set and of every sub-intersection (it can
    compare any two sets), never an id: it holds no party's key.
    """
    if len(sets) < 2:
        raise ProtocolError(f"a PSI intersection needs at least two sets, got {len(sets)}")
    for index, values in enumerate(sets):
        _check_sorted(index, values)
        if validate:
            try:
                check_points(values)
            except CryptoError as exc:
                raise CryptoError(f"PSI set {index}: {exc}") from exc
    held = [buffer_of(values) for values in sets]
    if all(data is not None for data in held):
        # One buffer per set (issue 16): numpy's sort of 32-byte rows is memcmp order, the
        # order of bytes, so the common rows come out sorted as the list path sorts them.
        common_rows = np.frombuffer(held[0] or b"", dtype=f"V{POINT_BYTES}")
        for data in held[1:]:
            rows = np.frombuffer(data or b"", dtype=f"V{POINT_BYTES}")
            common_rows = np.intersect1d(common_rows, rows, assume_unique=True)
        return PointBuffer(common_rows.tobytes())
    smallest = min(range(len(sets)), key=lambda i: len(sets[i]))
    common = set(sets[smallest])
    for index, values in enumerate(sets):
        if index != smallest:
            common.intersection_update(values)
    return sorted(common)


def summarize(sets: Sequence[Sequence[bytes]], common: Sequence[bytes]) -> IntersectionSummary:
    """Sizes only, for the coordinator's log and the driver's report."""
    return IntersectionSummary(tuple(len(s) for s in sets), len(common))
