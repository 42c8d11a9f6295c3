"""Micro-batched online scoring with packed partial scores: each caller gets exactly the score a
single request gives, a failing batch fails only its own callers, and what the partners and the
coordinator receive per batch reveals nothing more per applicant than a single request does.

Real in-process nodes (mutual TLS on 127.0.0.1, 1024-bit keys) of the synthetic federation of
``tests.security.test_scoring``, with a recording interceptor on every partner and on the
coordinator; the partners' true partial scores come from the parties built by our own code.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest

from fedcredit.crypto.packing import SLOT_EXTRA_BITS, slots_per_ciphertext
from fedcredit.node.serde.scoring import PACKED_PARTIALS
from fedcredit.node.transport.peers import COORDINATOR
from fedcredit.node.transport.tls import init_certs
from fedcredit.proto.v1 import common_pb2, coordinator_pb2, scoring_pb2
from fedcredit.protocol.disclosure import round_partial
from fedcredit.protocol.fixedpoint import Z_SCALE_BITS, score_value_bits
from fedcredit.protocol.logistic.partner import FeatureParty
from tests.security.test_scoring import (
    GRID,
    Nodes,
    load_federation,
    write_data,
    write_federation,
    write_model,
)
from tests.support.recorder import Exchange, Recorder

pytestmark = pytest.mark.slow

HOSTS = ("ecommerce", "payments")
#: Long enough that concurrent calls always meet in a batch, on a loaded machine too.
BATCHING = "[scoring]\nbatch_wait_ms = 200\n"
KEY_BITS = 1024
PER_CIPHERTEXT = slots_per_ciphertext(KEY_BITS, score_value_bits() + SLOT_EXTRA_BITS)


@dataclass
class RecordedNodes(Nodes):
    """``Nodes`` whose partners and coordinator record every call they serve."""

    exchanges: list[Exchange] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)

    def start_node(self, name: str, listen: str = "127.0.0.1:0") -> None:
        recorders = [] if name == "lender" else [Recorder(name, self.exchanges, self.unrecorded)]
        self.start(
            name,
            listen=listen,
            interceptors=recorders,
            model_dir=None if name == COORDINATOR else self.model_dir,
            peers={n: a for n, a in self.addresses.items() if n != name},
            state_dir=self.node_home(name),
        )

    def calls(self, node: str, method: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.node == node and e.method.endswith(f"/{method}")]


@dataclass
class Batched:
    nodes: RecordedNodes
    parties: dict[str, FeatureParty]
    precision_bits: int


def batched_federation(folder: Path, extra: str) -> Iterator[Batched]:
    fed = load_federation(
        write_federation(folder, write_data(folder, HOSTS), extra), allow_small_keys=True
    )
    parties = write_model(fed, folder / "model")
    certs = init_certs(folder / "certs", list(fed.all_names))
    nodes = RecordedNodes(fed, folder, certs, model_dir=folder / "model")
    try:
        nodes.start_all()
        yield Batched(nodes, parties, fed.scoring.precision_bits)
    finally:
        nodes.close()


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batched]:
    yield from batched_federation(tmp_path_factory.mktemp("batched"), BATCHING)


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batched]:
    # Small batches: the callers of one Score wave land in several of them.
    extra = BATCHING + 'unknown_ids = "refuse"\nbatch_max_applicants = 7\n'
    yield from batched_federation(tmp_path_factory.mktemp("batched-refusing"), extra)


def members(job: Batched) -> list[str]:
    """The lender's customers every partner holds, in a fixed order."""
    held = set.intersection(*(set(job.parties[h].ids) for h in HOSTS))
    return [i for i in sorted(job.parties["lender"].ids) if i in held]


