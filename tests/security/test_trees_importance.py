"""Feature importance of a trees model on real nodes (in process, mutual TLS, 1024-bit keys):
each party writes its own ``importance.csv`` in its own folder, a partner gets no gain.

Recorded with the server interceptor (``tests.support.recorder``): every byte a partner
received (requests it served, replies to its calls) is searched for every split gain the lender
holds and every column total, in every encoding a number could travel in."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from fedcredit.config import load_federation
from tests.integration.test_trees_nodes import local_run, run_on_nodes, trees_federation

pytestmark = pytest.mark.slow

PARTNERS = ("ecommerce", "payments")


def _encodings(v: float) -> list[bytes]:
    out = [repr(v).encode(), np.float64(v).tobytes(), np.float64(v).tobytes()[::-1]]
    out += [np.float32(v).tobytes(), f"{v:.6g}".encode()]
    out += [round(v * 2**bits).to_bytes(8, "big", signed=True) for bits in (16, 24, 32)]
    return [s for s in out if len(s) >= 4]


def _table(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


@pytest.mark.parametrize("mode", ["mix", "joint"])
def test_each_party_writes_its_own_importance_and_no_partner_receives_a_gain(
    tmp_path: Path, mode: str
) -> None:
    fed_path = trees_federation(tmp_path, mode=mode, trees=3 if mode == "mix" else 2)
    metrics, exchanges = run_on_nodes(tmp_path, fed_path)
    found = {p.parent.name: p for p in tmp_path.rglob("importance.csv")}
    lender_part = json.loads((tmp_path / "nodes" / "out" / "model" / "lender.json").read_text())

    assert set(found) == {"lender", *PARTNERS}
    lender_rows = _table(found["lender"])
    assert list(lender_rows[0]) == ["party", "column", "splits", "gain"]
    assert {r["column"] for r in lender_rows if r["party"] == "lender"} == set(
        lender_part["feature_names"]
    )
    assert [(r["party"], r["column"]) for r in lender_rows if r["party"] != "lender"] == [
        (p, "*") for p in PARTNERS
    ]
    # The same file as the in-process run with the same seed.
    local, partners = local_run(load_federation(fed_path, allow_small_keys=True))
    assert found["lender"].read_text(encoding="utf-8") == local.importance_csv()
    for p in partners:
        rows = _table(found[p.name])
        assert list(rows[0]) == ["column", "splits" if mode == "mix" else "picks"]
        if mode == "mix":
            assert found[p.name].read_text(encoding="utf-8") == p.importance_csv()
        # In joint, a partner's picks include decoys drawn from the system's randomness where it
        # had no candidate (protocol/trees/joint.py), so only their count is fixed.
        local_rows = list(csv.DictReader(io.StringIO(p.importance_csv())))
        assert sum(int(r["picks" if mode == "joint" else "splits"]) for r in local_rows) == sum(
            int(r[list(rows[0])[1]]) for r in rows
        )
        told = sum(int(r[list(rows[0])[1]]) for r in rows)
        learned = next(int(r["splits"]) for r in lender_rows if r["party"] == p.name)
        assert told == learned if mode == "mix" else told >= learned

    gains = [g for t in lender_part["trees"] for g in t["gain"] if g]
    gains += [float(r["gain"]) for r in lender_rows if float(r["gain"])]
    assert gains
    secrets = [s for v in gains for s in _encodings(v)]
    to_partners = b"".join(
        (e.request if e.node in PARTNERS else b"") + (e.response if e.caller in PARTNERS else b"")
        for e in exchanges
    )
    assert to_partners
    assert [s for s in secrets if s in to_partners] == []
    # The driver's metrics hold no importance ("gains" there is the cumulative gains chart).
    report = json.dumps(metrics, default=str).encode()
    assert b"importance" not in report and [s for s in secrets if s in report] == []
