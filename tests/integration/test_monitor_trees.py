"""Stability monitoring of a trees model on real nodes, and its report's decision mix.

A trees model (``[model] family = "trees"``, mix mode) trained by the real driver over
in-process nodes with mutual TLS and 1024-bit keys on 1,000 synthetic customers, with a
``[policy]``. The lender's model part holds the test rows' score deciles and every party's
part the reference of its own raw columns, as the logistic family's do; ``fedcredit monitor``'s
driver functions then score a population through the lender's ``Score`` RPC and ask each
party for its columns' CSI. Expected figures are computed plainly here, from the parties'
files and the stored parts. The run's report and a monitoring page are then rendered in
headless Chromium, when it is installed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fedcredit.cli.monitor import link_from_report
from fedcredit.cli.progress import Progress
from fedcredit.config import Federation, load_federation
from fedcredit.decision.monitoring import MONITOR_HTML, Population, write_monitor
from fedcredit.decision.stability import (
    FeatureStability,
    ScoreBaseline,
    StabilityReport,
    score_stability,
)
from fedcredit.driver.monitor import column_stability, population_scores
from fedcredit.driver.scoring import ScoringSession
from fedcredit.model.binning import Binning
from fedcredit.node.stability import MIN_STABILITY_IDS
from fedcredit.node.transport.peers import COORDINATOR, Peers
from fedcredit.proto.v1 import common_pb2, coordinator_pb2
from tests.support.browser import TAB_BLUE, colour_pixels, ink_share, needs_chromium, screenshot
from tests.support.federation import demo_federation, start_nodes
from tests.support.report import Page, broken_references

pytestmark = pytest.mark.slow

PARTIES = ("lender", "ecommerce", "payments")
SHIFTED_COLUMN = "orders_per_year"
TREES = """
[model]
family = "trees"

[trees]
trees = 3
depth = 2
bins = 8
min_rows = 5
mode = "mix"

