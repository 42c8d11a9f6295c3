"""Stability monitoring on real nodes: the score's PSI and every party's column CSI for a
population, against the reference stored with the model at training.

Real nodes built by ``build_node`` on 127.0.0.1:0 with mutual TLS and 1024-bit keys, a model
trained by a real driver over 1,200 synthetic customers. Expected figures are computed plainly
here, from the parties' files, the stored model parts and the scores the lender's ``Score``
RPC gives.
"""

from __future__ import annotations

import csv
import json
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from fedcredit.config import Federation, load_federation
from fedcredit.decision.stability import FeatureStability, ScoreBaseline, score_stability
from fedcredit.driver.monitor import column_stability, population_scores
from fedcredit.driver.scoring import ScoringSession
from fedcredit.model.binning import Binning
from fedcredit.node.runtime import NodeOptions, build_node
from fedcredit.node.stability import MIN_STABILITY_IDS
from fedcredit.node.transport.client import open_channel
from fedcredit.node.transport.peers import COORDINATOR, Peers, PeerStubs
from fedcredit.proto.v1 import common_pb2, coordinator_pb2, scoring_pb2
from tests.support.federation import InProcessNodes, demo_federation, start_nodes
from tests.support.recorder import Exchange, Recorder

pytestmark = pytest.mark.slow

PARTIES = ("lender", "ecommerce", "payments")
SHIFTED_COLUMN = "orders_per_year"


@dataclass
class Trained:
    fed: Federation
    folder: Path
    model_dir: Path
    data: dict[str, dict[str, dict[str, float]]]  # party -> id -> column -> value

    def held_by_all(self) -> list[str]:
        lender = self.data["lender"]
        return [i for i in lender if all(i in self.data[p] for p in PARTIES[1:])]

    def part(self, party: str) -> dict[str, object]:
        return dict(json.loads((self.model_dir / f"{party}.json").read_text()))


@dataclass
class Monitoring:
    nodes: InProcessNodes
    session: ScoringSession
    exchanges: list[Exchange]


def read_party(path: Path) -> dict[str, dict[str, float]]:
    with path.open(encoding="utf-8") as handle:
        return {
            row.pop("id"): {k: float(v) for k, v in row.items() if k != "default"}
            for row in csv.DictReader(handle)
        }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    folder = tmp_path_factory.mktemp("monitor-nodes")
    fed = load_federation(demo_federation(folder, customers=1200), allow_small_keys=True)
    nodes = start_nodes(fed, folder / "train")
    try:
        driver = nodes.new_driver()
        driver.run(folder / "train" / "run")
        driver.peers.close()
    finally:
        nodes.close()
    data = {p: read_party(folder / "data" / f"{p}.csv") for p in PARTIES}
    yield Trained(fed, folder, folder / "train" / "run" / "model", data)


@pytest.fixture(scope="module")
def monitoring(trained: Trained) -> Iterator[Monitoring]:
    home = trained.folder / "monitoring"
    exchanges: list[Exchange] = []
    unrecorded: list[str] = []
    nodes = start_nodes(
        trained.fed,
        home,
        interceptors={"ecommerce": [Recorder("ecommerce", exchanges, unrecorded)]},
        model_dir=trained.model_dir,
        state_dir=lambda name: home / "state" / name,
    )
    try:
        operator = Peers(
            nodes.addresses,
            "lender",
            credentials=nodes.credentials(COORDINATOR),
            own_name=COORDINATOR,
        )
        env = common_pb2.Envelope(job_id="monitor-test", seq=1)
        request = coordinator_pb2.StartJobRequest(env=env, key_bits=nodes.fed.key_bits)
        operator.call(COORDINATOR, lambda s: s.coordinator.StartJob, request, 120.0)
        operator.close()
        session = ScoringSession(
            nodes.party("lender", "lender"),
            dict(nodes.addresses),
            nodes.credentials("lender"),
            "lender",
        )
        yield Monitoring(nodes, session, exchanges)
    finally:
        nodes.close()


