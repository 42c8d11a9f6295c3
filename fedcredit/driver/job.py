"""One job, phase by phase: start, setup, align, binning, train, evaluate, save.

``Driver`` holds the ``JobContext`` and runs the phases of ``align``, ``binning``,
``schedule`` and ``evaluate`` in order; ``run`` writes ``metrics.json``, the model and the
evaluation files under the output folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc

from fedcredit.config import Federation
from fedcredit.driver import align, binning, evaluate, schedule
from fedcredit.driver.context import JobContext, Progress, Rpc
from fedcredit.node.transport.peers import COORDINATOR, Peers
from fedcredit.proto.v1 import (
    common_pb2,
    coordinator_pb2,
    job_pb2,
)
from fedcredit.protocol.checkpoint import write_json_atomic
from fedcredit.protocol.report_files import accepted_plots, write_evaluation_files


class Driver:
    """Runs one job over the nodes at ``addresses`` (party name -> address, coordinator too)."""

    def __init__(
        self,
        federation: Federation,
        addresses: Mapping[str, str],
        *,
        credentials: grpc.ChannelCredentials | None,
        progress: Progress,
        state_dirs: Mapping[str, str] | None = None,
        liveness: Callable[[], None] | None = None,
    ) -> None:
        self.context = JobContext(
            federation,
            addresses,
            credentials=credentials,
            progress=progress,
            state_dirs=state_dirs,
            liveness=liveness,
        )

    # -- the context, as the phases and the tests see it --------------------------------------
    @property
    def fed(self) -> Federation:
        return self.context.fed

    @property
    def addresses(self) -> dict[str, str]:
        return self.context.addresses

    @property
    def job_id(self) -> str:
        return self.context.job_id

    @property
    def timings(self) -> dict[str, float]:
        return self.context.timings

    @property
    def aligned_features(self) -> dict[str, int]:
        return self.context.aligned_features

    @property
    def peers(self) -> Peers:
        return self.context.peers

    @peers.setter
    def peers(self, peers: Peers) -> None:
        self.context.peers = peers

    @property
    def progress(self) -> Progress:
        return self.context.progress

    @progress.setter
    def progress(self, progress: Progress) -> None:
        self.context.progress = progress

    def env(self, epoch: int = 0, batch: int = 0) -> common_pb2.Envelope:
        return self.context.env(epoch, batch)

    def call(self, party: str, rpc: Rpc, request: Any) -> Any:
        return self.context.call(party, rpc, request)

    def call_all(
        self, parties: Iterable[str], rpc: Rpc, make: Callable[[str], Any]
    ) -> dict[str, Any]:
        return self.context.call_all(parties, rpc, make)

    def step(
        self,
        parties: Iterable[str],
        rpc: Rpc,
        epoch: int,
        batch: int,
        phase: str,
        *,
        want_loss: bool = False,
    ) -> dict[str, Any]:
        return schedule.step(self.context, parties, rpc, epoch, batch, phase, want_loss=want_loss)

    # -- the job -------------------------------------------------------------------------------
    def run(self, out_dir: Path, *, resume: bool = False) -> dict[str, Any]:
        """The whole job; returns the metrics it writes to ``out_dir/metrics.json``."""
        ctx = self.context
        out_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        public_key_json = self.start_job()
        setup = self.setup(public_key_json, resume)
        aligned = self.align()
        align.check_sizes(ctx, setup, aligned)
        resume_at = schedule.resume_point(ctx, out_dir, setup) if resume else None
        binned = binning.binning_phase(ctx, aligned, out_dir, resumed=resume_at is not None)
        self.register_schedule(setup, aligned, binned)
        state = (
            schedule.resume_from(ctx, *resume_at)
            if resume_at is not None
            else schedule.TrainingState()
        )
        train_started = time.monotonic()
        schedule.train(ctx, state, aligned, out_dir)
        ctx.timings["train"] = time.monotonic() - train_started
        eval_started = time.monotonic()
        schedule.restore_kept(ctx, state)
        metrics, files = evaluate.evaluate(ctx, state.epoch)
        ctx.timings["evaluate"] = time.monotonic() - eval_started
        manifest = evaluate.save_model(ctx, out_dir, setup, public_key_json)
        # A refused reply writes nothing, metrics.json included; the report, written last,
        # links metrics.json and shows the job's figures below.
        accepted_plots(ctx.lender, files)
        metrics.update(
            rows_aligned=aligned["common"],
            rows_train=aligned["train"],
            rows_validation=aligned["validation"],
            rows_test=aligned["test"],
            epochs=state.epoch,
            stopped=state.stopped or "epochs",
            train_taylor_loss=state.train_loss,
            validation_log_loss=state.validation_loss,
            **state.kept(),
            seconds=time.monotonic() - started,
            seconds_per_phase=dict(ctx.timings),
            parties=manifest["parties"],
            job_id=ctx.job_id,
            key_bits=ctx.fed.key_bits,
            features_per_party={p: len(setup[p].feature_names) for p in ctx.parties},
        )
        metrics.update(binned)
        write_json_atomic(out_dir / "metrics.json", metrics)
        write_evaluation_files(out_dir, ctx.lender, files, metrics)
        return metrics

    def align_only(self) -> dict[str, int]:
        """Start the job, set the parties up and align their ids; nothing is trained.

        Returns the aligned row counts; ``timings["align"]`` holds the PSI's seconds.
        """
        self.setup(self.start_job(), resume=False)
        return self.align()

    # -- the phases ----------------------------------------------------------------------------
    def start_job(self) -> str:
        """The coordinator makes the job's key; returns its public key (JSON)."""
        ctx = self.context
        ctx.progress(
            "phase",
            {"phase": "keys", "message": f"coordinator makes a {ctx.fed.key_bits}-bit key"},
        )
        request = coordinator_pb2.StartJobRequest(env=ctx.env(), key_bits=ctx.fed.key_bits)
        reply = ctx.call(COORDINATOR, lambda s: s.coordinator.StartJob, request)
        return str(reply.public_key_json)

    def setup(self, public_key_json: str, resume: bool) -> dict[str, Any]:
        """Every party loads its data for the job; returns party -> its SetupReply."""
        ctx = self.context

        def make(party: str) -> job_pb2.SetupRequest:
            return job_pb2.SetupRequest(
                env=ctx.env(),
                public_key_json=public_key_json,
                peers=ctx.addresses,
                resume=resume,
                state_dir=ctx.state_dirs.get(party, ""),
            )

        return ctx.call_all(ctx.parties, lambda s: s.job.Setup, make)

    def align(self) -> dict[str, int]:
        """Private ID alignment (``align.align``); ``timings["align"]`` holds its seconds."""
        started = time.monotonic()
        aligned = align.align(self.context)
        self.context.timings["align"] = time.monotonic() - started
        return aligned

    def register_schedule(
        self, setup: Mapping[str, Any], aligned: Mapping[str, int], binned: Mapping[str, Any]
    ) -> None:
        """What the coordinator may decrypt in this job (``schedule.register_schedule``)."""
        schedule.register_schedule(self.context, setup, aligned, binned)
