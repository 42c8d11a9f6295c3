"""End to end with real node processes: `fedcredit decide` against the policy computed plainly
on what `fedcredit score` gives (the loan-stacking check on), `fedcredit invite` delivering
ids only to a partner, and bad input refused with one line and nothing written."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedcredit.model.scorecard import Scorecard
from tests.support.cli import fedcredit, small_federation
from tests.support.decisions import UNAVAILABLE, plain_decision

pytestmark = pytest.mark.slow

LENDING = ("lender", "ecommerce", "payments")
# The synthetic population scores about 480-590; the debt rules are tight so that they fire.
POLICY: dict[str, Any] = {
    "approve_score": 540.0,
    "refer_score": 520.0,
    "best_offer_score": 580.0,
    "max_other_lenders": 1,
    "max_total_outstanding": 40000.0,
}
FLAGS = ("--allow-small-keys",)


def ids_of(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return [row["id"] for row in csv.DictReader(handle)]


def write_loans(folder: Path, ids: list[str]) -> dict[str, Path]:
    rng = random.Random(3)
    paths = {}
    for name in LENDING:
        rows = ["id,outstanding_balance"]
        rows += [
            f"{pid},{rng.randint(100, 6_000_000) / 100:.2f}" for pid in ids if rng.random() < 0.5
        ]
        paths[name] = folder / f"{name}-loans.csv"
        paths[name].write_text("\n".join(rows) + "\n", encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    folder = tmp_path_factory.mktemp("decide")
    fed = small_federation(folder)
    # Customers of every party: a partner answers for a stranger with a customer's partial
    # score picked by a keyed hash under its node's secret, which each local run makes afresh.
    held = [ids_of(folder / "data" / f"{name}.csv") for name in LENDING]
    ids = [pid for pid in held[0] if all(pid in other for other in held[1:])]
    loans = write_loans(folder, ids[:80])
    text = fed.read_text()
    for name in LENDING:
        line = f'data = "{folder / "data" / f"{name}.csv"}"\n'
        assert line in text
        text = text.replace(line, f'{line}loans = "{loans[name]}"\n')
    text += "\n[policy]\n" + "".join(f"{k} = {v}\n" for k, v in POLICY.items())
    fed.write_text(text)
    result = fedcredit("run", str(fed), "--out", str(folder / "run"), "--json", *FLAGS)
    assert result.returncode == 0, result.stderr
    return fed, folder / "run" / "model", ids


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def expected_from_scores(row: dict[str, str]) -> tuple[float, Any]:
    """The score at full precision (from the probability) and the plain decision of a row of
    SCORES.csv, its debt columns mapped as docs/DECISIONS.md says."""
    p = float(row["probability"])
    score = float(Scorecard().score_from_logit(np.array([np.log(p / (1 - p))]))[0])
    debt: Any = None
    if row["other_lenders"]:
        total = row["total_outstanding"]
        debt = (int(row["other_lenders"]), round(float(total) * 100) if total else None)
    elif row["debt_reason"]:
        debt = UNAVAILABLE
    reasons = [r for r in row["reasons"].split(";") if r]
    return score, plain_decision(POLICY, score, reasons, debt)


def test_decide_matches_the_policy_computed_plainly_on_the_scores_score_gives(
    trained: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    fed, model, ids = trained
    applicants = [*ids[:60], "NOBODY"]
    ids_csv = tmp_path / "ids.csv"
    ids_csv.write_text("id\n" + "\n".join(applicants) + "\n")
    scores, decisions = tmp_path / "scores.csv", tmp_path / "decisions.csv"
    common = ("--model", str(model), "--ids", str(ids_csv), *FLAGS)

    scored = fedcredit("score", str(fed), *common, "--out", str(scores), "--json")
    decided = fedcredit("decide", str(fed), *common, "--out", str(decisions), "--json")

    assert scored.returncode == 0, scored.stderr
    assert decided.returncode == 0, decided.stderr
    by_score, by_decide = rows(scores), rows(decisions)
    assert [r["id"] for r in by_decide] == applicants
    assert len(json.loads(decided.stdout)) == len(applicants)
    for row, got in zip(by_score[:-1], by_decide[:-1], strict=True):
        score, plain = expected_from_scores(row)
        assert float(got["score"]) == pytest.approx(score, abs=0.006)
        assert got["grade"] == row["grade"]
        assert got["decision"] == plain.decision, row
        assert got["limit"] == ("" if plain.limit is None else str(plain.limit))
        assert got["apr"] == ("" if plain.apr is None else f"{plain.apr:.3f}")
        assert got["instalments"] == ";".join(str(n) for n in plain.instalments)
        assert got["reasons"] == ";".join(plain.reasons)
    assert by_decide[-1]["decision"] == "refer" and by_decide[-1]["score"] == ""
    fired = {r for row in by_decide for r in row["reasons"].split(";")}
    assert {"too many other lenders", "total outstanding too high"} <= fired
    assert {r["decision"] for r in by_decide} == {"approve", "refer", "decline"}


def test_invite_writes_the_approved_and_delivers_their_ids_alone(
    trained: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    fed, model, _ = trained
    invites = tmp_path / "invites.csv"

    result = fedcredit(
        "invite", str(fed), "--model", str(model), "--out", str(invites),
        "--deliver-to", "ecommerce", "--json", *FLAGS,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    invited = rows(invites)
    assert invited and all(r["decision"] == "approve" and r["limit"] for r in invited)
    assert summary["invited"] == len(invited) < summary["decided"]
    assert summary["delivered"] == len(invited)
    delivered = Path(summary["delivered_file"])
    assert delivered.parent.name == "invitations" and delivered.is_relative_to(tmp_path)
    assert delivered.read_text().splitlines() == ["id", *(r["id"] for r in invited)]


def test_a_bad_ids_file_is_refused_with_one_line_and_nothing_written(
    trained: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    fed, model, ids = trained
    ids_csv = tmp_path / "ids.csv"
    ids_csv.write_text(f"id,name\n{ids[0]},a\n,b\n")
    out = tmp_path / "decisions.csv"

    result = fedcredit(
        "decide", str(fed), "--model", str(model), "--ids", str(ids_csv), "--out", str(out), *FLAGS
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "ids.csv" in result.stderr and "row 3" in result.stderr and "'id'" in result.stderr
    assert not out.exists()


def test_decide_without_a_policy_is_refused_naming_the_table(
    trained: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    fed, model, ids = trained
    bare = tmp_path / "fed.toml"
    bare.write_text(fed.read_text().split("\n[policy]\n")[0])
    ids_csv = tmp_path / "ids.csv"
    ids_csv.write_text(f"id\n{ids[0]}\n")
    out = tmp_path / "decisions.csv"

    result = fedcredit(
        "decide", str(bare), "--model", str(model), "--ids", str(ids_csv), "--out", str(out), *FLAGS
    )

    assert result.returncode == 2
    assert "[policy]" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
