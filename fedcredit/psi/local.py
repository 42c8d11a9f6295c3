"""The whole multi-party PSI in one process: for tests and benchmarks.

The lead's nodes run exactly these steps, with each list crossing the network
between ``start``, the ``relay`` hops and ``finish``.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedcredit.errors import ProtocolError
from fedcredit.psi.coordinator import intersect
from fedcredit.psi.party import PSIParty, PSIResult, next_holder


def run_local_psi(
    id_sets: Sequence[Sequence[str]],
    job_id: str,
    *,
    workers: int | None = None,
) -> list[PSIResult]:
    """Run the ring PSI for ``len(id_sets)`` parties; one result per party, same order.

    Every result holds the same sorted list of common ids. Refuses fewer than two
    parties (ProtocolError) and duplicate ids within a party (DataError).
    """
    n_parties = len(id_sets)
    if n_parties < 2:
        raise ProtocolError(f"a PSI needs at least two parties, got {n_parties}")
    parties = [PSIParty(ids, job_id, n_parties, workers=workers) for ids in id_sets]
    in_flight = [party.start() for party in parties]
    for hop in range(1, n_parties):
        in_flight = [
            parties[next_holder(owner, hop, n_parties)].relay(points)
            for owner, points in enumerate(in_flight)
        ]
    f_sets = [party.finish(points) for party, points in zip(parties, in_flight, strict=True)]
    common = intersect(f_sets)
    return [party.resolve(common) for party in parties]
