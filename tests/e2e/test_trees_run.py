"""`fedcredit run` with `[model] family = "trees"`: real node processes, mutual TLS, 1024 bits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_trees_nodes import trees_federation
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
