"""Who may hand a party which PSI list: the ring's commitments, checked party to party.

The driver (the coordinator's side) carries every list round the ring, so on its own a party
would blind whatever the driver sends, for any owner, as often as it is asked: an active driver
could compute ``F(x)`` for a dictionary of ids and test them against every party's F-set
(security review F11). The ledger makes each party's key an oracle for its peers' genuine lists
only:

- before a party hands a list on (its own, blinded, or a peer's, relayed) it sends the party
  that will process it next, directly over mutual TLS, a commitment: owner, hop, point count
  and SHA-256 of the list;
- a party relays only for an owner that is another party of the job, once per owner, and only
  the exact list the expected previous holder committed to (so of the size the owner announced);
  the owner finishes only the list the last holder committed to.

The driver still chooses nothing but the order of calls: every list a key touches was made by
the parties themselves. Ring order is the sorted party names, as the driver's.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from fedcredit.errors import ProtocolError
from fedcredit.psi.points import buffer_of


def list_digest(points: Sequence[bytes]) -> bytes:
    """SHA-256 of a PSI list: its points concatenated, in order."""
    digest = hashlib.sha256(b"fedcredit/psi/v2/ring-list\x00")
    held = buffer_of(points)
    if held is not None:  # the same bytes, without making a bytes object a point
        digest.update(held)
        return digest.digest()
    for point in points:
        digest.update(point)
    return digest.digest()


@dataclass(frozen=True)
class Commitment:
    """What the holder of hop ``hop - 1`` of ``owner``'s list says it handed on."""

    owner: str
    hop: int
    count: int
    digest: bytes


class RingLedger:
    """One party's commitments and relays for one job (thread-safe: rings run in parallel)."""

    def __init__(self, me: str, parties: Sequence[str]) -> None:
        self.me = me
        self.parties = sorted(parties)
        if me not in self.parties or len(self.parties) < 2:
            raise ProtocolError(f"party {me!r} is not one of at least two parties of the job")
        self._lock = threading.Lock()
        self._commitments: dict[tuple[str, int], tuple[str, Commitment]] = {}
        self._relayed: set[str] = set()
        self._started = False
        self._finished = False

    def holder(self, owner: str, hop: int) -> str:
        """The party that processes ``owner``'s list at ``hop`` (0: the owner's own blinding,
        ``n``: the owner again, at finish)."""
        n = len(self.parties)
        return self.parties[(self.parties.index(owner) + hop) % n]

    def _hop_of_me(self, owner: str) -> int:
        if owner not in self.parties:
            raise ProtocolError(f"PSI list for {owner!r}, who is not a party of this job")
        if owner == self.me:
            raise ProtocolError(f"party {self.me!r} does not relay its own PSI list")
        n = len(self.parties)
        return (self.parties.index(self.me) - self.parties.index(owner)) % n

    def start(self, points: Sequence[bytes]) -> tuple[str, Commitment]:
        """Once per job: the commitment for the own blinded list, and whom to send it to."""
        with self._lock:
            if self._started:
                raise ProtocolError(
                    f"party {self.me!r} already blinded its ids in this job; set the job up again"
                )
            self._started = True
        return self._handing_on(self.me, 1, points)

    def abandon_start(self) -> None:
        """The own list never left this party (its commitment could not be sent): start again."""
        with self._lock:
            self._started = False

    def record(self, sender: str, commitment: Commitment) -> None:
        """A peer's commitment for a list this party processes next; ProtocolError unless the
        sender is the holder of the hop before and this party the holder of ``hop``."""
        owner, hop = commitment.owner, commitment.hop
        if owner not in self.parties or not 1 <= hop <= len(self.parties):
            raise ProtocolError(f"no PSI hop {hop} for owner {owner!r} in this job")
        if self.holder(owner, hop) != self.me or self.holder(owner, hop - 1) != sender:
            raise ProtocolError(
                f"party {sender!r} may not hand {self.me!r} hop {hop} of {owner!r}'s PSI list"
            )
        with self._lock:
            # A sender may restate a hop (a retry after a lost answer) until the list is used.
            used = owner in self._relayed if owner != self.me else self._finished
            if used:
                raise ProtocolError(f"hop {hop} of {owner!r}'s PSI list was processed already")
            self._commitments[(owner, hop)] = (sender, commitment)

    def _check(self, owner: str, hop: int, points: Sequence[bytes]) -> None:
        entry = self._commitments.get((owner, hop))
        if entry is None:
            raise ProtocolError(
                f"no commitment from {self.holder(owner, hop - 1)!r} for hop {hop} of "
                f"{owner!r}'s PSI list: only lists the parties made are processed"
            )
        _, commitment = entry
        if len(points) != commitment.count:
            raise ProtocolError(
                f"{owner!r}'s PSI list holds {len(points)} points at hop {hop}, "
                f"{commitment.count} were announced"
            )
        if list_digest(points) != commitment.digest:
            raise ProtocolError(f"hop {hop} of {owner!r}'s PSI list is not the list committed to")

    def announced(self, owner: str) -> tuple[str, int]:
        """Who committed to the list of ``owner``'s this party processes next, and its size
        (a list arriving in chunks is bounded by it); ProtocolError without a commitment."""
        hop = len(self.parties) if owner == self.me else self._hop_of_me(owner)
        with self._lock:
            entry = self._commitments.get((owner, hop))
        if entry is None:
            raise ProtocolError(
                f"no commitment from {self.holder(owner, hop - 1)!r} for hop {hop} of "
                f"{owner!r}'s PSI list: only lists the parties made are processed"
            )
        return entry[0], entry[1].count

    def admit_relay(self, owner: str, points: Sequence[bytes]) -> int:
        """Reserve this party's one relay of ``owner``'s list for ``points``; its hop.

        ProtocolError when the owner is not another party of the job, when this party already
        relayed for it, or when ``points`` are not what the previous holder committed to.
        """
        hop = self._hop_of_me(owner)
        with self._lock:
            if owner in self._relayed:
                raise ProtocolError(
                    f"party {self.me!r} already applied its key to {owner!r}'s PSI list"
                )
            self._check(owner, hop, points)
            self._relayed.add(owner)
        return hop

    def release(self, owner: str) -> None:
        """Give back a reservation whose result never left this party (handing it on failed)."""
        with self._lock:
            self._relayed.discard(owner)

    def handing_on(self, owner: str, hop: int, points: Sequence[bytes]) -> tuple[str, Commitment]:
        """After relaying at ``hop``: whom to commit the result to, and the commitment."""
        return self._handing_on(owner, hop + 1, points)

    def _handing_on(self, owner: str, hop: int, points: Sequence[bytes]) -> tuple[str, Commitment]:
        commitment = Commitment(owner, hop, len(points), list_digest(points))
        return self.holder(owner, hop), commitment

    def admit_finish(self, points: Sequence[bytes]) -> None:
        """Once: the own list back from the ring must be what its last holder committed to."""
        with self._lock:
            if self._finished:
                raise ProtocolError(f"party {self.me!r} already finished its PSI list")
            self._check(self.me, len(self.parties), points)
            self._finished = True