def plain_index(expected: np.ndarray, actual: np.ndarray) -> float:
    p = np.maximum(expected / expected.sum(), 1e-4)
    q = np.maximum(actual / actual.sum(), 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def plain_csi(trained: Trained, party: str, ids: list[str]) -> dict[str, float]:
    reference = trained.part(party)["stability_reference"]
    assert isinstance(reference, dict)
    found = {}
    for column in reference["columns"]:
        binning = Binning.from_dict(column["binning"])
        values = np.array([trained.data[party][i][column["feature"]] for i in ids])
        actual = np.bincount(binning.transform(values), minlength=binning.n_bins)
        found[column["feature"]] = plain_index(np.array(column["counts"], float), actual)
    return found


def plain_psi(trained: Trained, scores: np.ndarray) -> float:
    baseline = trained.part("lender")["score_baseline"]
    assert isinstance(baseline, dict)
    index = np.searchsorted(np.array(baseline["edges"]), scores, side="right")
    actual = np.bincount(index, minlength=len(baseline["counts"]))
    return plain_index(np.array(baseline["counts"], float), actual)


def shifted_ids(trained: Trained) -> list[str]:
    """Customers of every party whose e-commerce orders per year are in the top 30 %."""
    ids = trained.held_by_all()
    orders = np.array([trained.data["ecommerce"][i][SHIFTED_COLUMN] for i in ids])
    cut = np.quantile(orders, 0.7)
    return [i for i, v in zip(ids, orders, strict=True) if v > cut]


def by_name(features: list[FeatureStability]) -> dict[tuple[str, str], FeatureStability]:
    return {(f.party, f.feature): f for f in features}


def test_the_model_stores_the_score_deciles_and_each_partys_column_reference(
    trained: Trained,
) -> None:
    lender = trained.part("lender")
    ecommerce = trained.part("ecommerce")

    assert len(lender["score_baseline"]["counts"]) == 10  # type: ignore[index]
    assert "score_baseline" not in ecommerce
    reference = ecommerce["stability_reference"]
    names = [c["feature"] for c in reference["columns"]]  # type: ignore[index]
    assert names == list(next(iter(trained.data["ecommerce"].values())))


def test_the_training_population_reads_stable(trained: Trained, monitoring: Monitoring) -> None:
    ids = list(trained.data["lender"])

    scores, unscored = population_scores(monitoring.session, ids)
    features = column_stability(monitoring.session, PARTIES, ids)

    assert unscored == 0
    assert plain_psi(trained, scores) < 0.1
    assert len(features) == sum(len(next(iter(trained.data[p].values()))) for p in PARTIES)
    assert {f.status for f in features} == {"stable"}, [f for f in features if f.csi >= 0.1]


def test_a_shifted_population_is_flagged_and_the_indices_equal_a_plain_computation(
    trained: Trained, monitoring: Monitoring
) -> None:
    ids = shifted_ids(trained)
    assert len(ids) >= MIN_STABILITY_IDS

    scores, _ = population_scores(monitoring.session, ids)
    features = by_name(column_stability(monitoring.session, PARTIES, ids))

    shifted = features[("ecommerce", SHIFTED_COLUMN)]
    assert shifted.status == "act"
    for party in PARTIES:
        for feature, csi in plain_csi(trained, party, ids).items():
            assert features[(party, feature)].csi == pytest.approx(csi, rel=1e-12, abs=1e-12)
    baseline = ScoreBaseline.from_dict(trained.part("lender")["score_baseline"])  # type: ignore[arg-type]
    assert score_stability(baseline, scores).psi == pytest.approx(plain_psi(trained, scores))


def test_only_the_index_values_leave_a_partner(trained: Trained, monitoring: Monitoring) -> None:
    ids = trained.held_by_all()[:200]
    monitoring.exchanges.clear()

    column_stability(monitoring.session, ["ecommerce"], ids)

    (exchange,) = [e for e in monitoring.exchanges if e.method.endswith("/Stability")]
    assert exchange.caller == "lender"
    reply = scoring_pb2.StabilityReply.FromString(exchange.response)
    rebuilt = scoring_pb2.StabilityReply()
    for item in reply.columns:
        rebuilt.columns.add(feature=item.feature, csi=item.csi)
    assert exchange.response == rebuilt.SerializeToString()  # names and indices, nothing else
    reference = trained.part("ecommerce")["stability_reference"]
    for column in reference["columns"]:  # type: ignore[index]
        for edge in column["binning"].get("edges", []):
            assert struct.pack("<d", edge) not in exchange.response
    assert len(reply.columns) == len(reference["columns"])  # type: ignore[index]


def test_a_stability_query_is_counted_and_logged_like_a_partial_score(
    trained: Trained, monitoring: Monitoring
) -> None:
    ids = trained.held_by_all()[:150]
    audit = trained.folder / "monitoring" / "state" / "payments" / "audit"

    column_stability(monitoring.session, ["payments"], ids)

    lines = [
        json.loads(line)
        for p in sorted(audit.glob("scoring-*.jsonl"))
        for line in p.read_text().splitlines()
    ]
    mine = [line for line in lines if line.get("query") == "stability" and line["count"] == 150]
    assert mine and mine[-1]["caller"] == "lender" and mine[-1]["answered"] is True
    assert len(mine[-1]["ids"]) == 150 and ids[0] not in json.dumps(mine[-1])


def test_a_partner_answers_no_one_but_the_lender(trained: Trained, monitoring: Monitoring) -> None:
    stub = monitoring.nodes.party("payments", "ecommerce")
    request = scoring_pb2.StabilityRequest(ids=trained.held_by_all()[:150])

    with pytest.raises(grpc.RpcError) as info:
        stub.scoring.Stability(request, timeout=60)

    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert "only given to the lender" in info.value.details()  # type: ignore[attr-defined]


def test_a_query_about_too_few_applicants_is_refused(
    trained: Trained, monitoring: Monitoring
) -> None:
    stub = monitoring.nodes.party("lender", "ecommerce")
    request = scoring_pb2.StabilityRequest(ids=trained.held_by_all()[: MIN_STABILITY_IDS - 1])

    with pytest.raises(grpc.RpcError) as info:
        stub.scoring.Stability(request, timeout=60)

    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert f"at least {MIN_STABILITY_IDS}" in info.value.details()  # type: ignore[attr-defined]


def test_a_partner_whose_model_part_has_no_reference_refuses_in_one_line(
    trained: Trained, monitoring: Monitoring, tmp_path: Path
) -> None:
    old = tmp_path / "old-model"
    shutil.copytree(trained.model_dir, old)
    part = json.loads((old / "ecommerce.json").read_text())
    del part["stability_reference"]
    (old / "ecommerce.json").write_text(json.dumps(part))
    nodes = monitoring.nodes
    options = NodeOptions(
        name="ecommerce",
        listen="127.0.0.1:0",
        cert_dir=nodes.certs.ca.parent,
        allow_small_keys=True,
        model_dir=old,
        peers=tuple(nodes.addresses.items()),
        state_dir=tmp_path / "state",
    )
    server = build_node(trained.fed, options)
    port = server.start()
    channel = open_channel(
        f"127.0.0.1:{port}",
        party_name="ecommerce",
        credentials=nodes.credentials("lender"),
        self_name="lender",
    )
    try:
        with pytest.raises(grpc.RpcError) as info:
            PeerStubs(channel).scoring.Stability(
                scoring_pb2.StabilityRequest(ids=trained.held_by_all()[:150]), timeout=60
            )
    finally:
        channel.close()
        server.stop(0)

    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    details = info.value.details()  # type: ignore[attr-defined]
    assert "no stability reference" in details and "\n" not in details
