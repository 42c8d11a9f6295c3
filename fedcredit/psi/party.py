"""One data party's side of the ring ECDH-PSI, as a small state machine over bytes.

The steps, in the order a node calls them (see :mod:`fedcredit.psi` for the design):

1. ``start()``: hash own ids, shuffle, blind; send the list to the next party.
2. ``relay(points)``: blind a peer's list with the own key, keep its order, pass it on.
3. ``finish(points)``: take back the own list after the whole ring; return the
   sorted F-set for the coordinator.
4. ``resolve(common)``: map the coordinator's common F values back to ids.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from fedcredit.errors import DataError, ProtocolError
from fedcredit.psi.group import PSIKey, blind, check_points, hash_and_blind
from fedcredit.psi.points import POINT_BYTES, PointBuffer, buffer_of

_POINT = np.dtype(f"V{POINT_BYTES}")
"""A point as numpy sees it: 32 raw bytes, ordered as ``bytes`` are (memcmp)."""


@dataclass(frozen=True)
class PSIResult:
    """What one party ends with.

    ``ids``: the ids every party holds, sorted as strings, so every party has the
    same list in the same order. ``own_size``: how many ids this party brought.
    ``intersection_size``: ``len(ids)``.
    """

    ids: list[str]
    own_size: int
    intersection_size: int


class _Stage(Enum):
    NEW = "new"
    STARTED = "started"
    FINISHED = "finished"
    RESOLVED = "resolved"


def next_holder(owner: int, hop: int, n_parties: int) -> int:
    """Index of the party that blinds ``owner``'s list at ring hop ``hop`` (1 .. n-1).

    After hop ``n_parties - 1`` the list goes back to ``owner`` for ``finish``.
    """
    if n_parties < 2 or not 0 <= owner < n_parties or not 1 <= hop < n_parties:
        raise ProtocolError(f"no ring hop {hop} for party {owner} of {n_parties}")
    return (owner + hop) % n_parties


class PSIParty:
    """A party's PSI state for one job. Not thread-safe; one instance per job.

    With three or more parties the own list leaves masked by an extra one-time
    scalar ``r`` that only ``finish`` removes: otherwise the last party of the ring
    would compute F for this party's ids and, comparing with its own F-set, learn
    the pairwise intersection. With two parties that pairwise intersection is the
    output, so the mask is skipped (``mask=None`` chooses; ``True`` forces it).
    """

    def __init__(
        self,
        ids: Sequence[str],
        job_id: str,
        n_parties: int,
        *,
        key: PSIKey | None = None,
        mask: bool | None = None,
        rng: random.Random | None = None,
        workers: int | None = None,
    ) -> None:
        if n_parties < 2:
            raise ProtocolError(f"a PSI needs at least two parties, got {n_parties}")
        self._ids = list(ids)
        if len(set(self._ids)) != len(self._ids):
            seen: set[str] = set()
            for index, value in enumerate(self._ids):
                if value in seen:
                    raise DataError(f"duplicate id {value!r} at index {index} given to PSI")
                seen.add(value)
        self._job_id = job_id
        self._n_parties = n_parties
        self._key = key if key is not None else PSIKey.generate()
        masked = n_parties > 2 if mask is None else mask
        self._mask = PSIKey.generate_mask(self._key) if masked else None
        self._rng = rng if rng is not None else random.SystemRandom()
        self._workers = workers
        self._order = np.zeros(0, dtype=np.int64)
        self._ranked = np.zeros(0, dtype=_POINT)
        self._rows = np.zeros(0, dtype=np.int64)
        self._stage = _Stage.NEW

    @property
    def own_size(self) -> int:
        """How many ids this party brings."""
        return len(self._ids)

    def start(self) -> PointBuffer:
        """Hash and blind the own ids in a fresh random order: the list for the next party.

        The next party sees only points blinded by a scalar it does not know, so it
        learns the number of ids and nothing else.
        """
        self._expect(_Stage.NEW, "start")
        order = list(range(len(self._ids)))
        self._rng.shuffle(order)
        first = self._key if self._mask is None else self._key.times(self._mask)
        ordered = [self._ids[i] for i in order]
        self._order = np.array(order, dtype=np.int64)
        del order
        blinded = hash_and_blind(ordered, self._job_id, first, workers=self._workers)
        self._stage = _Stage.STARTED
        return blinded

    def relay(self, points: Sequence[bytes]) -> PointBuffer:
        """Blind a peer's list with the own key, same order; invalid points raise CryptoError."""
        if self._stage is _Stage.RESOLVED:
            raise ProtocolError("PSI relay after the job was resolved")
        return blind(points, self._key, workers=self._workers)

    def finish(self, points: Sequence[bytes]) -> PointBuffer:
        """Take back the own list after the ring; return the sorted F-set for the coordinator.

        Sorting removes the order, so the coordinator cannot tie a value to a row.
        """
        self._expect(_Stage.STARTED, "finish")
        if len(points) != len(self._ids):
            raise ProtocolError(
                f"PSI list came back with {len(points)} points, {len(self._ids)} were sent"
            )
        if self._mask is not None:
            final = blind(points, self._mask.inverse(), workers=self._workers)
        else:
            # These values are only compared, never multiplied; the structural check
            # (32 bytes, canonical, not of small order) is one vectorized pass.
            check_points(points)
            final = PointBuffer.of(points)
        # Sorted as numpy rows, not a dict of point -> row (issue 16): 40 bytes a point.
        values = np.frombuffer(final.data, dtype=_POINT)
        del final
        ranking = np.argsort(values, kind="stable")
        ranked = values[ranking]
        del values  # the unmasked list: freed before the sorted copy below is made
        if len(ranked) > 1 and bool((ranked[1:] == ranked[:-1]).any()):
            raise ProtocolError("PSI list came back with repeated points")
        # The sorted rows kept for resolve and the F-set sent are the same bytes (one copy).
        blob = ranked.tobytes()
        del ranked
        self._ranked, self._rows = np.frombuffer(blob, dtype=_POINT), self._order[ranking]
        self._stage = _Stage.FINISHED
        return PointBuffer(blob)

    def resolve(self, common: Sequence[bytes]) -> PSIResult:
        """Map the coordinator's common F values to own ids, sorted as strings."""
        self._expect(_Stage.FINISHED, "resolve")
        held = buffer_of(common)
        if held is not None:
            blob: bytes | bytearray = held
        else:
            blob = b"".join(common) if all(type(v) is bytes for v in common) else b""
        if len(blob) != POINT_BYTES * len(common):
            index = next(
                (i for i, v in enumerate(common) if type(v) is not bytes or len(v) != POINT_BYTES),
                0,
            )
            raise ProtocolError(
                f"coordinator returned a value this party never sent (index {index})"
            )
        wanted = np.frombuffer(blob, dtype=_POINT)
        at = np.minimum(np.searchsorted(self._ranked, wanted), max(len(self._ranked) - 1, 0))
        found = self._ranked[at] == wanted if len(self._ranked) else np.zeros(len(wanted), bool)
        if not found.all():
            index = int(np.flatnonzero(~found)[0])
            raise ProtocolError(
                f"coordinator returned a value this party never sent (index {index})"
            )
        if len(np.unique(at)) != len(at):
            raise ProtocolError("coordinator returned a common value twice")
        ids = [self._ids[row] for row in self._rows[at].tolist()]
        ids.sort()
        self._stage = _Stage.RESOLVED
        return PSIResult(ids=ids, own_size=len(self._ids), intersection_size=len(ids))

    def _expect(self, stage: _Stage, step: str) -> None:
        if self._stage is not stage:
            raise ProtocolError(f"PSI step {step!r} out of order (stage is {self._stage.value})")
