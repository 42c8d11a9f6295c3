"""PSI lists larger than one gRPC message: chunks in, chunks out (issue 16).

A list of ``total`` points reaches a step as consecutive chunks (``offset``, points); the step
runs once the last chunk is in, on the whole list, so the ring's commitments (security review
F11) still cover the whole list: its size and its digest. A chunk is refused before it is
stored when it is out of order or reaches beyond the size the list's previous holder
committed to, so nobody makes a party hold more than the list it expects.

A step's answer above one chunk is held here and handed out chunk by chunk
(``PsiFetch``); the last chunk fetched frees it.
"""

from __future__ import annotations

import threading

from fedcredit.errors import ProtocolError
from fedcredit.psi import POINT_BYTES

DEFAULT_CHUNK_POINTS = 2 * 1024 * 1024
"""Points per message when the driver names no chunk size: 64 MiB, a quarter of the nodes'
256 MiB message limit (``DEFAULT_MAX_MESSAGE_BYTES``)."""


def chunk_points(requested: int) -> int:
    """The chunk size for a reply: the request's, or the default (never above it)."""
    return min(requested, DEFAULT_CHUNK_POINTS) if requested > 0 else DEFAULT_CHUNK_POINTS


class PsiLists:
    """One job's PSI lists in transit on a node, by step and owner (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._incoming: dict[tuple[str, str], bytearray] = {}
        self._outgoing: dict[tuple[str, str], bytes | bytearray] = {}

    def receive(
        self,
        step: str,
        owner: str,
        offset: int,
        total: int,
        data: bytes,
        bound: tuple[str, int],
    ) -> bytearray | None:
        """Add a chunk of ``owner``'s list for ``step``; the whole list once it is complete.

        ``bound``: the party that announced the list and the size it announced (its commitment,
        or this party's own list size for the common values of ``PsiAlign``).
        """
        announcer, size = bound
        count = len(data) // POINT_BYTES
        if count * POINT_BYTES != len(data):
            raise ProtocolError(f"a chunk of {owner!r}'s PSI list is not whole points")
        if offset + count > size or total > size:
            raise ProtocolError(
                f"a chunk of {owner!r}'s PSI list reaches point {max(offset + count, total)}, "
                f"beyond the {size} points {announcer!r} announced"
            )
        key = (step, owner)
        with self._lock:
            held = self._incoming.get(key)
            if offset == 0:
                held = self._incoming[key] = bytearray()
            if held is None or len(held) != offset * POINT_BYTES:
                have = 0 if held is None else len(held) // POINT_BYTES
                raise ProtocolError(
                    f"a chunk of {owner!r}'s PSI list starts at point {offset}, "
                    f"{have} points had arrived"
                )
            held += data
            if len(held) < total * POINT_BYTES:
                return None
            del self._incoming[key]
        return held  # no longer shared: handed on without a copy

    def hold(self, step: str, owner: str, blob: bytes | bytearray, chunk: int) -> bytes:
        """Keep a step's answer for ``PsiFetch`` when it is above one chunk; its first chunk.

        ``blob`` is kept as it is (the step's own buffer, never changed after), not copied."""
        first = bytes(blob[: chunk * POINT_BYTES])
        if len(first) < len(blob):
            with self._lock:
                self._outgoing[(step, owner)] = blob
        return first

    def fetch(self, step: str, owner: str, offset: int, chunk: int) -> tuple[bytes, int]:
        """Points ``offset`` on (at most ``chunk``) of a held answer, and the answer's size."""
        key = (step, owner)
        with self._lock:
            blob = self._outgoing.get(key)
            if blob is None:
                raise ProtocolError(f"no {step} answer for {owner!r}'s PSI list is held here")
            total = len(blob) // POINT_BYTES
            if not 0 < offset < total:
                raise ProtocolError(
                    f"no point {offset} in the {total}-point {step} answer for {owner!r}"
                )
            end = min(total, offset + chunk)
            if end == total:
                del self._outgoing[key]  # a retried last fetch is answered by the guard's cache
        return bytes(blob[offset * POINT_BYTES : end * POINT_BYTES]), total
