"""Loan stacking served by the node processes: lending nodes upload their books to the
coordinator node, and the lender's Score RPC carries the two aggregates (docs/DEBT.md).

Real nodes built by ``build_node`` on 127.0.0.1:0 with real mutual TLS and 1024-bit keys, a
model trained by a real driver, and real node processes for ``fedcredit node`` and
``fedcredit score``. Expected figures come from reading the loans files with ``csv``.
"""

from __future__ import annotations

import csv
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedcredit.cli.demo import write_demo_federation
from fedcredit.config import Federation, load_federation
from fedcredit.data.synthetic import write_institutions
from fedcredit.node import debt_node
from fedcredit.node.debt_node import table_health_service
from fedcredit.node.transport.client import open_channel
from fedcredit.node.transport.peers import COORDINATOR, Peers, PeerStubs
from fedcredit.node.transport.tls import init_certs
from fedcredit.proto.v1 import (
    common_pb2,
    coordinator_pb2,
    scoring_pb2,
)
from tests.support.federation import NODES, InProcessNodes, existing_certs

pytestmark = pytest.mark.slow

LENDING = ("lender", "ecommerce", "payments")
"""Parties with a loans file: the lender (the querier) and two other lenders."""
PEOPLE = 60
DEAD_ADDRESS = "127.0.0.1:9"
SERVING = health_pb2.HealthCheckResponse.SERVING


def fedcredit(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedcredit", *args], capture_output=True, text=True, timeout=timeout
    )


