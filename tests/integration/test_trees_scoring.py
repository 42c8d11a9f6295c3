"""Scoring with a trees model on real nodes: in-process servers with real mutual TLS and 1024-bit
keys, a model trained by the real driver, the lender's Score RPC called with the lender's own
certificate (as ``fedcredit score`` does), against ``LocalTrees.score`` on the same files."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from fedcredit.config import Federation, load_federation
from fedcredit.model.logistic import sigmoid
from fedcredit.model.scorecard import PARTNERS, Scorecard
from fedcredit.proto.v1 import scoring_pb2
from fedcredit.protocol.trees.local import LocalTrees
from fedcredit.protocol.trees.scoring import explain
from tests.integration.test_trees_nodes import local_run, trees_federation
from tests.support.federation import InProcessNodes, start_nodes

pytestmark = pytest.mark.slow


@dataclass
class Trained:
    fed: Federation
    folder: Path
    model_dir: Path
    ids: list[str]


def train(folder: Path, mode: str, extra: str = "") -> Trained:
    path = trees_federation(folder, mode=mode, trees=4 if mode == "mix" else 3, extra=extra)
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
    return Trained(fed, folder, folder / "train" / "run" / "model", ids)


def scoring_nodes(trained: Trained, home: Path) -> InProcessNodes:
    return start_nodes(
        trained.fed, home, model_dir=trained.model_dir, state_dir=lambda n: home / "state" / n
    )


def score(nodes: InProcessNodes, ids: list[str]) -> list[scoring_pb2.ScoredApplicant]:
    reply = nodes.party("lender", "lender").Score(scoring_pb2.ScoreRequest(ids=ids), timeout=120)
    return list(reply.applicants)


def local_margins(fed: Federation, ids: list[str]) -> np.ndarray:
    lender, partners = local_run(fed)
    return LocalTrees(lender, partners, key_bits=1024, allow_small=True).score(ids)


# With "mean" an id a partner lacks is a row of missing values, as in LocalTrees.score.
MEAN = '\n[scoring]\nunknown_ids = "mean"\n'


@pytest.fixture(scope="module", params=["mix", "joint"])
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train(tmp_path_factory.mktemp(f"trees-score-{request.param}"), request.param, MEAN)


@pytest.fixture(scope="module")
def nodes(trained: Trained) -> Iterator[InProcessNodes]:
    started = scoring_nodes(trained, trained.folder / "scoring")
    try:
        yield started
    finally:
        started.close()


def test_score_on_a_trees_model_gives_the_in_process_probabilities(
    trained: Trained, nodes: InProcessNodes
) -> None:
    ids = [*trained.ids[:200], "nobody-at-all"]

    scored = score(nodes, ids)
    z = local_margins(trained.fed, trained.ids[:200])

    assert [s.id for s in scored] == ids
    assert scored[-1].error == "not in the lender's data"
    got = np.array([s.probability for s in scored[:-1]])
    np.testing.assert_allclose(got, sigmoid(z), rtol=0, atol=1e-9)
    card = Scorecard()
    np.testing.assert_allclose([s.score for s in scored[:-1]], card.score_from_logit(z), atol=1e-9)
    assert [s.grade for s in scored[:-1]] == card.grade(card.score_from_logit(z)).tolist()


def test_reasons_name_the_lenders_columns_and_the_partners_as_one(
    trained: Trained, nodes: InProcessNodes
) -> None:
    scored = score(nodes, trained.ids[:200])

    names = json.loads((trained.model_dir / "lender.json").read_text())["feature_names"]
    reasons = [r for s in scored for r in s.reasons.split(";") if r]
    assert reasons and set(reasons) <= {*names, PARTNERS}
    assert not {"ecommerce", "payments"} & set(reasons)


def test_the_path_attribution_adds_up_to_the_margin(trained: Trained) -> None:
    lender, partners = local_run(trained.fed)
    ids = trained.ids[:100]
    answers = {p.name: p.answer_ids(ids) for p in partners}
    raw, _ = lender.raw_for_ids(ids)
    bins = lender.bins_for(raw)

    out = explain(
        lender.model[: lender.kept], lender.name, lender.base, bins, lender.n_regular, answers
    )

    np.testing.assert_allclose(
        out.reference + out.own.sum(axis=1) + out.partners, out.margins, rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(out.margins, lender.margins(raw, answers), rtol=0, atol=1e-12)
    # The expected value is over the training rows' cover: their mean margin.
    train = lender._require_split().train
    assert out.reference == pytest.approx(float(lender.kept_margins(train).mean()), abs=1e-9)
    assert np.any(out.own != 0.0) and np.any(out.partners != 0.0)


def test_a_model_saved_without_cover_scores_the_same_with_even_cover_reasons(
    trained: Trained, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lender, partners = local_run(trained.fed)
    ids = trained.ids[:50]
    answers = {p.name: p.answer_ids(ids) for p in partners}
    raw, _ = lender.raw_for_ids(ids)
    part = lender.model_part()
    assert all(len(t["cover"]) == len(t["split_by"]) for t in part["trees"])
    for t in part["trees"]:
        del t["cover"]
    old = local_run(trained.fed)[0]

    with caplog.at_level("WARNING"):
        old.load_model_part(part)

    assert "saved without per-node cover" in caplog.text and "'lender'" in caplog.text
    np.testing.assert_allclose(old.margins(raw, answers), lender.margins(raw, answers), atol=1e-12)
    bins = old.bins_for(raw)
    out = explain(old.model, old.name, old.base, bins, old.n_regular, answers)
    np.testing.assert_allclose(
        out.reference + out.own.sum(axis=1) + out.partners, out.margins, rtol=0, atol=1e-9
    )


def test_a_trees_partner_keeps_its_quota_and_audit_log(tmp_path: Path) -> None:
    trained = train(tmp_path, "mix", "\n[scoring]\nquota_per_day = 60\n")
    nodes = scoring_nodes(trained, tmp_path / "scoring")
    try:
        assert len(score(nodes, trained.ids[:50])) == 50
        with pytest.raises(grpc.RpcError) as refused:
            score(nodes, trained.ids[50:70])
        # The partner refuses its own answer directly too: only the lender may ask.
        with pytest.raises(grpc.RpcError) as direct:
            nodes.party("payments", "ecommerce").trees.ScoreTrees(
                scoring_pb2.ScoreIds(ids=trained.ids[:3]), timeout=60
            )
    finally:
        nodes.close()

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "quota_per_day" in refused.value.details()
    assert direct.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "only given to the lender" in direct.value.details()
    audit = sorted((tmp_path / "scoring" / "state" / "ecommerce" / "audit").glob("scoring-*.jsonl"))
    records = [json.loads(line) for f in audit for line in f.read_text().splitlines()]
    assert [(r["caller"], r["count"], r["answered"]) for r in records] == [
        ("lender", 50, True),
        ("lender", 20, False),
        ("payments", 3, False),
    ]
