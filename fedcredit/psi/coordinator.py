"""The coordinator's side of the PSI: intersect sorted F-sets it cannot invert."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fedcredit.errors import CryptoError, ProtocolError
from fedcredit.psi.group import check_points


@dataclass(frozen=True)
class IntersectionSummary:
    """What the coordinator may log: the size of each party's set and of the intersection."""

    set_sizes: tuple[int, ...]
    intersection_size: int


def _check_sorted(index: int, values: Sequence[bytes]) -> None:
    for position in range(1, len(values)):
        if not values[position - 1] < values[position]:
            problem = "repeats" if values[position - 1] == values[position] else "is not sorted"
            raise ProtocolError(f"PSI set {index} {problem} at position {position}")


def intersect(sets: Sequence[Sequence[bytes]], *, validate: bool = True) -> list[bytes]:
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
    smallest = min(range(len(sets)), key=lambda i: len(sets[i]))
    common = set(sets[smallest])
    for index, values in enumerate(sets):
        if index != smallest:
            common.intersection_update(values)
    return sorted(common)


def summarize(sets: Sequence[Sequence[bytes]], common: Sequence[bytes]) -> IntersectionSummary:
    """Sizes only, for the coordinator's log and the driver's report."""
    return IntersectionSummary(tuple(len(s) for s in sets), len(common))
