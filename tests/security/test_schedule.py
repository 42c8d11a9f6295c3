"""The coordinator's decryption schedule, rule by rule (security review F4, F13).

``DecryptionGate`` decides for the coordinator node (``tests/security/test_decryption.py`` runs
the attacks over mutual TLS against real nodes); here each rule meets the request that breaks
it, with the real audit log in a temporary folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fedcredit.config import load_federation
from fedcredit.node.decryption import job_rules, width_cap
from fedcredit.protocol.fixedpoint import (
    job_gradient_value_bits,
    largest_batch,
    loss_value_bits,
    score_value_bits,
)
from fedcredit.protocol.schedule import (
    AuditLog,
    DecryptionGate,
    DecryptionRefused,
    JobRules,
    Schedule,
    Ticket,
)

JOB = "job-1"
RULES = JobRules(
    lender="lender",
    hosts=("ecommerce", "payments"),
    batch_size=64,
    epochs=2,
    x_scale_bits=16,
    sigmoid="local",
    width_caps={"lender": 5, "ecommerce": 8, "payments": None},
    max_score_rows=1000,
)
SCHEDULE = Schedule(
    train_rows=216,
    validation_rows=24,
    test_rows=80,
    widths={"lender": 5, "ecommerce": 8, "payments": 5},
)
GRADIENT_BITS = job_gradient_value_bits(216, 64, 16, "local")
SCORE_BITS = score_value_bits()
LAST = largest_batch(216, 64)


@pytest.fixture()
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "decryption-audit.jsonl", clock=lambda: 1_800_000_000.0)


@pytest.fixture()
def gate(audit: AuditLog) -> DecryptionGate:
    gate = DecryptionGate(RULES, audit)
    gate.start_job(JOB)
    gate.register("coordinator", JOB, SCHEDULE)
    return gate


def ticket(
    caller: str,
    step: str,
    shape: tuple[tuple[int, int], ...],
    epoch: int = 0,
    batch: int = 0,
    digest: str = "a",
) -> Ticket:
    return Ticket(caller, JOB, step, epoch, batch, shape, digest)


def refused(gate: DecryptionGate, t: Ticket) -> str:
    with pytest.raises(DecryptionRefused) as info:
        gate.admit(t)
    return str(info.value)


def lines(audit: AuditLog) -> list[dict[str, object]]:
    return [json.loads(x) for x in audit.path.read_text().splitlines()]


# -- what the protocol asks for passes --------------------------------------------------------
def test_every_request_of_an_honest_epoch_is_admitted(gate: DecryptionGate) -> None:
    for batch in range(3):
        for party, width in SCHEDULE.widths.items():
            gate.admit(ticket(party, "train", ((width, GRADIENT_BITS),), 0, batch))
    gate.admit(ticket("lender", "loss", ((LAST, SCORE_BITS), (1, loss_value_bits(LAST))), 0, 2))
    gate.admit(ticket("lender", "validation", ((24, SCORE_BITS),), 0, 3))
    gate.admit(ticket("lender", "test", ((80, SCORE_BITS),), 2, 0))


# -- F4: the attacks, at the gate ------------------------------------------------------------
def test_a_host_with_the_residual_of_its_batch_is_refused(gate: DecryptionGate) -> None:
    reason = refused(gate, ticket("ecommerce", "train", ((64, 50),)))
    assert "8 slots of" in reason


@pytest.mark.parametrize("step", ["loss", "validation", "test", "score"])
def test_a_host_may_ask_only_for_its_gradient(gate: DecryptionGate, step: str) -> None:
    reason = refused(gate, ticket("ecommerce", step, ((24, SCORE_BITS),)))
    assert "only the lender" in reason


def test_a_second_request_of_a_step_is_refused_and_an_identical_retry_admitted(
    gate: DecryptionGate, audit: AuditLog
) -> None:
    honest = ticket("ecommerce", "train", ((8, GRADIENT_BITS),), digest="honest")
    gate.admit(honest)
    gate.admit(honest)  # the same bytes again: a retry after a dropped reply

    reason = refused(gate, ticket("ecommerce", "train", ((8, GRADIENT_BITS),), digest="other"))

    assert "one per step" in reason
    assert [x["decision"] for x in lines(audit)[-3:]] == ["allowed", "retry", "refused"]


def test_a_refused_request_does_not_use_up_the_step(gate: DecryptionGate) -> None:
    refused(gate, ticket("ecommerce", "train", ((9, GRADIENT_BITS),), digest="greedy"))
    gate.admit(ticket("ecommerce", "train", ((8, GRADIENT_BITS),), digest="honest"))


def test_one_slot_more_than_the_width_is_refused(gate: DecryptionGate) -> None:
    assert "8 slots" in refused(gate, ticket("ecommerce", "train", ((9, GRADIENT_BITS),)))


def test_a_lender_squaring_one_slot_through_the_loss_is_refused(gate: DecryptionGate) -> None:
    one = ((1, SCORE_BITS), (1, loss_value_bits(1)))
    assert f"{LAST} slots" in refused(gate, ticket("lender", "loss", one, 0, 2))
    full = ((LAST, SCORE_BITS), (1, loss_value_bits(LAST)))
    assert "batch 2 only" in refused(gate, ticket("lender", "loss", full, 0, 0))


def test_the_validation_rows_are_decrypted_once_an_epoch(gate: DecryptionGate) -> None:
    gate.admit(ticket("lender", "validation", ((24, SCORE_BITS),), 0, 3, digest="first"))
    assert "one per step" in refused(
        gate, ticket("lender", "validation", ((24, SCORE_BITS),), 0, 3, digest="again")
    )
    gate.admit(ticket("lender", "validation", ((24, SCORE_BITS),), 1, 3, digest="next epoch"))


def test_a_training_job_decrypts_no_scoring_request(gate: DecryptionGate) -> None:
    assert "scoring job" in refused(gate, ticket("lender", "score", ((64, SCORE_BITS),)))


def test_a_scoring_job_decrypts_the_lender_scores_and_nothing_else(audit: AuditLog) -> None:
    gate = DecryptionGate(RULES, audit)
    gate.start_job("scoring-1")
    scores = Ticket("lender", "scoring-1", "score", 0, 0, ((1000, SCORE_BITS),), "a")
    gate.admit(scores)
    gate.admit(scores)  # scoring is not once-only (its quotas are the partners')
    for bad in (
        Ticket("lender", "scoring-1", "score", 0, 0, ((1001, SCORE_BITS),), "b"),
        Ticket("lender", "scoring-1", "train", 0, 0, ((5, GRADIENT_BITS),), "c"),
        Ticket("ecommerce", "scoring-1", "score", 0, 0, ((10, SCORE_BITS),), "d"),
    ):
        refused(gate, bad)


@pytest.mark.parametrize(("epoch", "batch"), [(2, 0), (0, 3)])
def test_a_step_past_the_job_is_refused(gate: DecryptionGate, epoch: int, batch: int) -> None:
    refused(gate, ticket("ecommerce", "train", ((8, GRADIENT_BITS),), epoch, batch))


def test_another_job_is_refused(gate: DecryptionGate) -> None:
    other = Ticket("ecommerce", "job-2", "train", 0, 0, ((8, GRADIENT_BITS),), "a")
    assert "job-2" in refused(gate, other)


def test_a_gate_without_the_federation_rules_refuses_everything(audit: AuditLog) -> None:
    gate = DecryptionGate(None, audit)
    gate.start_job(JOB)
    assert "rules" in refused(gate, ticket("lender", "score", ((1, SCORE_BITS),)))


# -- F13: one width per job ------------------------------------------------------------------
def test_a_gradient_sized_from_its_own_batch_is_refused(gate: DecryptionGate) -> None:
    # The old width: from the batch's largest |x| (here below 4 standard deviations).
    data_width = GRADIENT_BITS - 1
    assert "85 bits" in refused(gate, ticket("payments", "train", ((5, data_width),)))


def test_the_gradient_width_depends_on_the_settings_only() -> None:
    # Rows of the largest batch (88: 7 bits), the clip bound 8 * 2^16 (20 bits), the residual's
    # scale (44), the score bound (12) and 2: whatever the rows hold.
    assert job_gradient_value_bits(216, 64, 16, "local") == 7 + 20 + 44 + 12 + 2
    assert job_gradient_value_bits(216, 64, 16, "taylor") == GRADIENT_BITS - 24


# -- the schedule: who registers it, and what bounds it ----------------------------------------
def test_only_the_driver_registers_a_schedule(audit: AuditLog) -> None:
    gate = DecryptionGate(RULES, audit)
    gate.start_job(JOB)
    with pytest.raises(DecryptionRefused, match="operator"):
        gate.register("ecommerce", JOB, SCHEDULE)
    assert "no decryption schedule" in refused(
        gate, ticket("ecommerce", "train", ((8, GRADIENT_BITS),))
    )


def test_a_schedule_is_fixed_once(gate: DecryptionGate) -> None:
    gate.register("coordinator", JOB, SCHEDULE)  # the same again: a retry
    wider = Schedule(216, 24, 80, {**SCHEDULE.widths, "ecommerce": 40})
    with pytest.raises(DecryptionRefused, match="already"):
        gate.register("coordinator", JOB, wider)


@pytest.mark.parametrize(
    ("widths", "match"),
    [
        ({"lender": 5, "ecommerce": 9, "payments": 5}, "more than the 8"),
        ({"lender": 5, "ecommerce": 8, "payments": 64}, "mini-batch has 64 rows"),
        ({"lender": 5, "ecommerce": 8}, "parties"),
        ({"lender": 5, "ecommerce": 8, "payments": 5, "outsider": 1}, "parties"),
        ({"lender": 0, "ecommerce": 8, "payments": 5}, "0 design columns"),
    ],
)
def test_a_schedule_widening_a_party_quota_is_refused(
    audit: AuditLog, widths: dict[str, int], match: str
) -> None:
    gate = DecryptionGate(RULES, audit)
    gate.start_job(JOB)
    with pytest.raises(DecryptionRefused, match=match):
        gate.register("coordinator", JOB, Schedule(216, 24, 80, widths))
    assert lines(audit)[-1]["decision"] == "refused"


def test_the_federation_file_bounds_the_width_of_the_parties_it_lists(tmp_path: Path) -> None:
    text = """[federation]
