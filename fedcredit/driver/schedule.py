"""The training loop over the nodes: epochs, batches, validation, the kept epoch, resume.

Per batch: the partners compute their partial scores, the lender its residual (its secure
loss on the epoch's last batch), every party its gradient. After each epoch the validation
rows give the true log-loss, which picks the kept epoch and drives early stopping; every
party checkpoints the epoch, so an interrupted job resumes from the last common checkpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedcredit.driver.context import JobContext, Rpc
from fedcredit.driver.families import (
    FamilyDriver,
    batch_rounds,
    epoch_rounds,
    family_driver,
    parties_of,
    round_named,
)
from fedcredit.node.transport.peers import COORDINATOR
from fedcredit.proto.v1 import (
    coordinator_pb2,
    job_pb2,
)
from fedcredit.protocol.checkpoint import write_json_atomic
from fedcredit.protocol.rounds import Phase, Round


@dataclass
class TrainingState:
    """What the driver tracks across epochs (saved to progress.json for --resume)."""

    epoch: int = 0
    train_loss: list[float] = field(default_factory=list)  # Taylor loss, last batch
    validation_loss: list[float] = field(default_factory=list)  # true log-loss
    best_validation: float | None = None
    best_epoch: int | None = None  # 0-based; the model kept when there are validation rows
    stale_epochs: int = 0
    stopped: str = ""

    def kept(self) -> dict[str, Any]:
        """Which epoch's model the run keeps, and by which rule (for metrics.json)."""
        if self.best_epoch is not None:
            return {
                "kept_epoch": self.best_epoch + 1,
                "kept_by": "lowest validation log-loss",
            }
        return {
            "kept_epoch": self.epoch,
            "kept_by": "last epoch (no validation rows: set validation_fraction to keep the best)",
        }


def step(
    ctx: JobContext,
    parties: Iterable[str],
    rpc: Rpc,
    epoch: int,
    batch: int,
    phase: str,
    *,
    want_loss: bool = False,
) -> dict[str, Any]:
    """One protocol step on several parties at once (each request its own sequence number)."""
    return ctx.call_all(
        parties,
        rpc,
        lambda _: job_pb2.StepRequest(env=ctx.env(epoch, batch), phase=phase, want_loss=want_loss),
    )


def register_schedule(
    ctx: JobContext, setup: Mapping[str, Any], aligned: Mapping[str, int], binned: Mapping[str, Any]
) -> None:
    """Tell the coordinator what it may decrypt in this job (fedcredit.protocol.schedule).

    Each party's gradient has one slot per design column: after binning the counts the
    lender's plan gives (plus its intercept), else what each party reported at alignment
    (one-hot text columns included) or, from a node of an older release, at setup.
    """
    lender = ctx.lender
    if "binned_features" in binned:
        features = binned["binned_features"]
        widths = {p: int(n) + (1 if p == lender else 0) for p, n in features.items()}
    else:
        widths = {p: ctx.aligned_features.get(p) or int(setup[p].features) for p in ctx.parties}
    request = coordinator_pb2.ScheduleRequest(
        env=ctx.env(),
        train_rows=aligned["train"],
        validation_rows=aligned["validation"],
        test_rows=aligned["test"],
        widths=widths,
    )
    ctx.call(COORDINATOR, lambda s: s.coordinator.SetSchedule, request)


def resume_point(
    ctx: JobContext, out_dir: Path, setup: Mapping[str, Any]
) -> tuple[int, dict[str, Any]] | None:
    """The last epoch every party has a checkpoint of, and the saved progress; or None."""
    common = set.intersection(*(set(r.checkpoints) for r in setup.values()))
    path = out_dir / "progress.json"
    saved = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    epoch = min(max(common), int(saved["epoch"]) - 1) if common and saved else -1
    if epoch not in common:
        ctx.progress(
            "phase",
            {"phase": "resume", "message": "no common checkpoint: starting from epoch 1"},
        )
        return None
    return epoch, saved


def resume_from(ctx: JobContext, epoch: int, saved: Mapping[str, Any]) -> TrainingState:
    """Every party restores ``epoch``'s checkpoint (its encoder too); training goes on."""
    _restore(ctx, epoch)
    state = TrainingState(
        epoch=epoch + 1,
        train_loss=list(saved["train_loss"][: epoch + 1]),
        validation_loss=list(saved["validation_loss"][: epoch + 1]),
    )
    if not family_driver(ctx.fed)[1].own_stopping:
        for past, loss in enumerate(state.validation_loss):
            update_stopping(ctx, state, past, loss)
    ctx.progress("phase", {"phase": "resume", "message": f"resuming after epoch {epoch + 1}"})
    return state


def update_stopping(ctx: JobContext, state: TrainingState, epoch: int, validation: float) -> None:
    """Track the best epoch by validation log-loss; ``tol`` is the least that counts.

    An epoch that lowers the loss by less than ``tol`` is still kept if it is the lowest,
    but it counts as stale for early stopping.
    """
    best = state.best_validation
    if best is None or validation < best - ctx.fed.train.tol:
        state.stale_epochs = 0
    else:
        state.stale_epochs += 1
    if best is None or validation < best:
        state.best_validation, state.best_epoch = validation, epoch


def restore_kept(ctx: JobContext, state: TrainingState) -> None:
    """Bring every party back to the kept epoch's weights before evaluation and saving."""
    if state.best_epoch is None or state.best_epoch == state.epoch - 1:
        return
    epoch = state.best_epoch
    ctx.progress(
        "phase",
        {"phase": "keep", "message": f"keeping epoch {epoch + 1} (lowest validation log-loss)"},
    )
    _restore(ctx, epoch)


