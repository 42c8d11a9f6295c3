"""Federated binning over gRPC: real nodes in this process record every message they handle
(the lender never receives a partner's raw value or bin edge; partners never see a label in
clear), then `fedcredit run` end to end with [binning] on synthetic data and on the Statlog
German file split across three parties, categorical codes included."""

from __future__ import annotations

import csv
import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedcredit.cli.demo import write_demo_federation
from fedcredit.config import load_federation
from fedcredit.data.synthetic import write_institutions
from fedcredit.driver.binning import run_binning
from fedcredit.driver.job import Driver
from fedcredit.node.runtime import make_party_node
from fedcredit.node.services.binning import BinningServicer
from fedcredit.node.services.coordinator import CoordinatorServicer
from fedcredit.node.services.party import add_party_services
from fedcredit.node.transport.server import NodeServer, build_server
from fedcredit.proto.v1 import binning_pb2, binning_pb2_grpc, coordinator_pb2_grpc
from fedcredit.protocol.binning import train_raw
from fedcredit.protocol.keyholder import KeyHolder

GERMAN = Path(__file__).resolve().parents[3] / "shared" / "data" / "statlog_german" / "german.data"


def small_federation(folder: Path, *, customers: int = 1200, batch: int = 300) -> Path:
    data = write_institutions(folder / "data", customers, seed=5)
    path = write_demo_federation(folder, data, key_bits=1024, epochs=2)
    path.write_text(path.read_text().replace("batch_size = 4096", f"batch_size = {batch}"))
    return path


class Federation:
    """Party nodes and a coordinator on ephemeral ports, insecure mode, recording binning."""

    def __init__(self, path: Path) -> None:
        self.fed = load_federation(path, allow_small_keys=True)
        self.servers: list[NodeServer] = []
        self.binning: dict[str, BinningServicer] = {}
        self.nodes: dict[str, Any] = {}
        addresses = {}
        allowed = set(self.fed.all_names)
        coordinator = build_server("127.0.0.1:0", credentials=None, allowed_parties=allowed)
        coordinator.add(
            coordinator_pb2_grpc.add_CoordinatorServicer_to_server,
            CoordinatorServicer(KeyHolder(allow_small_keys=True)),
        )
        addresses["coordinator"] = f"127.0.0.1:{coordinator.start()}"
        self.servers.append(coordinator)
        for party in self.fed.parties:
            node = make_party_node(self.fed, party.name, None, {})
            server = build_server("127.0.0.1:0", credentials=None, allowed_parties=allowed)
            add_party_services(server, node)
            binning = BinningServicer(node, self.fed.binning, party.categorical, record=True)
            server.add(binning_pb2_grpc.add_BinningServicer_to_server, binning)
            addresses[party.name] = f"127.0.0.1:{server.start()}"
            self.servers.append(server)
            self.binning[party.name], self.nodes[party.name] = binning, node
        self.driver = Driver(self.fed, addresses, credentials=None, progress=lambda *_: None)

    def close(self) -> None:
        for server in self.servers:
            server.stop(0.5)


@pytest.fixture(scope="module")
def binned(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Federation, dict[str, Any], Path]]:
    folder = tmp_path_factory.mktemp("binning-nodes")
    federation = Federation(small_federation(folder))
    driver = federation.driver
    setup = driver.setup(driver.start_job(), False)
    assert setup
    result = run_binning(driver.context, driver.align(), folder / "out")
    yield federation, result, folder / "out"
    federation.close()


def _partner_secrets(federation: Federation, name: str) -> tuple[set[bytes], set[str]]:
    """Byte patterns of a partner's raw training values and fine bin edges."""
    party = federation.nodes[name].job.party
    servicer = federation.binning[name]
    side = servicer._side()
    values = {float(v) for v in np.unique(train_raw(party))}
    edges = {float(e) for c in side.columns for e in c.binning.edges}
    interesting = {v for v in values | edges if v not in (0.0, 1.0) and abs(v) > 1e-9}
    patterns = {struct.pack("<d", v) for v in interesting} | {
        struct.pack(">d", v) for v in interesting
    }
    texts = {repr(v) for v in edges} | {f"{v:g}" for v in edges if len(f"{v:g}") > 3}
    return patterns, texts


def test_the_lender_never_receives_a_partner_raw_value_or_bin_edge(binned) -> None:  # type: ignore[no-untyped-def]
    federation, _, _ = binned
    lender = federation.fed.lender.name
    recorded = federation.binning[lender].recorded
    assert recorded
    received = [request for name, request, _ in recorded if not name.startswith("reply:")]
    received += [reply for name, _, reply in recorded if name.startswith("reply:")]
    kinds = {type(m).__name__ for m in received}
    assert kinds <= {"BinningStep", "BinSums", "Ack", "PlanReply"}
    sums = [m for m in received if isinstance(m, binning_pb2.BinSums)]
    assert {m.columns[0].name for m in sums} and len(sums) == len(federation.fed.hosts)
    blob = b"".join(m.SerializeToString() for m in received)
    for host in federation.fed.hosts:
        patterns, texts = _partner_secrets(federation, host.name)
        assert patterns and texts
        assert not any(p in blob for p in patterns)
        assert not any(t.encode() in blob for t in texts)


def test_partners_receive_only_ciphertexts_and_their_plan(binned) -> None:  # type: ignore[no-untyped-def]
    federation, _, _ = binned
    for host in federation.fed.hosts:
        recorded = federation.binning[host.name].recorded
        requests = {name: request for name, request, _ in recorded if not name.startswith("reply:")}
        assert set(requests) == {"PutLabels", "ComputeBinSums", "PutBinPlan"}
        labels = requests["PutLabels"].labels
        assert labels.scale_bits == 0 and labels.count > 500
        lender_key = json.loads(requests["PutLabels"].public_key_json)
        assert int(lender_key["n"]).bit_length() == 1024
        plan = requests["PutBinPlan"]
        own_columns = {c.name for c in federation.binning[host.name]._side().columns}
        assert {c.name for c in plan.columns} == own_columns
        for column in plan.columns:
            assert set(column.ListFields()[i][0].name for i in range(len(column.ListFields()))) <= {
                "name",
                "keep",
                "group_of_bin",
                "fold",  # merged bins too small for a design column (docs/BINNING.md)
            }


