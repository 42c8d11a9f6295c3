"""The loan-stacking protocol over real gRPC with mutual TLS on 127.0.0.1, and the CLI."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import grpc
import pytest

from fedcredit.cli.debt import debt_check
from fedcredit.debt import DebtQuery
from fedcredit.driver.debt import COORDINATOR, LocalConsortium
from fedcredit.errors import ConfigError, DataError
from fedcredit.node.serde.debt import points_to_proto, query_to_proto, upload_to_chunks
from fedcredit.node.transport.tls import init_certs
from fedcredit.proto.v1 import debt_pb2

KEY_BITS = 1024
LENDERS = ["bank", "fintech", "card"]


@pytest.fixture(scope="module")
def books() -> dict[str, dict[str, int]]:
    rng = random.Random(3)
    people = [f"P{i}" for i in range(60)]
    return {n: {p: rng.randint(1, 10**8) for p in people if rng.random() < 0.5} for n in LENDERS}


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory, books):  # type: ignore[no-untyped-def]
    certs = init_certs(tmp_path_factory.mktemp("certs"), [*LENDERS, COORDINATOR])
    with LocalConsortium(LENDERS, certs, key_bits=KEY_BITS, min_count_floor=1) as running:
        for name, balances in books.items():
            running.upload(name, balances)
        yield running


def test_a_batch_query_over_grpc_matches_a_plain_computation(consortium, books) -> None:  # type: ignore[no-untyped-def]
    ids = [f"P{i}" for i in range(60)] + ["nobody"]

    results = consortium.querier("bank").ask(ids, min_count_for_total=1)

    for pid, result in zip(ids, results, strict=True):
        owed = [books[n][pid] for n in ("fintech", "card") if pid in books[n]]
        assert (result.other_lenders, result.total_outstanding_cents) == (len(owed), sum(owed))


def test_a_lender_may_not_ask_another_lender_to_decrypt(consortium) -> None:  # type: ignore[no-untyped-def]
    stub = consortium.stub("bank", "fintech")

    with pytest.raises(grpc.RpcError) as caught:
        stub.DecryptMasked(debt_pb2.DebtMaskedBatch(size=1), timeout=10)

    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_the_coordinator_refuses_malformed_points(consortium) -> None:  # type: ignore[no-untyped-def]
    stub = consortium.stub("bank", COORDINATOR)
    bad = debt_pb2.DebtQueryRequest(
        size=2,
        recipient_key=bytes(32),
        lenders=[debt_pb2.DebtLenderTags(lender="card", evaluated=b"x", points=b"x")],
    )

    with pytest.raises(grpc.RpcError) as caught:
        stub.Query(bad, timeout=10)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "points" in (caught.value.details() or "")


def test_wire_messages_to_the_coordinator_hold_no_identifier_or_balance(consortium) -> None:  # type: ignore[no-untyped-def]
    pid, balance = "ID-7q2Zx-UNIQUE", 424_242_424
    pending = consortium.lenders["card"].prepare_upload({pid: balance})
    query = DebtQuery([pid])
    lender = consortium.lenders["fintech"]
    request = query.request({"fintech": lender.evaluate(query.oprf_request())})

    wire = b"".join(c.SerializeToString() for c in upload_to_chunks(pending.table))
    wire += query_to_proto(request).SerializeToString()
    wire += points_to_proto(query.oprf_request().points).SerializeToString()

    for needle in (pid.encode(), str(balance).encode(), balance.to_bytes(4, "big")):
        assert needle not in wire


def write_federation(tmp_path: Path, books: dict[str, dict[str, int]]) -> Path:
    data = tmp_path / "features.csv"
    data.write_text("id,x\nP1,1\n", encoding="utf-8")
    parties = []
    for index, (name, book) in enumerate(books.items()):
        loans = tmp_path / f"{name}-loans.csv"
        rows = "".join(f"{pid},{cents // 100}.{cents % 100:02d}\n" for pid, cents in book.items())
        loans.write_text("id,outstanding_balance\n" + rows, encoding="utf-8")
        role, label = ("lending", 'label_column = "y"\n') if index == 0 else ("other", "")
        parties.append(
            f'[[party]]\nname = "{name}"\nrole = "{role}"\naddress = "127.0.0.1:{50061 + index}"\n'
            f'data = "{data}"\nid_column = "id"\n{label}loans = "{loans}"\n'
        )
    text = (
        f'[federation]\nname = "t"\nkey_bits = {KEY_BITS}\n\n[coordinator]\n'
        'address = "127.0.0.1:50060"\n\n' + "\n".join(parties)
    )
    path = tmp_path / "federation.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_debt_check_writes_one_row_per_applicant_in_input_order(
    tmp_path: Path, books: dict[str, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    federation = write_federation(tmp_path, books)
    ids = ["P5", "nobody", "P1", "P5", "P30"]
    applicants = tmp_path / "ids.csv"
    applicants.write_text("id\n" + "\n".join(ids) + "\n", encoding="utf-8")
    out = tmp_path / "out.csv"

    status = debt_check(federation, "card", applicants, out, True)

    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert status == 0
    assert [r["id"] for r in rows] == ids
    for row in rows:
        owed = [books[n][row["id"]] for n in ("bank", "fintech") if row["id"] in books[n]]
        assert int(row["other_lenders"]) == len(owed)
        if len(owed) == 1:
            assert row["total_outstanding"] == "" and "withheld" in row["reason"]
        else:
            cents = sum(owed)
            assert row["total_outstanding"] == f"{cents // 100}.{cents % 100:02d}"
    assert json.loads(capsys.readouterr().out)["applicants"] == len(ids)


def test_debt_check_refuses_an_unknown_lender_and_a_bad_loans_file(tmp_path: Path, books) -> None:  # type: ignore[no-untyped-def]
    federation = write_federation(tmp_path, books)
    applicants = tmp_path / "ids.csv"
    applicants.write_text("id\nP1\n", encoding="utf-8")

    with pytest.raises(ConfigError, match="'nobody' has no loans file"):
        debt_check(federation, "nobody", applicants, None, False)
    (tmp_path / "bank-loans.csv").write_text("id,outstanding_balance\nP1,-3\n", encoding="utf-8")
    with pytest.raises(DataError, match="row 2, column 'outstanding_balance'"):
        debt_check(federation, "card", applicants, None, False)