def concurrently(job: Batched, requests: list[list[str]]) -> list[object]:
    """Each request as the lender's operator's own Score call, all released at once; each
    call's applicants, or its gRPC error."""
    stub = job.nodes.stub("lender")
    barrier = threading.Barrier(len(requests))
    answers: list[object] = [None] * len(requests)

    def one(i: int) -> None:
        barrier.wait()
        try:
            reply = stub.Score(scoring_pb2.ScoreRequest(ids=requests[i]), timeout=180)
            answers[i] = list(reply.applicants)
        except grpc.RpcError as exc:
            answers[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def partial_bytes(party: FeatureParty, ids: list[str], bits: int) -> list[bytes]:
    """Every clear form a partner's rounded partial scores could take on the wire: fixed-point
    integers (8 bytes, either order), float64 and float32 (either order)."""
    x, missing = party.rows_for_ids(ids)
    assert not missing
    u = round_partial(party.linear(x), bits)
    fixed = np.rint(u * GRID).astype(np.int64)
    forms = []
    for value, code in zip(u.tolist(), fixed.tolist(), strict=True):
        if code == 0:
            continue  # Zero bytes are everywhere; no partial here is exactly zero anyway.
        forms += [struct.pack(f"{e}q", code) for e in "<>"]
        forms += [struct.pack(f"{e}{t}", value) for e in "<>" for t in "df"]
    return forms


def test_each_caller_of_a_packed_batch_gets_exactly_its_single_request_score(
    batched: Batched,
) -> None:
    # Arrange: 16 callers of 1 to 4 applicants each (40 applicants, four packed ciphertexts),
    # every applicant scored alone first.
    ids = members(batched)[:40]
    sizes = [1, 2, 3, 4] * 4
    requests = [ids[sum(sizes[:i]) : sum(sizes[: i + 1])] for i in range(len(sizes))]
    lender = batched.nodes.stub("lender")
    alone = {
        i: lender.Score(scoring_pb2.ScoreRequest(ids=[i]), timeout=180).applicants[0] for i in ids
    }
    del batched.nodes.exchanges[:]

    # Act
    answers = concurrently(batched, requests)

    # Assert: the same probability and score to the last bit, each caller its own rows; and
    # the batch was real: fewer partner rounds than callers, one with several ciphertexts.
    for request, answer in zip(requests, answers, strict=True):
        assert isinstance(answer, list)
        assert [a.id for a in answer] == request
        for item in answer:
            assert item.probability == alone[item.id].probability
            assert item.score == alone[item.id].score
            assert item.grade == alone[item.id].grade and not item.error
    rounds = batched.nodes.calls("ecommerce", "PartialScore")
    assert len(rounds) < len(requests)
    assert max(len(scoring_pb2.ScoreIds.FromString(e.request).ids) for e in rounds) > (
        PER_CIPHERTEXT
    )


def test_more_concurrent_callers_than_the_default_rpc_threads_share_one_batch(
    batched: Batched,
) -> None:
    # A call waiting in a batch holds one of the lender's RPC threads: with 16 threads no batch
    # could ever hold more than 16 callers.
    ids = members(batched)[:30]
    del batched.nodes.exchanges[:]

    answers = concurrently(batched, [[i] for i in ids])

    assert [a[0].id for a in answers] == ids  # type: ignore[index]
    rounds = batched.nodes.calls("ecommerce", "PartialScore")
    assert max(len(scoring_pb2.ScoreIds.FromString(e.request).ids) for e in rounds) > 16


def test_a_batched_score_is_the_plain_sum_of_the_rounded_parts(batched: Batched) -> None:
    ids = members(batched)[40:70]
    answers = concurrently(batched, [ids[i : i + 3] for i in range(0, len(ids), 3)])

    p = np.array([a.probability for answer in answers for a in answer])  # type: ignore[attr-defined]
    z = np.log(p) - np.log1p(-p)
    lender = batched.parties["lender"]
    x, _ = lender.rows_for_ids(ids)
    plain = np.rint(lender.linear(x) * GRID) / GRID
    for host in HOSTS:
        xh, _ = batched.parties[host].rows_for_ids(ids)
        plain += round_partial(batched.parties[host].linear(xh), batched.precision_bits)
    assert np.abs(z - plain).max() < 1e-6


def test_partners_answer_a_batch_with_packed_ciphertexts_of_one_size_and_no_clear_partial(
    batched: Batched,
) -> None:
    # Arrange: two batches of the same size (27 applicants) over different applicants.
    ids = members(batched)[70:124]
    del batched.nodes.exchanges[:]

    # Act
    for half in (ids[:27], ids[27:]):
        concurrently(batched, [half[i : i + 3] for i in range(0, 27, 3)])

    # Assert: per round, the ciphertexts the key and the count of applicants give (three of
    # 13 slots for 27), at the score scale, the same size whoever is in it, and none of the
    # partner's rounded partial scores in any clear form.
    for host in HOSTS:
        sizes = {}
        for exchange in batched.nodes.calls(host, "PartialScore"):
            asked = list(scoring_pb2.ScoreIds.FromString(exchange.request).ids)
            reply = common_pb2.CipherMessage.FromString(exchange.response)
            assert reply.phase == PACKED_PARTIALS
            assert reply.vector.scale_bits == Z_SCALE_BITS
            assert reply.vector.count == -(-len(asked) // PER_CIPHERTEXT)
            sizes.setdefault(len(asked), set()).add(len(exchange.response))
            forms = partial_bytes(batched.parties[host], asked, batched.precision_bits)
            assert len(forms) >= 6 * len(asked) - 6
            for form in forms:
                assert form not in exchange.response
        assert all(len(lengths) == 1 for lengths in sizes.values()), sizes
        assert sum(sizes) >= 27


def test_the_coordinator_gets_one_masked_slot_per_applicant_at_the_one_score_width(
    batched: Batched,
) -> None:
    ids = members(batched)[124:160]
    del batched.nodes.exchanges[:]

    concurrently(batched, [ids[i : i + 4] for i in range(0, len(ids), 4)])

    rounds = sorted(
        len(scoring_pb2.ScoreIds.FromString(e.request).ids)
        for e in batched.nodes.calls("ecommerce", "PartialScore")
    )
    decryptions = [
        coordinator_pb2.DecryptRequest.FromString(e.request)
        for e in batched.nodes.calls(COORDINATOR, "DecryptMasked")
    ]
    assert sorted(d.packed.count for d in decryptions) == rounds
    assert {d.packed.slot_bits for d in decryptions} == {score_value_bits() + SLOT_EXTRA_BITS}
    assert {d.packed.value_bits for d in decryptions} == {score_value_bits()}
    assert {d.phase for d in decryptions} == {"score"}
    assert not batched.nodes.unrecorded


def test_each_partner_counts_every_applicant_of_a_batch_against_the_quota(
    batched: Batched,
) -> None:
    # Arrange: what each partner's audit log holds before.
    def answered(host: str) -> tuple[int, int]:
        lines = []
        for path in sorted((batched.nodes.node_home(host) / "audit").glob("scoring-*.jsonl")):
            lines += [json.loads(t) for t in path.read_text(encoding="utf-8").splitlines()]
        granted = [line for line in lines if "reason" not in line]
        return len(granted), sum(int(line["count"]) for line in granted)

    before = {host: answered(host) for host in HOSTS}
    ids = members(batched)[:30]
    del batched.nodes.exchanges[:]

    # Act: ten callers of three applicants each.
    concurrently(batched, [ids[i : i + 3] for i in range(0, len(ids), 3)])

    # Assert: one line per round, and the rounds' counts add up to the 30 applicants.
    for host in HOSTS:
        lines, applicants = answered(host)
        assert lines - before[host][0] == len(batched.nodes.calls(host, "PartialScore"))
        assert applicants - before[host][1] == len(ids)


def test_a_failing_batch_fails_only_its_own_callers(refusing: Batched) -> None:
    # Arrange: a partner that refuses any request holding an id it lacks, and one caller
    # asking for such an id among callers asking for customers every partner holds.
    known = members(refusing)[:24]
    lacked = sorted(set(refusing.parties["lender"].ids) - set(refusing.parties["ecommerce"].ids))
    requests = [known[i : i + 3] for i in range(0, len(known), 3)]
    requests.insert(3, [lacked[0]])

    # Act
    answers = concurrently(refusing, requests)
    later = refusing.nodes.score(known[:3])

    # Assert: exactly the callers that shared a round with the lacked id failed; it failed too;
    # every other caller got its scores, and the next call is served.
    batches = [
        set(scoring_pb2.ScoreIds.FromString(e.request).ids)
        for e in refusing.nodes.calls("ecommerce", "PartialScore")
    ]
    spoiled = set().union(*(b for b in batches if lacked[0] in b))
    for request, answer in zip(requests, answers, strict=True):
        if set(request) <= spoiled:
            assert isinstance(answer, grpc.RpcError)
            assert "unknown_ids" in (answer.details() or "")  # type: ignore[attr-defined]
        else:
            assert isinstance(answer, list) and [a.id for a in answer] == request
            assert all(not a.error for a in answer)
    assert isinstance(answers[3], grpc.RpcError)
    assert sum(isinstance(a, list) for a in answers) >= len(requests) - 3
    assert [a.id for a in later] == known[:3] and not any(a.error for a in later)