def test_the_driver_gets_the_iv_report_and_writes_it(binned) -> None:  # type: ignore[no-untyped-def]
    federation, result, out = binned
    rows = result["iv"]
    assert {r["party"] for r in rows} == {p.name for p in federation.fed.parties}
    assert set(rows[0]) == {"party", "column", "iv", "iv_fine", "fine_bins", "bins", "kept"}
    assert [r["iv"] for r in rows] == sorted((r["iv"] for r in rows), reverse=True)
    with open(out / "iv.csv", newline="", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    assert (out / "iv.png").stat().st_size > 1000
    assert "<table" in (out / "iv.html").read_text()
    for party, count in result["binned_features"].items():
        assert len(federation.nodes[party].job.party.feature_names) == count


def test_a_partner_refuses_labels_from_anyone_but_the_lender(binned) -> None:  # type: ignore[no-untyped-def]
    federation, _, _ = binned
    host = federation.fed.hosts[0].name
    import grpc

    from fedcredit.node.transport.client import open_channel

    channel = open_channel(
        federation.driver.addresses[host],
        party_name=host,
        credentials=None,
        self_name="coordinator",
    )
    stub = binning_pb2_grpc.BinningStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.PutLabels(binning_pb2.LabelVector(env=federation.driver.env()), timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    channel.close()


# -- end to end with real node processes ---------------------------------------------------
def fedcredit(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedcredit", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_fedcredit_run_with_binning_writes_the_iv_report_and_a_binned_model(tmp_path: Path) -> None:
    fed = small_federation(tmp_path)
    out = tmp_path / "run"
    result = fedcredit("run", str(fed), "--out", str(out), "--json", "--allow-small-keys")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iv"] and "binning" in metrics["seconds_per_phase"]
    assert 0.6 < metrics["auc"] <= 1.0
    assert (out / "iv.csv").read_text().startswith("party,column,iv")
    assert (out / "iv.png").stat().st_size > 1000
    part = json.loads((out / "model" / "ecommerce.json").read_text())
    assert part["encoder"]["kind"] == "bins" and part["encoder"]["points"]["rows"]


GERMAN_SPLIT = {
    "lender": ["A1", "A2", "A3", "A5"],
    "ecommerce": ["A4", "A6", "A7", "A9", "A12", "A13", "A15", "A17", "A19", "A20"],
    "payments": ["A8", "A10", "A11", "A14", "A16", "A18"],
}


def write_german(folder: Path) -> dict[str, tuple[Path, list[str]]]:
    """german.data (comma header, space-separated rows) as three party files keyed by row id."""
    lines = GERMAN.read_text(encoding="utf-8").splitlines()
    rows = [line.split() for line in lines[1:] if line.strip()]
    out = {}
    for party, columns in GERMAN_SPLIT.items():
        index = [int(c[1:]) - 1 for c in columns]
        path = folder / f"{party}.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", *columns, *(["default"] if party == "lender" else [])])
            for i, row in enumerate(rows):
                label = ["1" if row[20] == "2" else "0"] if party == "lender" else []
                writer.writerow([f"G{i:04d}", *(row[k] for k in index), *label])
        categorical = [c for c, k in zip(columns, index, strict=True) if rows[0][k].startswith("A")]
        out[party] = (path, categorical)
    return out


@pytest.mark.slow
def test_statlog_german_split_across_three_parties_runs_end_to_end(tmp_path: Path) -> None:
    if not GERMAN.is_file():
        pytest.skip(f"Statlog German data not found at {GERMAN}")
    parties = write_german(tmp_path)
    text = [
        '[federation]\nname = "german"\nkey_bits = 1024\nmin_overlap = 100\n',
        '[coordinator]\naddress = "127.0.0.1:50050"\n',
    ]
    for i, (name, (path, categorical)) in enumerate(parties.items()):
        role = "lending" if name == "lender" else name
        text.append(f'[[party]]\nname = "{name}"\nrole = "{role}"\ndata = "{path}"')
        text.append(f'address = "127.0.0.1:{50051 + i}"\nid_column = "id"')
        text.append(f"categorical = {json.dumps(categorical)}")
        if name == "lender":
            text.append('label_column = "default"')
        text.append("")
    text.append("[train]\nepochs = 4\nbatch_size = 250\nlearning_rate = 0.15\nl2 = 0.01")
    text.append("test_fraction = 0.25\nseed = 7\n")
    text.append("[binning]\nbins = 5\nmin_bin_share = 0.05\n")
    fed = tmp_path / "federation.toml"
    fed.write_text("\n".join(text), encoding="utf-8")
    out = tmp_path / "run"
    result = fedcredit("run", str(fed), "--out", str(out), "--json", "--allow-small-keys")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    iv = {r["column"]: r for r in metrics["iv"]}
    assert set(iv) == {c for columns in GERMAN_SPLIT.values() for c in columns}
    assert iv["A1"]["kept"]  # checking account status: the strongest German column
    assert metrics["rows_aligned"] == 997 and metrics["auc"] > 0.65
    part = json.loads((out / "model" / "ecommerce.json").read_text())
    labels = {row["label"] for row in part["encoder"]["points"]["rows"]}
    assert any(label.startswith("A4") for label in labels)  # categories by their codes
