"""PSI lists above one message travel in chunks through real nodes (issue 16).

Real nodes over mutual TLS on 127.0.0.1 and the real driver, whose chunk size is lowered from
2M points to a few, so every list of a 150-customer federation crosses many messages.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from fedcredit.node.transport.client import RemoteCallError
from fedcredit.proto.v1 import psi_pb2
from fedcredit.psi.group import hash_ids
from tests.support.federation import InProcessFederation, start_federation
from tests.support.recorder import Exchange, Recorder

PARTIES = ["ecommerce", "lender", "payments"]
CHUNK = 16  # points per message: 512 bytes of points


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[InProcessFederation, list[Exchange]]]:
    exchanges: list[Exchange] = []
    unrecorded: list[str] = []
    interceptors = {p: [Recorder(p, exchanges, unrecorded)] for p in PARTIES}
    federation = start_federation(
        tmp_path_factory.mktemp("chunks"), customers=150, interceptors=interceptors
    )
    yield federation, exchanges
    federation.close()
    assert unrecorded == []


def psi_calls(exchanges: list[Exchange]) -> list[Exchange]:
    return [e for e in exchanges if "/fedcredit.v1.Psi/" in e.method]


def test_a_chunked_alignment_equals_the_whole_list_one(
    recorded: tuple[InProcessFederation, list[Exchange]],
) -> None:
    nodes, exchanges = recorded
    whole = dict(nodes.aligned)
    largest_whole = max(len(e.request) + len(e.response) for e in psi_calls(exchanges))
    exchanges.clear()

    driver = nodes.driver
    driver.context.psi_chunk_points = CHUNK
    driver.setup(driver.start_job(), False)  # a party blinds once per job (F11)
    chunked = driver.align()

    calls = psi_calls(exchanges)
    assert chunked == whole
    assert 0 < chunked["common"] < 150
    # Every list crossed the wire in chunks of at most CHUNK points, answers fetched after.
    assert max(max(len(e.request), len(e.response)) for e in calls) < CHUNK * 32 + 300
    assert largest_whole > 100 * 32  # the default size sent each list in one message
    assert sum(e.method.endswith("/PsiFetch") for e in calls) > 3 * 3 * 3


def start_chunks(
    nodes: InProcessFederation,
) -> tuple[dict[str, psi_pb2.PsiPoints], list[bytes]]:
    """A fresh job, every party's blinding (whole lists); lender's list as payments gets it."""
    driver = nodes.driver
    driver.context.psi_chunk_points = CHUNK
    driver.setup(driver.start_job(), False)
    blinded = driver.call_all(
        PARTIES, lambda s: s.psi.PsiBlind, lambda p: psi_pb2.PsiRequest(env=driver.env())
    )
    data = bytes(blinded["lender"].points)
    return blinded, [data[i : i + 32] for i in range(0, len(data), 32)]


def send_chunk(
    nodes: InProcessFederation, holder: str, owner: str, pts: list[bytes], offset: int, total: int
) -> psi_pb2.PsiPoints:
    driver = nodes.driver
    request = psi_pb2.PsiPoints(
        env=driver.env(),
        owner=owner,
        points=b"".join(pts),
        count=len(pts),
        offset=offset,
        total=total,
        chunk=CHUNK,
    )
    return driver.call(holder, lambda s: s.psi.PsiApply, request)


def refusal(call: object) -> str:
    assert callable(call)
    with pytest.raises(RemoteCallError) as info:
        call()
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    return str(info.value.details)


def test_a_tampered_chunk_is_refused_naming_the_owner(
    recorded: tuple[InProcessFederation, list[Exchange]],
) -> None:
    nodes, _ = recorded
    _, genuine = start_chunks(nodes)
    total = len(genuine)
    forged = hash_ids(["guess-1"], nodes.job_id)[0]
    # The driver swaps one point of the second chunk of lender's list for a guess of its own.
    tampered = [*genuine[:CHUNK], forged, *genuine[CHUNK + 1 :]]

    replies = [
        send_chunk(nodes, "payments", "lender", tampered[o : o + CHUNK], o, total)
        for o in range(0, total - CHUNK, CHUNK)
    ]
    last = (total - 1) // CHUNK * CHUNK
    refused = refusal(lambda: send_chunk(nodes, "payments", "lender", tampered[last:], last, total))

    assert all(r.count == 0 and r.total == 0 for r in replies)  # nothing blinded before the end
    assert "'lender'" in refused and "not the list committed to" in refused


def test_a_chunk_beyond_the_committed_size_is_refused_naming_the_parties(
    recorded: tuple[InProcessFederation, list[Exchange]],
) -> None:
    nodes, _ = recorded
    _, genuine = start_chunks(nodes)
    total = len(genuine)
    extra = hash_ids([f"guess-{i}" for i in range(CHUNK)], nodes.job_id)

    # A list announced longer than lender's, and a chunk reaching past its committed end.
    longer = refusal(
        lambda: send_chunk(nodes, "payments", "lender", genuine[:CHUNK], 0, total + CHUNK)
    )
    send_chunk(nodes, "payments", "lender", genuine[:CHUNK], 0, total)
    past = refusal(lambda: send_chunk(nodes, "payments", "lender", extra, total, total))

    # lender's hop 1 is payments; its commitment came from lender itself.
    for refused in (longer, past):
        assert "'lender'" in refused and f"beyond the {total} points" in refused


def test_an_out_of_order_chunk_is_refused(
    recorded: tuple[InProcessFederation, list[Exchange]],
) -> None:
    nodes, _ = recorded
    _, genuine = start_chunks(nodes)
    total = len(genuine)

    send_chunk(nodes, "payments", "lender", genuine[:CHUNK], 0, total)
    skipped = refusal(
        lambda: send_chunk(
            nodes, "payments", "lender", genuine[2 * CHUNK : 3 * CHUNK], 2 * CHUNK, total
        )
    )

    assert f"starts at point {2 * CHUNK}, {CHUNK} points had arrived" in skipped


def test_a_list_sent_again_in_chunks_after_the_relay_is_refused(
    recorded: tuple[InProcessFederation, list[Exchange]],
) -> None:
    nodes, _ = recorded
    driver = nodes.driver
    sizes: dict[str, int] = {}
    driver.progress = lambda kind, info: sizes.update(info["sizes"]) if kind == "aligned" else None
    driver.context.psi_chunk_points = CHUNK
    driver.setup(driver.start_job(), False)
    driver.align()  # payments relayed lender's list at hop 1, in chunks
    total = sizes["lender"]
    guesses = hash_ids([f"guess-{i}" for i in range(total)], nodes.job_id)

    def again() -> None:
        for offset in range(0, total, CHUNK):
            send_chunk(nodes, "payments", "lender", guesses[offset : offset + CHUNK], offset, total)

    refused = refusal(again)

    assert "already applied its key to 'lender'" in refused
