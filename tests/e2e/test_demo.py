"""``fedcredit demo`` end to end, small: real node processes, mutual TLS, 1024-bit keys."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str, str]:
    out = tmp_path_factory.mktemp("demo") / "out"
    result = subprocess.run(
        [sys.executable, "-m", "fedcredit", "demo", "--customers", "1500", "--epochs", "2",
         "--key-bits", "1024", "--allow-small-keys", "--json", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), out, result.stderr, result.stdout


#: What the demo says on stderr without --json: its narration and the job's progress lines.
NARRATION = (
    "fedcredit demo in", "three institutions' data", "certificates, a coordinator",
    "federated model: AUC", "scoring five applicants", "why join", "decisions for the five",
    "aligned ", "epoch 1/2", "epoch 2/2",
)  # fmt: skip


def test_json_mode_prints_one_json_document_and_no_progress(
    demo: tuple[dict[str, Any], Path, str, str],
) -> None:
    summary, out, stderr, stdout = demo
    lines = stdout.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == summary
    assert set(summary) >= {"folder", "metrics", "scores", "comparison", "decisions", "trees"}
    assert summary["folder"] == str(out)
    assert [text for text in NARRATION if text in stderr] == []
    assert "Traceback" not in stderr


def test_the_federated_model_is_trained_and_evaluated(
    demo: tuple[dict[str, Any], Path, str, str],
) -> None:
    summary, out, _, _ = demo
    metrics = summary["metrics"]
    assert metrics["rows_aligned"] < 1500  # partial overlap of the three institutions
    assert metrics["epochs"] == 2
    assert 0.55 < metrics["auc"] <= 1.0
    assert sorted(metrics["parties"]) == ["ecommerce", "lender", "payments"]
    for name in ("metrics.json", "roc.png", "ks.png", "report.html"):
        assert (out / "run" / name).stat().st_size > 0


def test_five_applicants_get_scores_on_the_scorecard(
    demo: tuple[dict[str, Any], Path, str, str],
) -> None:
    scores = demo[0]["scores"]
    assert len(scores) == 5
    for row in scores:
        assert row["error"] == ""
        assert 350.0 <= float(row["score"]) <= 950.0
        assert 0.0 < float(row["probability"]) < 1.0


def test_stacked_borrowers_shown_match_the_debt_check_file(
    demo: tuple[dict[str, Any], Path, str, str],
) -> None:
    debt = demo[0]["debt"]
    with open(debt["out"], newline="", encoding="utf-8") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    assert len(rows) == debt["applicants"]
    assert sum(int(r["other_lenders"]) > 0 for r in rows.values()) == debt["with_other_lenders"]
    assert debt["stacked"], "the demo found no stacked borrower"
    for shown in debt["stacked"]:
        assert shown["other_lenders"] >= 2
        row = rows[shown["id"]]
        assert int(row["other_lenders"]) == shown["other_lenders"]
        assert row["total_outstanding"] == shown["total_outstanding"] != ""


def test_the_federated_model_is_shown_next_to_the_lenders_own_columns_model(
    demo: tuple[dict[str, Any], Path, str, str],
) -> None:
    summary = demo[0]
    comparison = summary["comparison"]
    joined, own = comparison["federated"], comparison["lender_alone"]
    assert joined["auc"] == round(summary["metrics"]["auc"], 4)  # the run's own evaluation
    assert 0.5 < own["auc"] <= 1.0 and 0.0 < own["ks"] <= 1.0
    # 300 held-out rows: the AUC's standard error is about 0.03; the partners add signal.
    assert joined["auc"] >= own["auc"] - 0.03
    assert own["features"] == 4  # the lender's four columns, nobody else's
    assert comparison["held_out"] == summary["metrics"]["rows_test"]
    for row in (joined, own):
        assert 0.0 <= row["approval_rate"] <= 1.0
    assert joined["approval_rate"] >= joined["approval_rate_at_policy"]


def test_a_tree_model_is_trained_over_the_same_customers_and_shown_beside_the_scorecard(
    demo: tuple[dict[str, Any], Path, str, str],
) -> None:
    summary, out, _, _ = demo
    trees = summary["trees"]
    assert 0.55 < trees["auc"] <= 1.0 and 0.0 < trees["ks"] <= 1.0
    assert trees["rows_test"] == summary["metrics"]["rows_test"]  # the same held-out customers
    assert 1 <= trees["trees_kept"] <= trees["settings"]["trees"]
    saved = json.loads((out / "run-trees" / "metrics.json").read_text())
    assert round(saved["auc"], 4) == trees["auc"]
    assert json.loads((out / "run-trees" / "model" / "lender.json").read_text())["family"] == (
        "trees"
    )


def test_the_demo_ends_with_five_decisions_written_by_fedcredit_decides_path(
    demo: tuple[dict[str, Any], Path, str, str],
) -> None:
    summary, out, _, _ = demo
    decisions = summary["decisions"]
    assert [d["id"] for d in decisions] == [s["id"] for s in summary["scores"]]
    with open(out / "decisions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == [d["id"] for d in decisions]
    for d in decisions:
        assert d["decision"] in {"approve", "refer", "decline"}
        if d["decision"] == "approve":
            assert 5000 <= d["limit"] <= 50000 and d["apr"] <= 0.24 and d["instalments"]
        else:
            assert d["limit"] is None and d["reasons"]
