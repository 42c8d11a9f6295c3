"""The trees family on real nodes: in-process servers with real mutual TLS and 1024-bit keys,
driven by the real driver, against the in-process ``LocalTrees`` run on the same data."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from fedcredit.config import Federation, load_federation
from fedcredit.data.loader import load_party_csv
from fedcredit.errors import ConfigError
from fedcredit.model.logistic import sigmoid
from fedcredit.model.metrics import evaluate
from fedcredit.protocol.categories import with_category_codes
from fedcredit.protocol.columns import PartyData
from fedcredit.protocol.family import get_family
from fedcredit.protocol.trees.lender import TreesLender
from fedcredit.protocol.trees.local import LocalTrees
from fedcredit.protocol.trees.partner import TreesPartner
from tests.support.federation import NODES, demo_federation, start_nodes
from tests.support.recorder import Exchange, Recorder

TREES = """
[model]
family = "trees"

[trees]
trees = {trees}
depth = 2
bins = 8
min_rows = 5
mode = "{mode}"
"""


def trees_federation(folder: Path, *, mode: str = "mix", trees: int = 4, extra: str = "") -> Path:
    """The demo's federation over 300 synthetic customers, trained as trees."""
    path = demo_federation(folder, customers=300, binning=False)
    path.write_text(path.read_text() + TREES.format(trees=trees, mode=mode) + extra)
    return path


def local_run(fed: Federation) -> tuple[TreesLender, list[TreesPartner]]:
    """The same job in one process: the same files, ids in PSI's order, the same settings."""
    family, settings = get_family("trees"), fed.family_settings
    roles: dict[str, TreesLender | TreesPartner] = {}
    for party in fed.parties:
        data = load_party_csv(
            party.data, id_column=party.id_column, label_column=party.label_column,
            features=list(party.features) if party.features else None,
            categorical=party.categorical,
        )  # fmt: skip
        x, names = with_category_codes(data.X, data.feature_names, data.categorical)
        columns = PartyData(party.name, data.ids, x, names)
        if party.is_lender:
            assert data.y is not None
            roles[party.name] = family.lender(columns, data.y, settings)  # type: ignore[assignment]
        else:
            roles[party.name] = family.partner(columns, settings)  # type: ignore[assignment]
        roles[party.name].categorical = tuple(data.categorical)  # as make_party_node does
    common = sorted(set.intersection(*(set(r.ids) for r in roles.values())))
    for role in roles.values():
        role.align(common)
    lender = roles[fed.lender.name]
    partners = [roles[h.name] for h in fed.hosts]
    assert isinstance(lender, TreesLender)
    LocalTrees(lender, partners, key_bits=1024, allow_small=True).train()  # type: ignore[arg-type]
    return lender, partners  # type: ignore[return-value]


def with_text_column(fed_path: Path) -> None:
    """A text column "region" in the lender's file, its default rate by region out of order."""
    fed = load_federation(fed_path, allow_small_keys=True)
    path = fed.lender.data
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    label = rows[0].index(fed.lender.label_column or "")
    rng = random.Random(5)
    regions = {"0": ["north", "south", "east"], "1": ["west", "south", "centre"]}
    rows[0].append("region")
    for row in rows[1:]:
        row.append(rng.choice(regions[row[label]] + ["north", "west", "isles"]))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


@pytest.mark.parametrize("mode", ["mix", "joint"])
def test_a_lenders_text_column_splits_by_category_groups_on_nodes(
    tmp_path: Path, mode: str
) -> None:
    fed_path = trees_federation(tmp_path, mode=mode, trees=4 if mode == "mix" else 2)
    with_text_column(fed_path)
    fed = load_federation(fed_path, allow_small_keys=True)

    metrics, _ = run_on_nodes(tmp_path, fed_path)
    lender, _ = local_run(fed)

    assert "region" in lender.categorical and lender.group_columns
    assert metrics["auc"] == pytest.approx(local_auc(lender), abs=1e-12)
    part = json.loads((tmp_path / "nodes" / "out" / "model" / "lender.json").read_text())
    region = str(lender.column_names.index("region"))
    assert len(part["categories"][region]) >= 5
    assert any(int(t["own"]["feature"][int(j)]) == int(region) for t in part["trees"]
               for j in t["own"].get("left_set", {}))  # fmt: skip


def local_auc(lender: TreesLender) -> float:
    rows = lender.rows_of("test", 0, 0)
    return float(evaluate(lender.labels(rows), sigmoid(lender.kept_margins(rows)))["auc"])


def run_on_nodes(
    folder: Path, fed_path: Path, *, resume: bool = False
) -> tuple[dict[str, object], list[Exchange]]:
    fed = load_federation(fed_path, allow_small_keys=True)
    exchanges: list[Exchange] = []
    unrecorded: list[str] = []
    recorders = {n: [Recorder(n, exchanges, unrecorded)] for n in NODES}
    nodes = start_nodes(fed, folder / "nodes", interceptors=recorders)
    try:
        metrics = nodes.new_driver().run(folder / "nodes" / "out", resume=resume)
    finally:
        nodes.close()
    assert unrecorded == []
    return metrics, exchanges


