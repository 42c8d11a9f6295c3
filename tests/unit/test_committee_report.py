"""The committee report: gains, calibration and grade tables, and the page that shows them."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedcredit.decision import DECISIONS, Policy
from fedcredit.model.gains import calibration_table, gains_table, grade_table
from fedcredit.model.scorecard import Scorecard
from fedcredit.node.evaluation import lender_evaluation
from fedcredit.protocol.report import evaluation_metrics
from fedcredit.protocol.report_files import model_points, rewrite_report, write_evaluation_files
from fedcredit.protocol.report_page import write_report
from tests.support.report import PNG_MAGIC, Page, broken_references, unexpected_markup

MARKUP = "<img src=x onerror=alert(1)>"


@pytest.fixture
def predictions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    y = (rng.random(400) < 0.25).astype(np.int64)
    # Distinct probabilities, so that a plain cut into equal parts splits no tie.
    p = 1.0 / (1.0 + np.exp(-(-1.2 + 1.1 * y + rng.normal(size=400))))
    assert np.unique(p).size == p.size
    return y, p


def plain_bands(y: np.ndarray, p: np.ndarray, bands: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Labels and probabilities of each band: rows sorted riskiest first, cut into equal parts
    (every probability distinct, so no tie straddles a cut)."""
    order = sorted(range(len(p)), key=lambda i: -p[i])
    size = len(p) // bands
    return [
        (y[order[k * size : (k + 1) * size]], p[order[k * size : (k + 1) * size]])
        for k in range(bands)
    ]


def test_gains_table_matches_a_plain_computation(
    predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = predictions
    card = Scorecard()

    rows = gains_table(y, p, card)

    caught = seen = 0
    for row, (labels, probs) in zip(rows, plain_bands(y, p, 10), strict=True):
        caught += int(labels.sum())
        seen += len(labels)
        scores = card.score(probs)
        assert (row["rows"], row["defaults"]) == (len(labels), int(labels.sum()))
        assert row["bad_rate"] == pytest.approx(labels.mean())
        assert row["cum_rows_share"] == pytest.approx(seen / len(y))
        assert row["cum_defaults_share"] == pytest.approx(caught / y.sum())
        assert (row["score_min"], row["score_max"]) == (
            round(float(scores.min()), 1),
            round(float(scores.max()), 1),
        )
    assert rows[-1]["cum_defaults_share"] == pytest.approx(1.0)


def test_calibration_table_matches_a_plain_computation(
    predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = predictions

    rows = calibration_table(y, p)

    expected = [
        (len(labels), int(labels.sum()), float(np.mean(probs)), float(np.mean(labels)))
        for labels, probs in plain_bands(y, p, 10)
    ]
    got = [(r["rows"], r["defaults"], r["predicted"], r["observed"]) for r in rows]
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    assert [g[2] for g in got] == pytest.approx([e[2] for e in expected])
    assert [g[3] for g in got] == pytest.approx([e[3] for e in expected])


def test_tied_probabilities_share_a_band() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 1, 0, 0, 0])
    p = np.array([0.9, 0.9, 0.9, 0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1])

    rows = calibration_table(y, p, bands=5)

    # The four rows at 0.9 fill the first band and the two at 0.1 share the last.
    assert [r["rows"] for r in rows] == [4, 2, 2, 2]
    assert [r["band"] for r in rows] == [1, 2, 3, 4]
    assert [r["defaults"] for r in rows] == [2, 0, 1, 0]


