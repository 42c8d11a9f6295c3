"""A list of PSI points held as one buffer: 32 bytes a point (issue 16).

A Python list of 32-byte ``bytes`` objects costs about 90 bytes a point (each object's header
and the list's pointer); at 10M ids a party holds two or three such lists during a step, so
they were its memory peak. :class:`PointBuffer` keeps the points back to back in one
``bytes`` or ``bytearray`` and is a read-only ``Sequence[bytes]``: indexing makes the one
32-byte ``bytes`` asked for, so code written for lists (tests, the coordinator) still works,
while hashing, blinding, the node's chunks and the ring's digest use the buffer itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

POINT_BYTES = 32

Buffer = bytes | bytearray


class PointBuffer(Sequence[bytes]):
    """``len(data) // 32`` points back to back in ``data`` (never changed once made).

    Equal to any sequence of the same ``bytes`` in the same order, a list included.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Buffer) -> None:
        if len(data) % POINT_BYTES:
            raise ValueError(f"a point buffer of {len(data)} bytes is not whole points")
        self._data = data

    @classmethod
    def of(cls, points: Sequence[bytes]) -> PointBuffer:
        """The buffer of ``points`` (itself when it already is one); ValueError unless every
        entry is 32 ``bytes`` (callers that must name the bad index check first)."""
        if isinstance(points, PointBuffer):
            return points
        if not all(type(p) is bytes and len(p) == POINT_BYTES for p in points):
            raise ValueError("a point buffer holds 32-byte points only")
        return cls(b"".join(points))

    @property
    def data(self) -> Buffer:
        """The points back to back: ``32 * len(self)`` bytes (do not modify)."""
        return self._data

    def tobytes(self) -> bytes:
        """The points as one ``bytes`` (no copy when the buffer already is ``bytes``)."""
        data = self._data
        return data if type(data) is bytes else bytes(data)

    def __len__(self) -> int:
        return len(self._data) // POINT_BYTES

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("point index out of range")
        return bytes(self._data[index * POINT_BYTES : (index + 1) * POINT_BYTES])

    def __iter__(self) -> Iterator[bytes]:
        data = self._data
        for start in range(0, len(data), POINT_BYTES):
            yield bytes(data[start : start + POINT_BYTES])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PointBuffer):
            return self._data == other._data
        if isinstance(other, Sequence) and not isinstance(other, str | bytes | bytearray):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PointBuffer({len(self)} points)"


def buffer_of(points: Sequence[bytes]) -> Buffer | None:
    """The points' buffer without a copy when they are a :class:`PointBuffer`, else None."""
    return points.data if isinstance(points, PointBuffer) else None