@pytest.mark.parametrize("mode", ["mix", "joint"])
def test_trees_on_nodes_reach_the_auc_of_the_in_process_run(tmp_path: Path, mode: str) -> None:
    fed_path = trees_federation(tmp_path, mode=mode, trees=4 if mode == "mix" else 2)
    fed = load_federation(fed_path, allow_small_keys=True)

    metrics, _ = run_on_nodes(tmp_path, fed_path)
    lender, _ = local_run(fed)

    assert metrics["auc"] == pytest.approx(local_auc(lender), abs=1e-12)
    assert metrics["trees_kept"] == lender.kept
    assert metrics["epochs"] == len(lender.model)


def test_each_party_saves_its_own_part_and_a_partner_keeps_its_thresholds(tmp_path: Path) -> None:
    metrics, _ = run_on_nodes(tmp_path, trees_federation(tmp_path))
    model = tmp_path / "nodes" / "out" / "model"

    lender = json.loads((model / "lender.json").read_text())
    partner = json.loads((model / "ecommerce.json").read_text())

    assert lender["family"] == partner["family"] == "trees"
    assert "edges" in partner and partner["trees"]  # its own splits, by tree number
    # The lender's record of a partner's tree names the partner, not its thresholds.
    partner_tree = next(t for t in lender["trees"] if t["owner"] == "ecommerce")
    assert all(f == -1 for f in partner_tree["own"]["feature"])
    assert set(json.loads((model / "manifest.json").read_text())["parties"]) == {
        "lender", "ecommerce", "payments",
    }  # fmt: skip
    assert 0.0 <= float(metrics["auc"]) <= 1.0  # type: ignore[arg-type]


def _numbers(exchanges: list[Exchange]) -> bytes:
    return b"".join(e.request + e.response for e in exchanges)


@pytest.mark.parametrize("mode", ["mix", "joint"])
def test_no_edge_threshold_or_raw_gradient_crosses_the_wire(tmp_path: Path, mode: str) -> None:
    fed_path = trees_federation(tmp_path, mode=mode, trees=3 if mode == "mix" else 2)
    fed = load_federation(fed_path, allow_small_keys=True)
    _, exchanges = run_on_nodes(tmp_path, fed_path)
    lender, partners = local_run(fed)
    wire = _numbers(exchanges)
    methods = {e.method.rsplit("/", 1)[-1] for e in exchanges}

    assert {"SendGradients", "BuildHistograms", "EndTree"} <= methods
    secrets_: list[bytes] = []
    for role in (lender, *partners):
        for edges in role.edges:
            for e in edges.tolist():
                secrets_ += [repr(e).encode(), np.float64(e).tobytes(), np.float32(e).tobytes()]
    split = lender.split
    assert split is not None
    from fedcredit.model.trees import gradients  # the first tree's g and h, in every encoding

    g, h = gradients(lender.labels(split.train), np.full(len(split.train), lender.base), None)
    for v in [*g[:50].tolist(), *h[:50].tolist()]:
        secrets_ += [repr(v).encode(), np.float64(v).tobytes()]
        secrets_.append(round(v * 2**24).to_bytes(8, "big", signed=True))
    leaked = [s for s in secrets_ if len(s) >= 8 and s in wire]
    assert leaked == []


def test_a_bad_trees_key_is_refused_naming_it(tmp_path: Path) -> None:
    path = trees_federation(tmp_path, extra="depht = 3\n")
    with pytest.raises(ConfigError, match=r"\[trees\]: unknown key 'depht'"):
        load_federation(path, allow_small_keys=True)


def test_a_bad_trees_value_is_refused_naming_its_key(tmp_path: Path) -> None:
    path = trees_federation(tmp_path)
    path.write_text(path.read_text().replace("depth = 2", "depth = 9"))
    with pytest.raises(ConfigError, match=r"\[trees\] depth must be"):
        load_federation(path, allow_small_keys=True)


class Interrupted(Exception):
    pass


def test_a_resumed_job_grows_the_trees_of_an_uninterrupted_one(tmp_path: Path) -> None:
    fed_path = trees_federation(tmp_path, trees=5)
    fed = load_federation(fed_path, allow_small_keys=True)
    whole, _ = run_on_nodes(tmp_path / "whole", fed_path)

    def stop_after_two(kind: str, data: object) -> None:
        if kind == "epoch" and isinstance(data, dict) and data["epoch"] == 2:
            raise Interrupted

    nodes = start_nodes(fed, tmp_path / "parts")
    out = tmp_path / "parts" / "out"
    try:
        with pytest.raises(Interrupted):
            nodes.new_driver(progress=stop_after_two).run(out)
        said: list[str] = []
        resumed = nodes.new_driver(
            progress=lambda kind, data: said.append(str(data.get("message", "")))
        ).run(out, resume=True)
    finally:
        nodes.close()

    assert "resuming after epoch 2" in said
    assert resumed["auc"] == whole["auc"]
    assert resumed["epochs"] == whole["epochs"] == 5
    saved = [
        json.loads((folder / "model" / "lender.json").read_text())["trees"]
        for folder in (out, tmp_path / "whole" / "nodes" / "out")
    ]
    assert saved[0] == saved[1]