def test_grade_table_counts_rows_and_defaults_per_grade(
    predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = predictions
    card = Scorecard()

    rows = grade_table(y, p, card)

    grades = card.grade(card.score(p))
    assert [r["grade"] for r in rows] == [name for name, _ in card.grades]
    for row in rows:
        members = grades == row["grade"]
        assert (row["rows"], row["defaults"]) == (int(members.sum()), int(y[members].sum()))
    assert rows[-1]["score_from"] is None


def job_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """The lender's evaluation and the driver's figures, as ``Driver.run`` merges them."""
    metrics = evaluation_metrics(y, p, Scorecard())
    metrics.update(
        rows_aligned=1000,
        rows_train=500,
        rows_validation=100,
        rows_test=400,
        epochs=3,
        stopped="epochs",
        train_taylor_loss=[0.60, 0.55, 0.56],
        validation_log_loss=[0.52, 0.49, 0.50],
        kept_epoch=2,
        kept_by="lowest validation log-loss",
        seconds=12.5,
        seconds_per_phase={"align": 1.0, "binning": 2.0, "train": 8.0, "evaluate": 1.5},
        parties={
            "lender": {"party": "lender", "has_label": True, "features": 4},
            "shop": {"party": "shop", "has_label": False, "features": 12},
        },
        job_id="job-1",
        key_bits=1024,
        features_per_party={"lender": 4, "shop": 6},
        iv=[
            {
                "party": "shop",
                "column": "basket",
                "iv": 0.3,
                "fine_bins": 10,
                "bins": 5,
                "kept": True,
            }
        ],
    )
    return metrics


def lender_plots(folder: Path, y: np.ndarray, p: np.ndarray) -> dict[str, bytes]:
    from fedcredit.protocol.report import evaluation_files

    files = evaluation_files(y, p, Scorecard())
    folder.mkdir(parents=True, exist_ok=True)
    return {k: v for k, v in files.items() if k.endswith(".png")}


def test_every_image_and_link_of_the_driver_report_resolves(
    predictions: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    y, p = predictions
    metrics = job_metrics(y, p)
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "iv.html").write_text("<p>iv</p>")
    (tmp_path / "monitor.html").write_text("<p>monitor</p>")

    written = write_evaluation_files(tmp_path, "lender", lender_plots(tmp_path, y, p), metrics)

    page = tmp_path / "report.html"
    assert broken_references(page) == []
    hrefs = Page(page.read_text(encoding="utf-8")).values("href")
    assert {"metrics.json", "iv.html", "monitor.html", "#gains", "#calibration"} <= set(hrefs)
    assert "iv.csv" not in hrefs  # not in the folder, so not linked
    assert sorted(written) == sorted(
        ["roc.png", "ks.png", "scores.png", "training.png", "calibration.png", "report.html"]
    )
    for name in ("training.png", "calibration.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)


def test_the_driver_report_holds_every_committee_section(
    predictions: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    y, p = predictions
    metrics = job_metrics(y, p)

    write_report(tmp_path, metrics, [])

    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    ids = set(Page(text).values("id"))
    assert {"job", "discrimination", "gains", "calibration", "confusion", "grades"} <= ids
    assert {"training", "binning", "monitoring", "figures"} <= ids
    tp = metrics["confusion"]["tp"]
    assert f"<td>actual default</td><td>{tp}</td>" in text
    assert "<th>confusion</th>" not in text  # the table, not the raw dict
    first = metrics["gains"][0]
    assert f"<td>{first['rows']}</td><td>{first['defaults']}</td>" in text
    assert '<tr class="marked"><td>2</td>' in text  # the kept epoch
    assert "Paillier key size (bits)</th><td>1024" in text
    assert "No decision policy was given" in text and "No monitoring page yet" in text
    assert "only figures the job already produced" in text


def test_the_decision_mix_per_grade_is_listed_when_given(
    predictions: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    y, p = predictions
    decisions = {"A": {"approve": 30, "refer": 10}, "E": {"decline": 5}}

    write_report(tmp_path, job_metrics(y, p), [], decisions=decisions)

    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<td>A</td><td>40</td><td>30 (75.0 %)</td><td>10 (25.0 %)</td><td>0 (0.0 %)</td>" in text
    assert "No decision policy was given" not in text


def plain_decision(policy: Policy, score: float) -> str:
    if score >= policy.approve_score:
        return "approve"
    return "refer" if score >= policy.refer_score else "decline"


def test_the_lenders_decision_mix_per_grade_matches_a_plain_computation_of_the_policy(
    predictions: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = predictions
    card = Scorecard()
    # Cut-offs inside the scores' range, so every decision occurs.
    scores = card.score(p)
    policy = Policy(
        approve_score=float(np.quantile(scores, 0.6)),
        refer_score=float(np.quantile(scores, 0.3)),
        best_offer_score=float(scores.max()) + 1.0,
    )

    evaluation, _ = lender_evaluation(card, policy, y, np.log(p / (1 - p)), 0.5)

    mix = evaluation.metrics["decisions"]
    expected: dict[str, dict[str, int]] = {
        name: {"approve": 0, "refer": 0, "decline": 0} for name, _ in card.grades
    }
    for score, grade in zip(scores.tolist(), card.grade(scores).tolist(), strict=True):
        expected[grade][plain_decision(policy, score)] += 1
    assert mix == expected
    assert {d for counts in mix.values() for d, n in counts.items() if n} == set(DECISIONS)
    grade_rows = {r["grade"]: r["rows"] for r in evaluation.metrics["grades"]}
    assert {g: sum(c.values()) for g, c in mix.items()} == grade_rows
    assert "decisions" not in lender_evaluation(card, None, y, np.log(p / (1 - p)), 0.5)[0].metrics


def test_the_report_shows_the_lenders_decision_mix_with_approval_rates_and_a_total(
    tmp_path: Path,
) -> None:
    metrics = {"decisions": {"A": {"approve": 30, "refer": 10, "decline": 0},
                             "B": {"approve": 0, "refer": 5, "decline": 15}}}  # fmt: skip

    write_report(tmp_path, metrics, [])

    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    section = text[text.index('<section id="decisions">') :]
    section = section[: section.index("</section>")]
    assert (
        "<td>B</td><td>20</td><td>0 (0.0 %)</td><td>5 (25.0 %)</td><td>15 (75.0 %)</td>" in section
    )
    assert "<td>0.0 %</td>" in section and "<td>75.0 %</td>" in section  # approval rates
    total = '<tr class="marked"><td>all grades</td><td>60</td><td>30 (50.0 %)</td>'
    assert total in section and "<td>50.0 %</td></tr>" in section
    assert "No decision policy" not in text


def test_each_partys_points_table_names_a_column_once_and_sits_beside_the_next(
    predictions: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    y, p = predictions
    points = {
        "shop": [
            {"column": "spend", "label": "(-inf, 20]", "points": 3.5},
            {"column": "spend", "label": "missing", "points": -1.0},
            {"column": "orders", "label": "(-inf, 4]", "points": 2.0},
        ],
        "bank": [{"column": "tenure", "label": "(-inf, 12]", "points": -2.0}],
    }

    write_report(tmp_path, job_metrics(y, p), [], points=points)

    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert text.count('<table class="side"><caption>Points per bin:') == 2
    assert "<td>spend</td>" in text and text.count(">spend</td>") == 1
    assert '<td></td><td class="t">missing</td><td>-1</td>' in text


def test_without_a_policy_the_report_says_how_to_get_the_decision_mix(tmp_path: Path) -> None:
    write_report(tmp_path, {}, [])

    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "add a [policy] table to the lender&#x27;s federation file" in text


def test_markup_in_every_peer_text_is_escaped(
    predictions: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    y, p = predictions
    metrics = job_metrics(y, p)
    metrics["parties"][MARKUP] = {"party": MARKUP, "has_label": False, "features": MARKUP}
    metrics["iv"][0]["column"] = MARKUP
    metrics["gains"][0]["band"] = MARKUP  # malformed: the section says so
    metrics["stopped"] = MARKUP
    metrics[MARKUP] = MARKUP
    points = {MARKUP: [{"column": MARKUP, "label": MARKUP, "points": 1.5}]}

    write_report(tmp_path, metrics, [], points=points, decisions={MARKUP: {MARKUP: 1}})

    page = tmp_path / "report.html"
    text = page.read_text(encoding="utf-8")
    assert unexpected_markup(page) == []
    assert MARKUP not in text and html.escape(MARKUP) in text
    assert "no usable gains table" in text
    assert broken_references(page) == []


def test_a_lender_report_of_malformed_figures_is_still_written(tmp_path: Path) -> None:
    metrics = {"auc": MARKUP, "calibration": [{"predicted": 10**400}], "confusion": "x"}

    write_report(tmp_path, metrics, [])

    page = tmp_path / "report.html"
    assert unexpected_markup(page) == [] and broken_references(page) == []
    assert not (tmp_path / "calibration.png").exists()


def test_a_monitoring_page_named_but_missing_is_not_linked(
    predictions: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    y, p = predictions

    write_report(tmp_path, job_metrics(y, p), [], monitoring="../elsewhere/monitor.html")

    page = tmp_path / "report.html"
    assert broken_references(page) == []
    assert "monitor.html" not in Page(page.read_text(encoding="utf-8")).values("href")


def test_a_report_is_rewritten_from_the_run_folder_with_a_monitoring_link(
    predictions: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    y, p = predictions
    metrics = job_metrics(y, p)
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    write_evaluation_files(tmp_path, "lender", lender_plots(tmp_path, y, p), metrics)
    (tmp_path / "monitor").mkdir()
    (tmp_path / "monitor" / "monitor.html").write_text("<p>psi</p>")

    rewrite_report(tmp_path, decisions={"A": {"approve": 1}})

    page = tmp_path / "report.html"
    assert "monitor/monitor.html" in Page(page.read_text(encoding="utf-8")).values("href")
    assert broken_references(page) == []
    assert "No decision policy was given" not in page.read_text(encoding="utf-8")


def test_points_tables_are_read_from_well_formed_model_parts_only(tmp_path: Path) -> None:
    rows = [{"column": "age", "bin": 0, "label": "(-inf, 30]", "points": -4.5}]
    (tmp_path / "lender.json").write_text(json.dumps({"encoder": {"points": {"rows": rows}}}))
    (tmp_path / "shop.json").write_text(json.dumps({"encoder": {"points": {"rows": "x"}}}))
    bad = [{"column": "a", "label": "b", "points": float("nan")}]
    (tmp_path / "pay.json").write_text(json.dumps({"encoder": {"points": {"rows": bad}}}))
    (tmp_path / "manifest.json").write_text("{}")

    tables = model_points(tmp_path)

    assert tables == {"lender": [{"column": "age", "label": "(-inf, 30]", "points": -4.5}]}
