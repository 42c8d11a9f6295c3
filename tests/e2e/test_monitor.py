"""End to end with real node processes: ``fedcredit monitor`` on a model ``fedcredit run``
trained, writing monitor.json, the figure and the page; a model saved before monitoring
existed is refused in one line, before any node starts."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.support.cli import fedcredit, small_federation

pytestmark = pytest.mark.slow

FLAGS = ("--allow-small-keys",)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("monitor")
    fed = small_federation(folder, customers=1200)
    result = fedcredit("run", str(fed), "--out", str(folder / "run"), "--json", *FLAGS)
    assert result.returncode == 0, result.stderr
    with (folder / "data" / "lender.csv").open(encoding="utf-8") as handle:
        ids = [row["id"] for row in csv.DictReader(handle)]
    ids_csv = folder / "ids.csv"
    ids_csv.write_text("id\n" + "\n".join(ids) + "\n", encoding="utf-8")
    return fed, folder / "run" / "model", ids_csv


def test_monitor_writes_the_json_the_figure_and_a_page_that_links_it(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    fed, model, ids = trained
    out = tmp_path / "monitor"

    result = fedcredit(
        "monitor", str(fed), "--model", str(model), "--ids", str(ids), "--out", str(out),
        "--json", *FLAGS,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    content = json.loads((out / "monitor.json").read_text(encoding="utf-8"))
    assert json.loads(result.stdout) == content  # --json: one document, no progress
    assert content["score_status"] == "stable" and content["score_psi"] < 0.1
    parties = {f["party"] for f in content["csi"]}
    assert parties == {"lender", "ecommerce", "payments"}
    for figure in content["csi"]:
        assert set(figure) == {"party", "feature", "csi", "status"}
        assert figure["status"] in {"stable", "watch", "act"}
    assert content["thresholds"] == {"stable_below": 0.1, "watch_up_to": 0.25}
    page = (out / "monitor.html").read_text(encoding="utf-8")
    assert 'src="score_distribution.png"' in page
    assert (out / "score_distribution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "monitor.html", "monitor.json", "score_distribution.png"
    ]  # fmt: skip


def test_a_model_saved_before_monitoring_is_refused_in_one_line(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    fed, model, ids = trained
    old = tmp_path / "old-model"
    shutil.copytree(model, old)
    for part in old.glob("*.json"):
        data = json.loads(part.read_text(encoding="utf-8"))
        data.pop("stability_reference", None)
        data.pop("score_baseline", None)
        part.write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path / "monitor"

    result = fedcredit(
        "monitor", str(fed), "--model", str(old), "--ids", str(ids), "--out", str(out), *FLAGS
    )

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "without a stability reference" in lines[0], result.stderr
    assert not (out / "monitor.json").exists()
