"""Private set intersection of customer ids: ring ECDH-PSI on Curve25519 (X25519).

Design (semi-honest parties, a coordinator that colludes with none of them):

1. Hashing. Every party maps each id ``x`` to a point
   ``H(x) = Elligator2(SHA-512(tag || job_id || x) mod p)`` (length-prefixed,
   domain-separated, so points of one job say nothing about another's; see
   :mod:`fedcredit.psi.group` for the map and the clamped scalars). Points travel
   as X25519 u-coordinates and "raising to ``k``" below is ``X25519(k, u)``.
2. Ring. Party ``i`` holds a fresh secret scalar ``k_i``. It shuffles its points,
   raises them to ``k_i`` and sends the list to party ``i+1``; each party in turn
   raises the list to its own scalar, keeping the order, until after ``m-1`` hops
   the list returns to ``i`` holding ``F(x) = H(x)^(k_1 ... k_m)`` for ``i``'s ids
   in ``i``'s (shuffled) order. Nobody can undo another party's exponent
   (discrete logarithm), and exponentiation commutes, so equal ids give equal F.
   With three or more parties, ``i`` also multiplies in a one-time scalar ``r_i``
   at the start and removes it (``r_i^-1``) after the ring: without it the last
   party of the ring would see F of ``i``'s ids and learn its pairwise overlap
   with ``i``. With two parties that overlap is the output, so no mask is used.
3. Intersection. Each party sends its F values, sorted (the order then says
   nothing), to the coordinator, which intersects them and returns the common
   values; each party maps them back to its ids and sorts the ids as strings, so
   every party ends with the same list in the same order.

What each side learns:
- a data party: the common ids, and the number of ids every other party holds
  (it relays their lists); nothing about ids outside the intersection;
- the coordinator: the size of every set and of every intersection of sets
  (with three parties: the pairwise overlaps as counts), never an id or an F
  value it could link to an id, since it holds no key;
- a party colluding with the coordinator could learn more: the design assumes
  the coordinator colludes with nobody.

Every point a party or the coordinator receives is checked to be a canonical
Curve25519 u-coordinate (32 bytes, below p, not of small order); anything else
raises CryptoError.
"""

from fedcredit.psi.coordinator import IntersectionSummary, intersect, summarize
from fedcredit.psi.group import (
    HASH_DOMAIN,
    SUITE,
    PSIKey,
    blind,
    check_points,
    hash_and_blind,
    hash_ids,
    hash_points,
    worker_count,
)
from fedcredit.psi.local import run_local_psi
from fedcredit.psi.party import PSIParty, PSIResult, next_holder
from fedcredit.psi.points import POINT_BYTES, PointBuffer

__all__ = [
    "HASH_DOMAIN",
    "POINT_BYTES",
    "SUITE",
    "IntersectionSummary",
    "PSIKey",
    "PSIParty",
    "PSIResult",
    "PointBuffer",
    "blind",
    "check_points",
    "hash_and_blind",
    "hash_ids",
    "hash_points",
    "intersect",
    "next_holder",
    "run_local_psi",
    "summarize",
    "worker_count",
]