def amount(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def write_loans(folder: Path, ids: list[str]) -> dict[str, Path]:
    """One loans file per lending party over the same people: balances with cents, several
    loans for one person, zero balances, and people known to no party's data."""
    rng = random.Random(11)
    people = [*ids[:PEOPLE], "X-NOT-IN-DATA"]
    paths: dict[str, Path] = {}
    for name in LENDING:
        rows = ["id,outstanding_balance,product,open_date"]
        for pid in people:
            if rng.random() < 0.55:
                day = rng.randint(1, 9)
                rows.append(f"{pid},{amount(rng.randint(1, 10**7))},card,2024-03-0{day}")
                if rng.random() < 0.2:  # A second loan of the same person: summed.
                    rows.append(f"{pid},{amount(rng.randint(0, 10**6))},auto,")
            elif rng.random() < 0.2:
                rows.append(f"{pid},0.00,card,")  # Repaid: not outstanding.
        paths[name] = folder / f"{name}-loans.csv"
        paths[name].write_text("\n".join(rows) + "\n", encoding="utf-8")
    return paths


def plain_balances(path: Path) -> dict[str, int]:
    """Outstanding cents per person, straight from the file (the reference computation)."""
    cents: dict[str, int] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            amount = int(Decimal(row["outstanding_balance"]) * 100)
            cents[row["id"].strip()] = cents.get(row["id"].strip(), 0) + amount
    return {pid: c for pid, c in cents.items() if c > 0}


def expected(loans: dict[str, Path], pid: str) -> tuple[int, int]:
    """(other lenders with a positive balance, their total in cents), the lender excluded."""
    owed = [plain_balances(loans[n]).get(pid, 0) for n in LENDING if n != "lender"]
    return sum(c > 0 for c in owed), sum(owed)


def with_loans(path: Path, data: dict[str, Path], loans: dict[str, Path]) -> None:
    text = path.read_text(encoding="utf-8")
    for name in LENDING:
        line = f'data = "{data[name]}"\n'
        text = text.replace(line, f'{line}loans = "{loans[name]}"\n')
    path.write_text(text, encoding="utf-8")


@dataclass
class Nodes(InProcessNodes):
    """In-process nodes of one federation (coordinator first, the lender last)."""

    channels: list[grpc.Channel] = field(default_factory=list)

    def start_all(
        self, *, model_dir: Path | None = None, coordinator_peers: dict[str, str] | None = None
    ) -> None:
        for name in NODES:
            peers = (coordinator_peers or {}) if name == COORDINATOR else dict(self.addresses)
            self.start(name, model_dir=None if name == COORDINATOR else model_dir, peers=peers)

    def wait_for_tables(self, timeout_s: float = 120.0) -> None:
        """Until the coordinator lists every lending party's table on its health service."""
        channel = open_channel(
            self.addresses[COORDINATOR],
            party_name=COORDINATOR,
            credentials=self.credentials("lender"),
            self_name="lender",
        )
        self.channels.append(channel)
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout_s
        for name in LENDING:
            request = health_pb2.HealthCheckRequest(service=table_health_service(name))
            while True:
                try:
                    if stub.Check(request, timeout=5).status == SERVING:
                        break
                except grpc.RpcError:
                    pass
                assert time.monotonic() < deadline, f"no table of {name} at the coordinator"
                time.sleep(0.1)

    def start_scoring_job(self) -> None:
        """What ``fedcredit score`` does before scoring: a fresh coordinator key."""
        operator = Peers(
            self.addresses,
            "lender",
            credentials=self.credentials(COORDINATOR),
            own_name=COORDINATOR,
        )
        env = common_pb2.Envelope(job_id="scoring-test", seq=1)
        request = coordinator_pb2.StartJobRequest(env=env, key_bits=self.fed.key_bits)
        operator.call(COORDINATOR, lambda s: s.coordinator.StartJob, request, 120.0)
        operator.close()

    def score(self, ids: list[str]) -> list[scoring_pb2.ScoredApplicant]:
        """The lender's Score RPC, called by its own operator (the lender's certificate)."""
        channel = open_channel(
            self.addresses["lender"],
            party_name="lender",
            credentials=self.credentials("lender"),
            self_name="lender",
        )
        self.channels.append(channel)
        reply = PeerStubs(channel).Score(scoring_pb2.ScoreRequest(ids=ids), timeout=180)
        return list(reply.applicants)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        super().close()


@dataclass
class Trained:
    fed: Federation
    folder: Path
    model_dir: Path
    loans: dict[str, Path]
    applicants: list[str]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """A three-party federation whose parties all hold loan books, and a model trained by a
    real driver against nodes built by ``build_node`` (which serve the debt check meanwhile)."""
    folder = tmp_path_factory.mktemp("debt-nodes")
    data = write_institutions(folder / "data", 400, seed=3)
    path = write_demo_federation(folder, data, key_bits=1024, epochs=2)
    path.write_text(path.read_text().replace("batch_size = 4096", "batch_size = 64"))
    ids = [row["id"] for row in csv.DictReader(data["lender"].open(encoding="utf-8"))]
    loans = write_loans(folder, ids)
    with_loans(path, data, loans)
    fed = load_federation(path, allow_small_keys=True)
    nodes = Nodes(fed, folder, init_certs(folder / "certs", fed.all_names))
    try:
        nodes.start_all()
        driver = nodes.new_driver()
        driver.run(folder / "run")
        driver.peers.close()
    finally:
        nodes.close()
    applicants = [*ids[:PEOPLE], "X-NOT-IN-DATA", "NOBODY"]
    yield Trained(fed, folder, folder / "run" / "model", loans, applicants)


@pytest.fixture(scope="module")
def scoring(trained: Trained) -> Iterator[Nodes]:
    certs = existing_certs(trained.folder / "certs", trained.fed.all_names)
    nodes = Nodes(trained.fed, trained.folder, certs)
    try:
        nodes.start_all(model_dir=trained.model_dir)
        nodes.start_scoring_job()
        yield nodes
    finally:
        nodes.close()


def test_the_books_cover_zero_one_and_two_other_lenders(trained: Trained) -> None:
    counts = {expected(trained.loans, pid)[0] for pid in trained.applicants}
    assert counts == {0, 1, 2}


def test_score_carries_the_exact_count_and_total_of_other_lenders(
    trained: Trained, scoring: Nodes
) -> None:
    items = scoring.score(trained.applicants)

    assert [item.id for item in items] == trained.applicants
    for item in items:
        count, cents = expected(trained.loans, item.id)
        assert item.HasField("other_lenders"), item
        assert item.other_lenders == count, item.id
        if count == 1:
            # The count rule (2 by default): one lender's balance is never revealed.
            assert not item.HasField("total_outstanding")
            assert "withheld" in item.debt_reason
        else:
            assert item.total_outstanding == amount(cents)
            assert item.debt_reason == ""


def test_score_keeps_scoring_beside_the_aggregates(trained: Trained, scoring: Nodes) -> None:
    items = {item.id: item for item in scoring.score(trained.applicants)}

    assert items["NOBODY"].error == "not in the lender's data"
    assert items["NOBODY"].other_lenders == 0
    known = [items[pid] for pid in trained.applicants[:PEOPLE]]
    assert all(not item.error and 350 <= item.score <= 950 for item in known)


def test_the_coordinator_lists_each_uploaded_table(scoring: Nodes) -> None:
    scoring.wait_for_tables()

    stub = health_pb2_grpc.HealthStub(scoring.channels[-1])
    unknown = health_pb2.HealthCheckRequest(service=table_health_service("nobody"))
    with pytest.raises(grpc.RpcError) as info:
        stub.Check(unknown, timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_score_has_a_debt_reason_when_a_lender_node_cannot_be_reached(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The coordinator is told that the payments node lives at a dead address: the masked
    # decryption it needs from that lender fails, while scoring itself is unaffected. The
    # lender does not wait for the consortium (its start-up window is 0 s here).
    monkeypatch.setattr(debt_node, "READY_TIMEOUT_S", 0.0)
    nodes = Nodes(trained.fed, tmp_path, init_certs(tmp_path / "certs", trained.fed.all_names))
    try:
        nodes.start_all(model_dir=trained.model_dir, coordinator_peers={"payments": DEAD_ADDRESS})
        nodes.wait_for_tables()
        nodes.start_scoring_job()

        items = nodes.score(trained.applicants[:5])
    finally:
        nodes.close()

    for item in items:
        assert item.score > 0 and not item.error
        assert not item.HasField("other_lenders") and not item.HasField("total_outstanding")
        assert item.debt_reason.startswith("debt check unavailable")
        assert "did not answer" in item.debt_reason and "payments" in item.debt_reason


def test_lenders_upload_again_to_a_restarted_coordinator(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The new coordinator is back on the same address well within one watch period, so a
    # lender that only checked the coordinator's overall health would never notice.
    monkeypatch.setattr(debt_node, "WATCH_S", 1.0)
    nodes = Nodes(trained.fed, tmp_path, init_certs(tmp_path / "certs", trained.fed.all_names))
    try:
        nodes.start_all(model_dir=trained.model_dir)
        nodes.wait_for_tables()
        nodes.stop(COORDINATOR)
        nodes.start(COORDINATOR, listen=nodes.addresses[COORDINATOR], peers={})

        nodes.wait_for_tables(timeout_s=30)
        nodes.start_scoring_job()
        items = nodes.score(trained.applicants[:PEOPLE])
    finally:
        nodes.close()

    for item in items:
        assert item.other_lenders == expected(trained.loans, item.id)[0]


def test_a_bad_loans_file_stops_the_node_with_one_line(trained: Trained, tmp_path: Path) -> None:
    loans = tmp_path / "loans.csv"
    loans.write_text("id,outstanding_balance\nC0000001,10.00\nC0000002,12.345\n", "utf-8")
    path = tmp_path / "federation.toml"
    text = trained.fed.path.read_text(encoding="utf-8")
    path.write_text(text.replace(str(trained.loans["lender"]), str(loans)), encoding="utf-8")

    result = fedcredit(
        "node", "--federation", str(path), "--party", "lender", "--listen", "127.0.0.1:0",
        "--certs", str(trained.folder / "certs"), "--allow-small-keys", timeout=120,
    )  # fmt: skip

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(loans) in lines[0]
    assert "row 3" in lines[0] and "column 'outstanding_balance'" in lines[0]


def test_fedcredit_score_writes_the_debt_columns(trained: Trained, tmp_path: Path) -> None:
    ids = tmp_path / "ids.csv"
    ids.write_text("id\n" + "\n".join(trained.applicants) + "\n", encoding="utf-8")
    out = tmp_path / "scores.csv"

    result = fedcredit(
        "score", str(trained.fed.path), "--model", str(trained.model_dir), "--ids", str(ids),
        "--out", str(out), "--json", "--allow-small-keys",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert list(rows[0]) == [
        *("id", "probability", "score", "grade", "reasons", "error"),
        *("other_lenders", "total_outstanding", "debt_reason"),
    ]
    assert [row["id"] for row in rows] == trained.applicants
    for row in rows:
        count, cents = expected(trained.loans, row["id"])
        assert int(row["other_lenders"]) == count
        total = "" if count == 1 else amount(cents)
        assert row["total_outstanding"] == total