def _restore(ctx: JobContext, epoch: int) -> None:
    ctx.call_all(
        ctx.parties,
        lambda s: s.job.Restore,
        lambda p: job_pb2.StepRequest(env=ctx.env(epoch), resume_epoch=epoch),
    )


def train(ctx: JobContext, state: TrainingState, aligned: Mapping[str, int], out_dir: Path) -> None:
    """Epochs until ``epochs`` or early stopping; ``state`` is updated, progress.json written.

    The loop is the job's family's schedule (``fedcredit.driver.families``): each batch runs
    the family's batch rounds in order, each epoch its epoch rounds (validation), then every
    party checkpoints.
    """
    phase, driver = family_driver(ctx.fed)
    epochs, batches = driver.epochs(ctx.fed), driver.batches(ctx.fed, aligned)
    rounds = batch_rounds(phase, driver)
    before, after = epoch_rounds(phase)
    while state.epoch < epochs and not state.stopped:
        epoch = state.epoch
        epoch_started = time.monotonic()
        for round_ in before:
            _run_epoch_round(ctx, state, driver, phase, round_, aligned, epoch, 0)
        for batch in range(batches):
            last = batch == batches - 1
            for round_, carries in rounds:
                _run_round(ctx, driver, round_, epoch, batch, "train", want_loss=carries and last)
            progress = {"epoch": epoch + 1, "epochs": epochs, "batch": batch + 1,
                        "units": driver.units}  # fmt: skip
            ctx.progress("batch", {**progress, "batches": batches})
        for round_ in after:
            _run_epoch_round(ctx, state, driver, phase, round_, aligned, epoch, batches)
        replies = _end_epoch(ctx, state, epoch, batches + 1)
        _record_epoch(ctx, state, replies[ctx.lender], out_dir, time.monotonic() - epoch_started)


def _run_epoch_round(
    ctx: JobContext,
    state: TrainingState,
    driver: FamilyDriver,
    phase: Phase,
    round_: Round,
    aligned: Mapping[str, int],
    epoch: int,
    batch: int,
) -> None:
    """One once-per-epoch round: its own RPC, or the batch rounds that feed it (logistic's
    validation: partial scores and the residual of the validation rows, when there are any);
    a lender's answer with a loss updates the kept epoch and early stopping."""
    if round_.step in driver.feeds:
        if not aligned.get(round_.step):
            return
        replies: dict[str, Any] = {}
        feeds = driver.feeds[round_.step]
        for fed_step in feeds:
            replies = _run_round(
                ctx, driver, round_named(phase, fed_step), epoch, batch, round_.step,
                want_loss=fed_step == feeds[-1],
            )  # fmt: skip
    elif round_.step in driver.rpcs:
        replies = _run_round(ctx, driver, round_, epoch, batch, round_.step, want_loss=False)
    else:
        return  # a round its party runs on its own, inside another round
    reply = replies.get(ctx.lender)
    if reply is not None and getattr(reply, "has_loss", False):
        update_stopping(ctx, state, epoch, reply.loss)
    # A family that keeps its own early-stopping rule (trees: the lender's, the one the
    # in-process runner applies) says so in its answer; the driver then stops after this epoch.
    if reply is not None and getattr(reply, "stop", False):
        state.stopped = "early-stopping"
    if reply is not None and getattr(reply, "has_validation", False):
        state.validation_loss.append(reply.validation_loss)


def _run_round(
    ctx: JobContext,
    driver: FamilyDriver,
    round_: Round,
    epoch: int,
    batch: int,
    phase: str,
    *,
    want_loss: bool,
) -> dict[str, Any]:
    parties = parties_of(round_.who, ctx.lender, ctx.hosts, ctx.parties)
    return step(ctx, parties, driver.rpcs[round_.step], epoch, batch, phase, want_loss=want_loss)


def _end_epoch(ctx: JobContext, state: TrainingState, epoch: int, batch: int) -> dict[str, Any]:
    """Every party checkpoints the epoch and keeps the best epoch's checkpoint too."""
    keep = 0 if state.best_epoch is None else state.best_epoch + 1
    return ctx.call_all(
        ctx.parties,
        lambda s: s.job.EndEpoch,
        lambda _: job_pb2.StepRequest(env=ctx.env(epoch, batch), keep_epoch=keep),
    )


def _record_epoch(
    ctx: JobContext, state: TrainingState, reply: Any, out_dir: Path, seconds: float
) -> None:
    settings = ctx.fed.train
    driver = family_driver(ctx.fed)[1]
    epochs = driver.epochs(ctx.fed)
    state.epoch += 1
    # The Taylor loss of the training batches is recorded but drives nothing: it grows
    # with |z| even while the true log-loss falls. Stopping acts on the validation log-loss.
    if reply.has_loss:
        state.train_loss.append(reply.train_loss)
    if reply.has_validation:
        state.validation_loss.append(reply.validation_loss)
        if settings.early_stopping_rounds and state.stale_epochs >= settings.early_stopping_rounds:
            state.stopped = "early-stopping"
    write_json_atomic(
        out_dir / "progress.json",
        {
            "job_id": ctx.job_id,
            "epoch": state.epoch,
            "train_loss": state.train_loss,
            "validation_loss": state.validation_loss,
        },
    )
    ctx.progress(
        "epoch",
        {
            "epoch": state.epoch,
            "epochs": epochs,
            "train_taylor_loss": state.train_loss[-1] if state.train_loss else None,
            "validation_log_loss": state.validation_loss[-1] if state.validation_loss else None,
            "seconds": seconds,
            "seconds_left": seconds * (epochs - state.epoch),
            "units": driver.units,
        },
    )
