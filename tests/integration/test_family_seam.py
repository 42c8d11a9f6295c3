"""The family seam: the driver runs the job's family's schedule over gRPC, as declared.

The logistic family declares its rounds as data (``fedcredit.protocol.logistic.schedule``);
the driver's table for it (``fedcredit.driver.families``) names the RPC of each round. A real
job on real nodes must make exactly the calls the schedule says, in its order, on the parties
it names, batch after batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from fedcredit.cli.jobs import run_job
from fedcredit.config import load_federation
from fedcredit.driver.context import Rpc
from fedcredit.driver.families import (
    DRIVERS,
    batch_rounds,
    epoch_rounds,
    family_driver,
    parties_of,
)
from fedcredit.errors import ConfigError
from fedcredit.node.transport.peers import PeerStubs
from fedcredit.protocol.family import FAMILIES, get_family
from fedcredit.protocol.logistic.schedule import TRAINING
from fedcredit.protocol.logistic.settings import TrainSettings
from fedcredit.protocol.rounds import Phase, Round, When, Who
from fedcredit.protocol.split import batch_count
from tests.support.federation import demo_federation, start_federation


def rpc_name(rpc: Rpc, stubs: PeerStubs) -> str:
    """The method's last path segment (``/fedcredit.v1.Logistic/ComputePartial``)."""
    method = rpc(stubs)._method  # type: ignore[attr-defined]
    return (method.decode() if isinstance(method, bytes) else str(method)).rsplit("/", 1)[-1]


def test_the_logistic_family_is_registered_with_its_settings_and_rounds() -> None:
    family = get_family("logistic")

    assert FAMILIES["logistic"] is family
    assert family.settings is TrainSettings
    assert family.schedule(TrainSettings()) is TRAINING
    with pytest.raises(ConfigError, match=r"unknown model family 'forest' \(this release knows"):
        get_family("forest")


def test_each_batch_runs_partial_residual_and_gradient_and_the_residual_carries_the_loss() -> None:
    rounds = batch_rounds(TRAINING, DRIVERS["logistic"])

    assert [(r.step, r.who, carries) for r, carries in rounds] == [
        ("partial", Who.HOSTS, False),
        ("residual", Who.LENDER, True),
        ("train", Who.EVERY_PARTY, False),
    ]
    assert [r.step for r in TRAINING.at(When.LAST_BATCH)] == ["loss"]


def test_a_federation_file_naming_an_unknown_family_is_refused_by_key(tmp_path: Path) -> None:
    path = demo_federation(tmp_path, customers=200)
    path.write_text(path.read_text() + '\n[model]\nfamily = "forest"\n')

    with pytest.raises(ConfigError, match=r"\[model\] family: must be one of logistic, trees"):
        load_federation(path, allow_small_keys=True)


def test_a_family_the_nodes_cannot_train_is_refused_before_any_node_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every registered family trains on the nodes now; a release without a family's driver
    # entry refuses it by name before any node starts.
    monkeypatch.setattr("fedcredit.driver.families.DRIVERS", {"logistic": DRIVERS["logistic"]})
    path = demo_federation(tmp_path, customers=200, binning=False)
    path.write_text(path.read_text() + '\n[model]\nfamily = "trees"\n')
    fed = load_federation(path, allow_small_keys=True)

    with pytest.raises(ConfigError, match=r"\[model\] family: 'trees' runs in one process only"):
        run_job(fed, tmp_path / "out", resume=False, quiet=True, allow_small_keys=True)

    assert not (tmp_path / "out").exists()


def test_the_driver_makes_exactly_the_calls_the_schedule_declares(tmp_path: Path) -> None:
    # Arrange: real nodes, a real driver; every call it makes is recorded by method name.
    nodes = start_federation(tmp_path, customers=400)
    ctx = nodes.driver.context
    calls: list[tuple[int, int, str, str]] = []
    original = ctx.call

    probe = PeerStubsProbe()

    def recording(party: str, rpc: Rpc, request: Any, **options: Any) -> Any:
        env = getattr(request, "env", None)
        where = (env.epoch, env.batch) if env is not None else (-1, -1)
        calls.append((*where, party, rpc_name(rpc, probe)))
        return original(party, rpc, request, **options)

    ctx.call = recording  # type: ignore[method-assign]
    try:
        # Act: one job, the same way Driver.run trains it.
        metrics = nodes.driver.run(tmp_path / "out")
    finally:
        nodes.close()

    # Assert: per training batch, the rounds' RPCs on the rounds' parties, in order.
    phase, driver = family_driver(nodes.fed)
    expected_batch = [
        (party, rpc_name(driver.rpcs[r.step], probe))
        for r, _ in batch_rounds(phase, driver)
        for party in sorted(parties_of(r.who, ctx.lender, ctx.hosts, ctx.parties))
    ]
    training = {"ComputePartial", "ComputeResidual", "ComputeGradient"}
    batches = driver.batches(nodes.fed, {"train": metrics["rows_train"]})
    assert batches == batch_count(metrics["rows_train"], nodes.fed.train.batch_size) > 1
    for epoch in range(metrics["epochs"]):
        for batch in range(batches):
            made = [(p, m) for e, b, p, m in calls if (e, b) == (epoch, batch) and m in training]
            grouped = _in_round_order(made)
            assert grouped == expected_batch, (epoch, batch)
        # After the batches, the epoch's validation round: its feeds, partial then residual.
        made = [(p, m) for e, b, p, m in calls if (e, b) == (epoch, batches) and m in training]
        assert _in_round_order(made) == [
            ("ecommerce", "ComputePartial"),
            ("payments", "ComputePartial"),
            ("lender", "ComputeResidual"),
        ]
    assert expected_batch == [
        ("ecommerce", "ComputePartial"),
        ("payments", "ComputePartial"),
        ("lender", "ComputeResidual"),
        ("ecommerce", "ComputeGradient"),
        ("lender", "ComputeGradient"),
        ("payments", "ComputeGradient"),
    ]


class PeerStubsProbe(PeerStubs):
    """Typed stubs over a channel that is never used: only to read an RPC's method name."""

    def __init__(self) -> None:
        super().__init__(grpc.insecure_channel("127.0.0.1:9"))


def _in_round_order(made: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The calls of one batch, in the order made; parties of one round (called at once) sorted."""
    out: list[tuple[str, str]] = []
    for method in dict.fromkeys(m for _, m in made):
        out += sorted(c for c in made if c[1] == method)
    return out


def test_epoch_rounds_before_the_batches_run_first_and_those_after_last() -> None:
    # A trees-shaped schedule: each tree's gradients first, its levels, its leaves last.
    phase = Phase(
        "trees-like",
        (
            Round("gradients", Who.LENDER, When.EACH_EPOCH),
            Round("histograms", Who.HOSTS, When.EACH_BATCH),
            Round("splits", Who.LENDER, When.EACH_BATCH),
            Round("leaves", Who.HOSTS, When.EACH_EPOCH),
        ),
    )

    before, after = epoch_rounds(phase)

    assert [r.step for r in before] == ["gradients"]
    assert [r.step for r in after] == ["leaves"]
    assert epoch_rounds(TRAINING) == ((), (TRAINING.decryption("validation"),))
