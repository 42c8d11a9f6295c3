"""The stability reference a party stores with its model part, the CSI it answers from it, and
the files ``fedcredit monitor`` writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedcredit.decision.monitoring import (
    MONITOR_HTML,
    MONITOR_JSON,
    SCORE_PNG,
    Population,
    monitor_dict,
    monitor_html,
    write_monitor,
)
from fedcredit.decision.stability import (
    FeatureStability,
    StabilityReport,
    decile_baseline,
    score_stability,
)
from fedcredit.errors import ConfigError, ProtocolError
from fedcredit.node.errors import InvalidRequest
from fedcredit.node.serde.scoring import stabilities_of
from fedcredit.node.stability import (
    SampledRows,
    check_query,
    columns_stability,
    load_reference,
    rows_for,
)
from fedcredit.proto.v1 import scoring_pb2
from fedcredit.protocol.categories import category_code
from fedcredit.protocol.columns import PartyColumns
from fedcredit.protocol.logistic.settings import TrainSettings
from fedcredit.protocol.reference import StabilityReference, column_reference


def make_party(n: int = 1000, seed: int = 1) -> PartyColumns:
    rng = np.random.default_rng(seed)
    ids = [f"C{i:05d}" for i in range(n)]
    city = [category_code(rng.choice(["north", "south", "east", ""])) for _ in range(n)]
    features = np.column_stack([rng.normal(50, 10, n), rng.exponential(2.0, n), city])
    party = PartyColumns("ecommerce", ids, features, ["age", "spend", "city"], TrainSettings())
    party.categorical = ("city",)
    party.align(ids)
    return party


def plain_index(expected: np.ndarray, actual: np.ndarray) -> float:
    p = np.maximum(expected / expected.sum(), 1e-4)
    q = np.maximum(actual / actual.sum(), 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def test_the_reference_bins_each_raw_column_on_the_training_rows() -> None:
    party = make_party()
    assert party.split is not None

    reference = column_reference(party)

    assert reference.rows == len(party.split.train)
    assert [c.feature for c in reference.columns] == ["age", "spend", "city"]
    for column in reference.columns:
        assert sum(column.counts) == reference.rows
    age, _, city = reference.columns
    assert age.binning.kind == "numeric" and len(age.counts) == 11  # deciles and missing
    assert city.binning.kind == "categorical" and city.counts[-1] > 0  # blank city: missing


def test_the_reference_reads_back_what_it_wrote() -> None:
    reference = column_reference(make_party())

    again = StabilityReference.from_dict(json.loads(json.dumps(reference.to_dict())))

    assert again == reference


def test_the_training_rows_themselves_have_a_csi_of_zero() -> None:
    party = make_party()
    assert party.split is not None
    train = [party.ids[i] for i in party.aligned_rows[party.split.train]]

    features = columns_stability(party, column_reference(party), train, None)

    assert [f.csi for f in features] == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)


def test_the_csi_equals_a_plain_computation_on_the_same_data() -> None:
    party = make_party()
    reference = column_reference(party)
    chosen = [i for i in range(len(party.ids)) if party.raw[i, 0] > 55]

    features = columns_stability(party, reference, [party.ids[i] for i in chosen], None)

    for j, (column, found) in enumerate(zip(reference.columns, features, strict=True)):
        actual = column.bin_counts(party.raw[chosen, j])
        assert found.csi == pytest.approx(plain_index(np.array(column.counts, float), actual))
    assert features[0].status == "act" and features[0].party == "ecommerce"


def test_a_stranger_stands_for_the_same_customer_every_time() -> None:
    party = make_party(200)
    sampled = SampledRows(b"k" * 32).for_party(party)

    first = rows_for(party, ["C00003", "NOBODY", "ELSE"], sampled)
    second = rows_for(party, ["NOBODY", "ELSE"], sampled)

    assert first[0] == 3 and list(first[1:]) == list(second)
    assert all(0 <= r < 200 for r in second)
    assert list(rows_for(party, ["C00003", "NOBODY"], None)) == [3]


def test_a_model_part_without_a_reference_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_reference(None, "ecommerce")

    assert "no stability reference" in str(info.value) and "\n" not in str(info.value)


def test_a_query_about_a_handful_of_applicants_is_refused() -> None:
    with pytest.raises(ProtocolError, match="at least 100"):
        check_query("ecommerce", ["C1"] * 99)
    check_query("ecommerce", ["C1"] * 100)


def test_an_answer_with_a_bad_index_is_refused() -> None:
    reply = scoring_pb2.StabilityReply()
    reply.columns.add(feature="age", csi=-1.0)

    with pytest.raises(InvalidRequest, match="ecommerce"):
        stabilities_of("ecommerce", reply)


def report() -> StabilityReport:
    rng = np.random.default_rng(4)
    baseline = decile_baseline(rng.normal(550, 20, 500))
    score = score_stability(baseline, rng.normal(560, 20, 400))
    features = (
        FeatureStability("ecommerce", "<b>orders</b> & co", 0.3, "act"),
        FeatureStability("lender", "tenure", 0.01, "stable"),
    )
    return StabilityReport(score, features)


def test_the_page_escapes_every_text_and_links_the_figure() -> None:
    page = monitor_html(monitor_dict(report(), Population(400, 400)))

    assert "&lt;b&gt;orders&lt;/b&gt; &amp; co" in page and "<b>orders" not in page
    assert f'<img src="{SCORE_PNG}"' in page


def test_write_monitor_writes_the_three_files_and_no_temporary_one(tmp_path: Path) -> None:
    content = write_monitor(tmp_path / "out", report(), Population(410, 400))

    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [MONITOR_HTML, MONITOR_JSON, SCORE_PNG]
    )
    stored = json.loads((tmp_path / "out" / MONITOR_JSON).read_text())
    assert stored == content
    assert (stored["status"], stored["applicants"], stored["scored"]) == ("act", 410, 400)
    assert stored["csi"][0] == {
        "party": "ecommerce",
        "feature": "<b>orders</b> & co",
        "csi": 0.3,
        "status": "act",
    }
    assert (tmp_path / "out" / SCORE_PNG).read_bytes()[:4] == b"\x89PNG"
