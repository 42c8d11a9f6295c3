"""`fedcredit run`, `score` and `decide` with `[model] family = "trees"`: real node processes, mutual TLS, 1024 bits."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fedcredit.config import load_federation
from fedcredit.model.logistic import sigmoid
from fedcredit.protocol.trees.local import LocalTrees
from tests.integration.test_trees_nodes import local_run, trees_federation
from tests.support.cli import fedcredit

pytestmark = pytest.mark.slow


def test_fedcredit_run_trains_trees_and_writes_metrics_and_parts(tmp_path: Path) -> None:
    fed = trees_federation(tmp_path, trees=3)
    out = tmp_path / "run"

    result = fedcredit("run", str(fed), "--out", str(out), "--json", "--allow-small-keys")

    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.5 < metrics["auc"] <= 1.0 and metrics["epochs"] == 3
    assert json.loads((out / "model" / "manifest.json").read_text())["family"] == "trees"


def test_fedcredit_score_and_decide_on_a_trees_model_match_the_in_process_scores(
    tmp_path: Path,
) -> None:
    # "mean": an id a partner lacks is a row of missing values, as in LocalTrees.score.
    extra = '\n[scoring]\nunknown_ids = "mean"\n\n[policy]\n'
    fed = trees_federation(tmp_path, trees=3, extra=extra)
    out = tmp_path / "run"
    trained = fedcredit("run", str(fed), "--out", str(out), "--json", "--allow-small-keys")
    assert trained.returncode == 0, trained.stderr
    with (tmp_path / "data" / "lender.csv").open(encoding="utf-8") as handle:
        ids = [row["id"] for row in csv.DictReader(handle)][:120]
    ids_csv = tmp_path / "ids.csv"
    ids_csv.write_text("id\n" + "\n".join(ids) + "\n")
    common = ("--model", str(out / "model"), "--ids", str(ids_csv), "--allow-small-keys")

    scored = fedcredit("score", str(fed), *common, "--out", str(tmp_path / "scores.csv"))
    decided = fedcredit("decide", str(fed), *common, "--out", str(tmp_path / "decisions.csv"))

    assert scored.returncode == 0, scored.stderr
    assert decided.returncode == 0, decided.stderr
    with (tmp_path / "scores.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    lender, partners = local_run(load_federation(fed, allow_small_keys=True))
    z = LocalTrees(lender, partners, key_bits=1024, allow_small=True).score(ids)
    assert [r["id"] for r in rows] == ids
    got = np.array([float(r["probability"]) for r in rows])
    np.testing.assert_allclose(got, sigmoid(z), rtol=0, atol=1e-9)
    with (tmp_path / "decisions.csv").open(encoding="utf-8") as handle:
        decisions = list(csv.DictReader(handle))
    assert [d["id"] for d in decisions] == ids
    assert {d["decision"] for d in decisions} <= {"approve", "refer", "decline"}
    assert [d["grade"] for d in decisions] == [r["grade"] for r in rows]
