"""Credit decisions served by the lender's node: the ``Decide`` RPC, invitations delivered to a
partner (ids only), and concurrent calls batched at the lender.

Real nodes built by ``build_node`` on 127.0.0.1:0 with mutual TLS and 1024-bit keys, a model
trained by a real driver. Expected decisions come from ``tests.support.decisions`` (the policy
computed plainly) over the scores the lender's ``Score`` RPC gives for the same applicants.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from fedcredit.config import Federation, load_federation
from fedcredit.driver.decisions import (
    approved,
    decide_chunk,
    decide_common,
    deliver_invitations,
)
from fedcredit.driver.scoring import ScoringSession
from fedcredit.node.runtime import NodeOptions, build_node
from fedcredit.node.transport.client import RemoteCallError, call, open_channel
from fedcredit.node.transport.peers import COORDINATOR, Peers, PeerStubs
from fedcredit.proto.v1 import common_pb2, coordinator_pb2, scoring_pb2
from tests.support.decisions import plain_decision
from tests.support.federation import InProcessNodes, demo_federation, start_nodes
from tests.support.recorder import Exchange, Recorder

pytestmark = pytest.mark.slow

# The synthetic population scores 480-590: cut-offs that split it into all three decisions.
POLICY = {"approve_score": 540.0, "refer_score": 520.0, "best_offer_score": 580.0}
POLICY_TOML = "\n[policy]\n" + "".join(f"{k} = {v}\n" for k, v in POLICY.items())


@dataclass
class Trained:
    fed: Federation
    folder: Path
    model_dir: Path
    ids: list[str]


@dataclass
class Scoring:
    nodes: InProcessNodes
    session: ScoringSession
    exchanges: list[Exchange]
    unrecorded: list[str]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    folder = tmp_path_factory.mktemp("decide-nodes")
    path = demo_federation(folder, customers=400)
    path.write_text(path.read_text() + POLICY_TOML)
    fed = load_federation(path, allow_small_keys=True)
    nodes = start_nodes(fed, folder / "train")
    try:
        driver = nodes.new_driver()
        driver.run(folder / "train" / "run")
        driver.peers.close()
    finally:
        nodes.close()
    with (folder / "data" / "lender.csv").open(encoding="utf-8") as handle:
        ids = [row["id"] for row in csv.DictReader(handle)]
    yield Trained(fed, folder, folder / "train" / "run" / "model", ids)


def start_scoring(trained: Trained, home: Path, *, record: bool) -> Scoring:
    exchanges: list[Exchange] = []
    unrecorded: list[str] = []
    interceptors = {"ecommerce": [Recorder("ecommerce", exchanges, unrecorded)]} if record else {}
    nodes = start_nodes(
        trained.fed,
        home,
        interceptors=interceptors,
        model_dir=trained.model_dir,
        state_dir=lambda name: home / "state" / name,
    )
    session = ScoringSession(
        nodes.party("lender", "lender"),
        dict(nodes.addresses),
        nodes.credentials("lender"),
        "lender",
    )
    return Scoring(nodes, session, exchanges, unrecorded)


def start_scoring_job(nodes: InProcessNodes) -> None:
    """What ``fedcredit score`` does before scoring: a fresh coordinator key."""
    operator = Peers(
        nodes.addresses, "lender", credentials=nodes.credentials(COORDINATOR), own_name=COORDINATOR
    )
    env = common_pb2.Envelope(job_id="decide-test", seq=1)
    request = coordinator_pb2.StartJobRequest(env=env, key_bits=nodes.fed.key_bits)
    operator.call(COORDINATOR, lambda s: s.coordinator.StartJob, request, 120.0)
    operator.close()


@pytest.fixture(scope="module")
def scoring(trained: Trained) -> Iterator[Scoring]:
    started = start_scoring(trained, trained.folder / "scoring", record=True)
    try:
        start_scoring_job(started.nodes)
        yield started
    finally:
        started.nodes.close()


def score(scoring: Scoring, ids: list[str]) -> list[scoring_pb2.ScoredApplicant]:
    reply = scoring.session.stub.Score(scoring_pb2.ScoreRequest(ids=ids), timeout=120)
    return list(reply.applicants)


def test_decide_matches_the_policy_computed_plainly_on_the_scores(
    trained: Trained, scoring: Scoring
) -> None:
    ids = trained.ids[:80]
    scored = score(scoring, ids)

    decisions = decide_chunk(scoring.session, ids)

    assert [d.applicant_id for d in decisions] == ids
    for item, decision in zip(scored, decisions, strict=True):
        reasons = [r for r in item.reasons.split(";") if r]
        expected = plain_decision(POLICY, item.score, reasons)
        assert decision.score == pytest.approx(item.score, abs=1e-9)
        assert decision.grade == item.grade
        got = (decision.decision, decision.limit, decision.apr, decision.instalments)
        assert got == (expected.decision, expected.limit, expected.apr, expected.instalments)
        assert decision.reasons == expected.reasons
    assert {d.decision for d in decisions} == {"approve", "refer", "decline"}


def test_decide_refers_an_applicant_the_lender_does_not_hold(scoring: Scoring) -> None:
    (decision,) = decide_chunk(scoring.session, ["NOBODY"])

    assert (decision.decision, decision.score, decision.offer) == ("refer", None, None)
    assert decision.reasons == ("not in the lender's data",)


def test_decide_is_refused_to_anyone_but_the_lenders_operator(
    trained: Trained, scoring: Scoring
) -> None:
    stub = scoring.nodes.party("ecommerce", "lender")

    with pytest.raises(grpc.RpcError) as info:
        stub.scoring.Decide(scoring_pb2.DecideRequest(ids=trained.ids[:1]), timeout=30)

    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert "operator" in info.value.details()  # type: ignore[attr-defined]


def test_decide_without_a_policy_is_refused_naming_the_table(
    trained: Trained, scoring: Scoring, tmp_path: Path
) -> None:
    nodes = scoring.nodes
    options = NodeOptions(
        name="lender",
        listen="127.0.0.1:0",
        cert_dir=nodes.certs.ca.parent,
        allow_small_keys=True,
        model_dir=trained.model_dir,
        peers=tuple(nodes.addresses.items()),
        state_dir=tmp_path,
    )
    server = build_node(trained.fed.replace(policy=None), options)
    port = server.start()
    channel = open_channel(
        f"127.0.0.1:{port}",
        party_name="lender",
        credentials=nodes.credentials("lender"),
        self_name="lender",
    )
    try:
        with pytest.raises(grpc.RpcError) as info:
            PeerStubs(channel).scoring.Decide(
                scoring_pb2.DecideRequest(ids=trained.ids[:1]), timeout=30
            )
    finally:
        channel.close()
        server.stop(0)

    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert "[policy]" in info.value.details()  # type: ignore[attr-defined]


def test_invite_delivers_the_invited_ids_and_nothing_else(
    trained: Trained, scoring: Scoring
) -> None:
    decisions = decide_chunk(scoring.session, trained.ids[:80])
    invited = [d.applicant_id for d in approved(decisions)]
    assert invited, "some applicants should be approved"
    offers = {str(d.limit) for d in approved(decisions)} | {
        f"{d.apr:.3f}" for d in approved(decisions)
    }
    del scoring.exchanges[:]

    receipt = deliver_invitations(scoring.session, "ecommerce", invited)

    (exchange,) = scoring.exchanges
    assert exchange.method.endswith("/DeliverInvitations") and exchange.caller == "lender"
    # The exact bytes that reached the partner are a list of ids and nothing more.
    assert exchange.request == scoring_pb2.Invitations(ids=invited).SerializeToString()
    for text in (*offers, "approve", "refer", "decline"):
        assert text.encode() not in exchange.request
    assert receipt.received == len(invited)
    written = trained.folder / "scoring" / "state" / "ecommerce" / "invitations" / receipt.file
    with written.open(encoding="utf-8") as handle:
        assert [row["id"] for row in csv.DictReader(handle)] == invited
    assert not scoring.unrecorded


def test_no_score_grade_or_offer_ever_reaches_the_partner(
    trained: Trained, scoring: Scoring
) -> None:
    del scoring.exchanges[:]
    decisions = decide_chunk(scoring.session, trained.ids[80:120])
    deliver_invitations(scoring.session, "ecommerce", [d.applicant_id for d in approved(decisions)])

    methods = {e.method.rsplit("/", 1)[1] for e in scoring.exchanges}
    assert methods <= {"PartialScore", "DeliverInvitations"}
    for exchange in scoring.exchanges:
        if exchange.method.endswith("/PartialScore"):
            request = scoring_pb2.ScoreIds.FromString(exchange.request)
            assert set(request.ids) <= set(trained.ids[80:120])
            # Nothing but the envelope and the ids: re-encoding them gives the same bytes.
            assert request.SerializeToString() == exchange.request
            assert request.ListFields()[-1][0].name == "ids"


def test_invitations_are_refused_from_anyone_but_the_lender(
    trained: Trained, scoring: Scoring
) -> None:
    stub = scoring.nodes.party("payments", "ecommerce")

    with pytest.raises(grpc.RpcError) as info:
        stub.scoring.DeliverInvitations(scoring_pb2.Invitations(ids=trained.ids[:3]), timeout=30)

    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]


def test_concurrent_calls_each_get_their_own_rows_in_fewer_partner_rounds(
    trained: Trained, scoring: Scoring
) -> None:
    requests = [trained.ids[120 + 3 * i : 123 + 3 * i] for i in range(12)]
    alone = {pid: item for r in requests for pid, item in zip(r, score(scoring, r), strict=True)}
    del scoring.exchanges[:]
    answers: list[list[scoring_pb2.ScoredApplicant]] = [[] for _ in requests]
    barrier = threading.Barrier(len(requests))

    def one(i: int) -> None:
        barrier.wait()
        answers[i] = score(scoring, requests[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for request, answer in zip(requests, answers, strict=True):
        assert [item.id for item in answer] == request
        for item in answer:
            assert item.score == pytest.approx(alone[item.id].score, abs=1e-9)
    rounds = sum(e.method.endswith("/PartialScore") for e in scoring.exchanges)
    assert rounds < len(requests)


def test_decide_for_the_common_customers_after_private_alignment(
    trained: Trained, tmp_path: Path
) -> None:
    started = start_scoring(trained, tmp_path, record=False)
    try:
        driver = started.nodes.new_driver(
            state_dirs={p.name: str(tmp_path / "state" / p.name) for p in trained.fed.parties}
        )
        aligned = driver.align_only()
        driver.peers.close()

        decisions = decide_common(started.session)
    finally:
        started.nodes.close()

    assert len(decisions) == aligned["common"] > 0
    assert len({d.applicant_id for d in decisions}) == len(decisions)
    assert set(d.applicant_id for d in decisions) <= set(trained.ids)
    assert all(d.score is not None for d in decisions)


def test_decide_with_ids_and_common_customers_is_refused(
    trained: Trained, scoring: Scoring
) -> None:
    request = scoring_pb2.DecideRequest(ids=trained.ids[:1], common_customers=True)

    with pytest.raises(RemoteCallError) as info:
        call(scoring.session.stub.scoring.Decide, request, party="lender", timeout_s=30)

    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