[policy]
approve_score = {approve}
refer_score = {refer}
best_offer_score = 700
"""


@dataclass
class Trained:
    fed: Federation
    run: Path
    data: dict[str, dict[str, dict[str, float]]]  # party -> id -> column -> value
    events: list[tuple[str, dict[str, object]]]  # the driver's progress, in order

    def part(self, party: str) -> dict[str, object]:
        return dict(json.loads((self.run / "model" / f"{party}.json").read_text()))

    def held_by_all(self) -> list[str]:
        return [i for i in self.data["lender"] if all(i in self.data[p] for p in PARTIES[1:])]


def read_party(path: Path) -> dict[str, dict[str, float]]:
    with path.open(encoding="utf-8") as handle:
        return {
            row.pop("id"): {k: float(v) for k, v in row.items() if k != "default"}
            for row in csv.DictReader(handle)
        }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    folder = tmp_path_factory.mktemp("monitor-trees")
    path = demo_federation(folder, customers=1000, binning=False)
    # Cut-offs around the middle of the default scorecard, so more than one decision occurs.
    path.write_text(path.read_text() + TREES.format(approve=560, refer=520))
    fed = load_federation(path, allow_small_keys=True)
    nodes = start_nodes(fed, folder / "train")
    events: list[tuple[str, dict[str, object]]] = []
    try:
        driver = nodes.new_driver(progress=lambda kind, info: events.append((kind, dict(info))))
        driver.run(folder / "train" / "run")
        driver.peers.close()
    finally:
        nodes.close()
    data = {p: read_party(folder / "data" / f"{p}.csv") for p in PARTIES}
    yield Trained(fed, folder / "train" / "run", data, events)


@pytest.fixture(scope="module")
def session(trained: Trained) -> Iterator[ScoringSession]:
    home = trained.run.parent.parent / "monitoring"
    nodes = start_nodes(
        trained.fed,
        home,
        model_dir=trained.run / "model",
        state_dir=lambda name: home / "state" / name,
    )
    try:
        operator = Peers(
            nodes.addresses, "lender", credentials=nodes.credentials(COORDINATOR),
            own_name=COORDINATOR,
        )  # fmt: skip
        env = common_pb2.Envelope(job_id="monitor-trees", seq=1)
        request = coordinator_pb2.StartJobRequest(env=env, key_bits=nodes.fed.key_bits)
        operator.call(COORDINATOR, lambda s: s.coordinator.StartJob, request, 120.0)
        operator.close()
        yield ScoringSession(
            nodes.party("lender", "lender"),
            dict(nodes.addresses),
            nodes.credentials("lender"),
            "lender",
        )
    finally:
        nodes.close()


def plain_index(expected: np.ndarray, actual: np.ndarray) -> float:
    p = np.maximum(expected / expected.sum(), 1e-4)
    q = np.maximum(actual / actual.sum(), 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def plain_psi(trained: Trained, scores: np.ndarray) -> float:
    baseline = trained.part("lender")["score_baseline"]
    assert isinstance(baseline, dict)
    index = np.searchsorted(np.array(baseline["edges"]), scores, side="right")
    actual = np.bincount(index, minlength=len(baseline["counts"]))
    return plain_index(np.array(baseline["counts"], float), actual)


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


def by_name(features: list[FeatureStability]) -> dict[tuple[str, str], FeatureStability]:
    return {(f.party, f.feature): f for f in features}


def test_a_trees_model_stores_ten_score_bins_and_each_partys_column_reference(
    trained: Trained,
) -> None:
    lender, ecommerce = trained.part("lender"), trained.part("ecommerce")

    assert lender["family"] == ecommerce["family"] == "trees"
    assert len(lender["score_baseline"]["counts"]) == 10  # type: ignore[index]
    assert "score_baseline" not in ecommerce
    reference = ecommerce["stability_reference"]
    names = [c["feature"] for c in reference["columns"]]  # type: ignore[index]
    assert names == list(next(iter(trained.data["ecommerce"].values())))


def test_the_training_population_of_a_trees_model_reads_stable(
    trained: Trained, session: ScoringSession
) -> None:
    ids = list(trained.data["lender"])

    scores, unscored = population_scores(session, ids)
    features = column_stability(session, PARTIES, ids)

    assert unscored == 0 and scores.size == len(ids)
    assert plain_psi(trained, scores) < 0.1
    assert len(features) == sum(len(next(iter(trained.data[p].values()))) for p in PARTIES)
    assert {f.status for f in features} == {"stable"}, [f for f in features if f.csi >= 0.1]


def test_a_shifted_population_is_flagged_on_a_trees_model_by_the_party_holding_the_column(
    trained: Trained, session: ScoringSession
) -> None:
    ids = trained.held_by_all()
    orders = np.array([trained.data["ecommerce"][i][SHIFTED_COLUMN] for i in ids])
    shifted = [i for i, v in zip(ids, orders, strict=True) if v > np.quantile(orders, 0.7)]
    assert len(shifted) >= MIN_STABILITY_IDS

    features = by_name(column_stability(session, PARTIES, shifted))

    assert features[("ecommerce", SHIFTED_COLUMN)].status == "act"
    for party in PARTIES:
        for feature, csi in plain_csi(trained, party, shifted).items():
            assert features[(party, feature)].csi == pytest.approx(csi, rel=1e-12, abs=1e-12)


def test_the_trees_report_shows_the_policys_decision_mix_of_the_held_out_rows(
    trained: Trained,
) -> None:
    metrics = json.loads((trained.run / "metrics.json").read_text())
    page = trained.run / "report.html"

    mix = metrics["decisions"]
    grades = {row["grade"]: row["rows"] for row in metrics["grades"]}
    assert {g: sum(counts.values()) for g, counts in mix.items()} == grades
    assert sum(grades.values()) == metrics["rows"]
    text = page.read_text(encoding="utf-8")
    assert "decisions" in Page(text).values("id") and "all grades" in text
    assert "No decision policy" not in text
    assert broken_references(page) == []


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_trees_run_counts_trees_and_levels_not_epochs_and_batches(trained: Trained) -> None:
    terminal = Terminal()
    show = Progress(quiet=False, stream=terminal)
    for kind, info in trained.events:
        show(kind, info)
    shown = terminal.getvalue()
    text = (trained.run / "report.html").read_text(encoding="utf-8")
    metrics = json.loads((trained.run / "metrics.json").read_text())

    assert "tree 1/3  level 1/2" in shown and "tree 3/3" in shown
    assert "epoch" not in shown and "batch" not in shown
    assert metrics["trees_grown"] == 3
    assert "trees grown" in text and "trees kept" in text
    assert "epochs run" not in text and "epoch kept" not in text


@pytest.fixture(scope="module")
def monitored(trained: Trained, session: ScoringSession) -> Path:
    """``fedcredit monitor``'s files for the training population inside the run folder, and
    the run's report rendered again linking them; the monitoring page's path."""
    ids = list(trained.data["lender"])
    scores, _ = population_scores(session, ids)
    features = column_stability(session, PARTIES, ids)
    baseline = ScoreBaseline.from_dict(trained.part("lender")["score_baseline"])  # type: ignore[arg-type]
    report = StabilityReport(score_stability(baseline, scores), tuple(features))
    write_monitor(trained.run / "monitor", report, Population(len(ids), int(scores.size)))
    assert link_from_report(trained.run / "model", trained.run / "monitor") == (
        trained.run / "report.html"
    )
    return trained.run / "monitor" / MONITOR_HTML


def test_a_monitoring_page_inside_the_run_folder_is_linked_from_its_report(
    trained: Trained, monitored: Path
) -> None:
    page = trained.run / "report.html"

    text = page.read_text(encoding="utf-8")
    assert "monitor/monitor.html" in Page(text).values("href")
    assert "score PSI" in text and "No monitoring page yet" not in text
    assert "all grades" in text  # the decision mix survives the new rendering
    assert broken_references(page) == [] and broken_references(monitored) == []
    assert link_from_report(trained.run / "model", trained.run.parent / "elsewhere") is None


@needs_chromium
def test_the_report_and_the_monitoring_page_render_in_chromium_with_their_images(
    trained: Trained, monitored: Path, tmp_path: Path
) -> None:
    report = screenshot(trained.run / "report.html", tmp_path / "report.png", height=5000)
    monitor = screenshot(monitored, tmp_path / "monitor.png", height=2000)

    assert report.shape == (5000, 1280, 3) and monitor.shape == (2000, 1280, 3)
    assert ink_share(report) > 0.02 and ink_share(monitor) > 0.02
    # The ROC curve and the monitoring bars are drawn in this blue: they show only when the
    # embedded and the linked PNG loaded (text and links are in other colours).
    assert colour_pixels(report, TAB_BLUE) > 100  # 168 here; 0 with the images removed
    assert colour_pixels(monitor, TAB_BLUE) > 5000
