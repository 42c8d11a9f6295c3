"""The PSI ring is no blinding oracle for the driver (security review F11).

The driver (the coordinator's side) carries every PSI list from party to party. On the code
before the fix a party applied its key to any list the driver sent, for any ``owner`` string,
at any new sequence number. Between the rings and ``PsiAlign`` (the keys are still live) an
active driver could then hash a dictionary of ids under the public job id, walk it through
every party's ``PsiApply`` and compare the results with the F-sets the parties had just
returned: membership of every dictionary id in every party's set.

Real nodes (``build_node``) over mutual TLS on 127.0.0.1, the real driver for the honest steps;
the deviating driver is that driver sending extra ``PsiApply`` calls.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fedcredit.node.transport.client import RemoteCallError
from fedcredit.proto.v1 import psi_pb2
from fedcredit.psi.group import hash_ids
from fedcredit.psi.ring import list_digest
from tests.support.federation import InProcessFederation, start_federation

PARTIES = ["ecommerce", "lender", "payments"]  # the ring order: sorted names


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessFederation]:
    federation = start_federation(tmp_path_factory.mktemp("psi"), customers=120)
    yield federation
    federation.close()


def party_ids(nodes: InProcessFederation) -> dict[str, set[str]]:
    out = {}
    for party in nodes.fed.parties:
        with Path(party.data).open(newline="", encoding="utf-8") as handle:
            out[party.name] = {row[party.id_column] for row in csv.DictReader(handle)}
    return out


def points(message: psi_pb2.PsiPoints) -> list[bytes]:
    data = bytes(message.points)
    return [data[i : i + 32] for i in range(0, len(data), 32)]


def apply(nodes: InProcessFederation, holder: str, owner: str, pts: list[bytes]) -> list[bytes]:
    driver = nodes.driver
    request = psi_pb2.PsiPoints(env=driver.env(), owner=owner, points=b"".join(pts), count=len(pts))
    return points(driver.call(holder, lambda s: s.psi.PsiApply, request))


def honest_rings(
    nodes: InProcessFederation,
) -> tuple[dict[str, list[bytes]], dict[str, set[bytes]]]:
    """A fresh setup, every party's blinding, every ring and every finish, as the driver runs
    them; no ``PsiAlign`` yet. The lists each holder received, and the F-sets."""
    driver = nodes.driver
    driver.setup(driver.start_job(), False)
    blinded = driver.call_all(
        PARTIES, lambda s: s.psi.PsiBlind, lambda p: psi_pb2.PsiRequest(env=driver.env())
    )
    received: dict[str, list[bytes]] = {}
    f_sets = {}
    for start, owner in enumerate(PARTIES):
        pts = points(blinded[owner])
        for hop in (1, 2):
            holder = PARTIES[(start + hop) % 3]
            received[f"{owner}@{holder}"] = pts
            pts = apply(nodes, holder, owner, pts)
        final = driver.call(
            owner,
            lambda s: s.psi.PsiFinish,
            psi_pb2.PsiPoints(env=driver.env(), owner=owner, points=b"".join(pts), count=len(pts)),
        )
        f_sets[owner] = set(points(final))
    return received, f_sets


def refusal(call: object) -> str | None:
    """The node's refusal of a driver's call, or None when it answered."""
    assert callable(call)
    try:
        call()
    except RemoteCallError as exc:
        assert exc.code == grpc.StatusCode.FAILED_PRECONDITION
        return exc.details
    return None


def test_the_driver_cannot_walk_a_dictionary_through_every_partys_key(
    nodes: InProcessFederation,
) -> None:
    # Arrange: the honest rings, then 40 dictionary ids: some customers, some strangers.
    _, f_sets = honest_rings(nodes)
    truth = party_ids(nodes)
    dictionary = sorted(truth["payments"])[:30] + [f"stranger-{i}" for i in range(10)]
    hashed = hash_ids(dictionary, nodes.job_id)
    found: dict[str, list[str]] = {}

    def attack() -> None:
        pts = hashed
        for holder in PARTIES:  # owner "x" is nobody: before the fix any string passed
            pts = apply(nodes, holder, "x", pts)
        for party, f_set in f_sets.items():
            found[party] = [pid for pid, f in zip(dictionary, pts, strict=True) if f in f_set]

    # Act
    refused = refusal(attack)

    # Assert
    exact = all(set(found[p]) == truth[p] & set(dictionary) for p in PARTIES) if found else False
    assert refused is not None, (
        f"the attack worked: {len(found['payments'])} of 30 payments customers found in its "
        f"F-set, {len(found['lender'])} of the dictionary in lender's; every party's membership "
        f"of every dictionary id exact: {exact}"
    )
    assert "not a party of this job" in refused


def test_a_party_applies_its_key_to_an_owners_list_once(nodes: InProcessFederation) -> None:
    # Arrange: payments relayed lender's list (hop 2) in the honest rings.
    received, _ = honest_rings(nodes)

    # Act: the driver asks again, with a fresh sequence number, the same list.
    refused = refusal(lambda: apply(nodes, "payments", "lender", received["lender@payments"]))

    # Assert
    assert refused is not None, "payments applied its key to lender's list a second time"
    assert "already applied its key" in refused


def test_a_list_its_owner_did_not_make_is_refused_even_at_the_announced_size(
    nodes: InProcessFederation,
) -> None:
    # Arrange: a new setup and blinding; the driver holds lender's genuine list.
    driver = nodes.driver
    driver.setup(driver.start_job(), False)
    blinded = driver.call_all(
        PARTIES, lambda s: s.psi.PsiBlind, lambda p: psi_pb2.PsiRequest(env=driver.env())
    )
    size = int(blinded["lender"].count)
    dictionary = hash_ids([f"guess-{i}" for i in range(size)], nodes.job_id)

    # Act: it hands payments (lender's hop 1) a dictionary of exactly that size instead.
    refused = refusal(lambda: apply(nodes, "payments", "lender", dictionary))
    shorter = refusal(lambda: apply(nodes, "payments", "lender", points(blinded["lender"])[:-1]))

    # Assert
    assert refused is not None, "payments blinded a dictionary in place of lender's list"
    assert "not the list committed to" in refused
    assert shorter is not None and f"{size} were announced" in shorter


def test_honest_alignment_still_finds_the_common_customers(nodes: InProcessFederation) -> None:
    driver = nodes.driver
    driver.setup(driver.start_job(), False)

    aligned = driver.align()

    truth = party_ids(nodes)
    assert aligned["common"] == len(truth["lender"] & truth["ecommerce"] & truth["payments"])


def test_the_driver_cannot_commit_a_list_in_a_partys_name(nodes: InProcessFederation) -> None:
    # Arrange: a fresh setup; the driver would announce its own dictionary for lender's hop 1.
    driver = nodes.driver
    driver.setup(driver.start_job(), False)
    dictionary = hash_ids(["guess-1", "guess-2"], nodes.job_id)
    commitment = psi_pb2.PsiCommitment(
        env=driver.env(), owner="lender", hop=1, count=2, digest=list_digest(dictionary)
    )

    # Act: the driver's certificate names it 'coordinator', whatever it claims.
    refused = refusal(lambda: driver.call("payments", lambda s: s.psi.PsiCommit, commitment))

    # Assert
    assert refused is not None and "'coordinator' may not hand" in refused
