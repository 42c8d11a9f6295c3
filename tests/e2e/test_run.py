"""End to end with real node processes, real mutual TLS and real keys: `fedcredit run`,
`fedcredit score`, refusals with one clear line, and resume after a killed node."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import fedcredit, small_federation
from tests.support.report import Page, broken_references, unexpected_markup

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("fed")
    fed = small_federation(folder)
    out = folder / "run"
    result = fedcredit("run", str(fed), "--out", str(out), "--json", "--allow-small-keys")
    assert result.returncode == 0, result.stderr
    return fed, out


def test_run_writes_metrics_model_and_plots(trained: tuple[Path, Path]) -> None:
    _, out = trained
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("auc", "ks", "rows_aligned", "rows_train", "rows_test", "epochs", "seconds"):
        assert key in metrics
    assert set(metrics["seconds_per_phase"]) >= {"align", "train", "evaluate"}
    assert 0.6 < metrics["auc"] <= 1.0
    assert (
        metrics["rows_train"] + metrics["rows_validation"] + metrics["rows_test"]
        == metrics["rows_aligned"]
    )
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    assert set(manifest["parties"]) == {"lender", "ecommerce", "payments"}
    for party in manifest["parties"]:
        part = json.loads((out / "model" / f"{party}.json").read_text())
        assert (
            part["public_key_fingerprint"] == manifest["parties"][party]["public_key_fingerprint"]
        )
    for name in ("roc.png", "ks.png", "scores.png", "report.html"):
        assert (out / name).stat().st_size > 1000


def test_the_run_report_resolves_and_holds_the_committee_sections(
    trained: tuple[Path, Path],
) -> None:
    _, out = trained
    metrics = json.loads((out / "metrics.json").read_text())

    page = out / "report.html"

    assert broken_references(page) == [] and unexpected_markup(page) == []
    parsed = Page(page.read_text(encoding="utf-8"))
    assert {"job", "gains", "calibration", "confusion", "grades", "training", "binning"} <= set(
        parsed.values("id")
    )
    text = " ".join(parsed.text)
    assert "Points per bin: lender" in text  # an all-local run: every part is in model/
    assert sum(row["rows"] for row in metrics["gains"]) == metrics["rows_test"]
    assert metrics["key_bits"] == 1024 and set(metrics["features_per_party"]) == set(
        metrics["parties"]
    )


def test_json_mode_prints_only_json(trained: tuple[Path, Path], tmp_path: Path) -> None:
    fed, out = trained
    ids = tmp_path / "ids.csv"
    ids.write_text("id\nC0000001\nC0000002\nNOBODY\n")
    scores = tmp_path / "scores.csv"
    result = fedcredit(
        "score",
        str(fed),
        "--model",
        str(out / "model"),
        "--ids",
        str(ids),
        "--out",
        str(scores),
        "--json",
        "--allow-small-keys",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["scored"] == 3
    rows = list(csv.DictReader(scores.open()))
    assert [r["id"] for r in rows] == ["C0000001", "C0000002", "NOBODY"]
    assert rows[2]["error"] == "not in the lender's data"
    known = [r for r in rows if not r["error"]]
    for row in known:
        assert 350 <= float(row["score"]) <= 950
        assert 0 < float(row["probability"]) < 1
        assert row["grade"] in {"A", "B", "C", "D", "E"}


def test_batch_not_above_feature_count_is_refused_with_one_line(tmp_path: Path) -> None:
    fed = small_federation(tmp_path, batch=4)
    result = fedcredit("run", str(fed), "--out", str(tmp_path / "run"), "--allow-small-keys")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "batch_size" in result.stderr and "could solve" in result.stderr


def test_bad_data_stops_the_run_naming_party_and_row(tmp_path: Path) -> None:
    fed = small_federation(tmp_path)
    payments = tmp_path / "data" / "payments.csv"
    lines = payments.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",abc"
    payments.write_text("\n".join(lines) + "\n")
    result = fedcredit("run", str(fed), "--out", str(tmp_path / "run"), "--allow-small-keys")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "payments" in result.stderr and "6" in result.stderr


def test_small_key_is_refused_outside_tests(tmp_path: Path) -> None:
    fed = small_federation(tmp_path)
    result = fedcredit("run", str(fed), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "key_bits" in result.stderr and "2048" in result.stderr


def _final_weights(out: Path) -> dict[str, list[float]]:
    return {
        p: json.loads((out / "model" / f"{p}.json").read_text())["weights"]
        for p in ("lender", "ecommerce", "payments")
    }


@pytest.mark.parametrize("victim", ["ecommerce", "coordinator"])
def test_resume_after_a_killed_node_equals_an_uninterrupted_run(
    trained: tuple[Path, Path], tmp_path: Path, victim: str
) -> None:
    fed, reference = trained
    text = fed.read_text()
    fed2 = tmp_path / "federation.toml"
    fed2.write_text(text)
    out = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fedcredit",
            "run",
            str(fed2),
            "--out",
            str(out),
            "--allow-small-keys",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    progress = out / "progress.json"
    deadline = time.monotonic() + 240
    while not progress.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert progress.exists(), "the first epoch never finished"
    pid = int((out / "ports" / f"{victim}.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    detected_after = time.monotonic() - killed_at
    print(f"killed {victim} noticed after {detected_after:.1f} s")
    assert process.returncode == 2
    assert detected_after < 10
    assert victim in stderr.splitlines()[-1]

    resumed = fedcredit(
        "run", str(fed2), "--out", str(out), "--resume", "--json", "--allow-small-keys"
    )
    assert resumed.returncode == 0, resumed.stderr
    got, want = _final_weights(out), _final_weights(reference)
    for party in want:
        assert got[party] == pytest.approx(want[party], abs=1e-9)