name = "caps"
key_bits = 2048
[coordinator]
address = "127.0.0.1:1"
[[party]]
name = "lender"
role = "lending"
address = "127.0.0.1:2"
data = "lender.csv"
id_column = "id"
label_column = "default"
features = ["a", "b"]
[[party]]
name = "shop"
role = "ecommerce"
address = "127.0.0.1:3"
data = "shop.csv"
id_column = "id"
"""
    path = tmp_path / "federation.toml"
    path.write_text(text)
    fed = load_federation(path)
    binned = tmp_path / "binned.toml"
    binned.write_text(text + "[binning]\n")

    rules = job_rules(fed)

    assert rules.width_caps == {"lender": 2 * 20 + 1, "shop": None}
    assert width_cap(load_federation(binned), fed.lender) == 2 + 1  # one WOE column each
    assert rules.hosts == ("shop",) and rules.batch_size == fed.train.batch_size


# -- the audit log ----------------------------------------------------------------------------
def test_the_audit_log_chains_every_line_and_survives_a_restart(
    gate: DecryptionGate, audit: AuditLog
) -> None:
    gate.admit(ticket("ecommerce", "train", ((8, GRADIENT_BITS),)))
    refused(gate, ticket("payments", "test", ((80, SCORE_BITS),)))
    # A restarted coordinator (its key gone with it, so a new job) goes on with the same file.
    again = DecryptionGate(RULES, AuditLog(audit.path))
    again.start_job("job-2")
    refused(again, ticket("lender", "test", ((80, SCORE_BITS),)))

    raw = audit.path.read_text().splitlines()
    entries = [json.loads(x) for x in raw]
    assert [e["prev"] for e in entries[1:]] == [
        hashlib.sha256(x.encode()).hexdigest() for x in raw[:-1]
    ]
    first = entries[1]
    assert {k: first[k] for k in ("caller", "job", "step", "epoch", "batch", "count")} == {
        "caller": "ecommerce",
        "job": JOB,
        "step": "train",
        "epoch": 0,
        "batch": 0,
        "count": [8],
    }
    assert first["value_bits"] == [GRADIENT_BITS] and first["decision"] == "allowed"
    assert entries[0]["step"] == "schedule" and entries[0]["widths"] == dict(
        sorted(SCHEDULE.widths.items())
    )
    assert [e["decision"] for e in entries[2:]] == ["refused", "refused"]
    assert "only the lender" in str(entries[2]["reason"])


def test_the_coordinator_of_a_trees_federation_decrypts_nothing(tmp_path: Path) -> None:
    # Arrange: a trees job opens its sums under the lender's own key; its rounds name no
    # decryption, so the coordinator's gate (built from the family's rounds) admits none, not
    # even a request shaped exactly like a logistic gradient.
    from fedcredit.protocol.trees.schedule import JOINT, MIX

    for phase in (MIX, JOINT):
        gate = DecryptionGate(RULES, AuditLog(tmp_path / f"{phase.name}.jsonl"), phase=phase)
        gate.start_job(JOB)

        # Act / Assert
        for step, shape in (("train", ((5, GRADIENT_BITS),)), ("score", ((1, SCORE_BITS),))):
            assert "unknown decryption step" in refused(gate, ticket("lender", step, shape))
