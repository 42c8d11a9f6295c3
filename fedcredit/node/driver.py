"""The job driver: the coordinator's operator sequencing alignment, training and evaluation.

The driver sees acknowledgements and aggregates only (set sizes, the lender's secure loss,
evaluation metrics). Ciphertexts under the coordinator's key never pass through it: data parties
send them to each other directly. PSI lists do pass through it; they are blinded by scalars it
does not know.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from fedcredit.config import Federation
from fedcredit.errors import ConfigError, ProtocolError
from fedcredit.node.binning_driver import run_binning
from fedcredit.node.transport.peers import COORDINATOR, Peers
from fedcredit.proto.v1 import (
    common_pb2,
    coordinator_pb2,
    job_pb2,
    psi_pb2,
)
from fedcredit.protocol.checkpoint import write_json_atomic
from fedcredit.protocol.report_files import write_evaluation_files
from fedcredit.protocol.split import batch_count, check_batch_rule
from fedcredit.psi import SUITE as PSI_SUITE
from fedcredit.psi import intersect

STEP_TIMEOUT_S = 600.0

Progress = Callable[[str, Mapping[str, Any]], None]


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


class StepClock:
    """Counts the finished steps of a phase run by several threads and reports each one.

    Reports ``kind`` with ``done``, ``steps``, ``seconds`` and ``seconds_left`` (the mean
    step time so far times the steps still to run).
    """

    def __init__(self, progress: Progress, kind: str, steps: int) -> None:
        self._progress = progress
        self._kind = kind
        self._steps = steps
        self._done = 0
        self._started = time.monotonic()
        self._lock = threading.Lock()

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self._done += count
            done = self._done
        seconds = time.monotonic() - self._started
        self._progress(
            self._kind,
            {
                "done": done,
                "steps": self._steps,
                "seconds": seconds,
                "seconds_left": seconds / done * (self._steps - done),
            },
        )


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
        self.fed = federation
        self.addresses = dict(addresses)
        self.peers = Peers(
            addresses, federation.lender.name, credentials=credentials, own_name=COORDINATOR
        )
        self.progress = progress
        self.state_dirs = dict(state_dirs or {})
        self.liveness = liveness or (lambda: None)
        self.job_id = f"{federation.name}-{uuid.uuid4().hex[:12]}"
        self._seq = itertools.count(1)
        self._pool = ThreadPoolExecutor(max_workers=max(4, len(self.peers.parties)))
        self.timings: dict[str, float] = {}
        # Each party's weights after alignment (text columns one-hot encoded), from PsiAlign.
        self.aligned_features: dict[str, int] = {}

    # -- plumbing ------------------------------------------------------------------------------
    def env(self, epoch: int = 0, batch: int = 0) -> common_pb2.Envelope:
        return common_pb2.Envelope(
            job_id=self.job_id, epoch=epoch, batch=batch, seq=next(self._seq)
        )

    def call(self, party: str, method: str, request: Any) -> Any:
        self.liveness()
        try:
            return self.peers.call_party(party, method, request, STEP_TIMEOUT_S)
        finally:
            self.liveness()

    def call_all(
        self, parties: list[str], method: str, make: Callable[[str], Any]
    ) -> dict[str, Any]:
        """Call ``method`` on several parties at once; the first failure is raised."""
        futures = {p: self._pool.submit(self.call, p, method, make(p)) for p in parties}
        return {p: f.result() for p, f in futures.items()}

    def step(
        self,
        parties: list[str],
        method: str,
        epoch: int,
        batch: int,
        phase: str,
        *,
        want_loss: bool = False,
    ) -> dict[str, Any]:
        """One protocol step on several parties at once (each request its own sequence number)."""
        return self.call_all(
            parties,
            method,
            lambda _: job_pb2.StepRequest(
                env=self.env(epoch, batch), phase=phase, want_loss=want_loss
            ),
        )

    # -- the job ---------------------------------------------------------------------------
    def run(self, out_dir: Path, *, resume: bool = False) -> dict[str, Any]:
        out_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        public_key_json = self._start_job()
        setup = self._setup(public_key_json, resume)
        align_started = time.monotonic()
        aligned = self._align()
        self.timings["align"] = time.monotonic() - align_started
        self._check_sizes(setup, aligned)
        resume_at = self._resume_point(out_dir, setup) if resume else None
        binned = self._binning(aligned, out_dir, resumed=resume_at is not None)
        self._register_schedule(setup, aligned, binned)
        state = self._resume_from(*resume_at) if resume_at is not None else TrainingState()
        train_started = time.monotonic()
        self._train(state, aligned, out_dir)
        self.timings["train"] = time.monotonic() - train_started
        eval_started = time.monotonic()
        self._restore_kept(state)
        metrics, files = self._evaluate(state.epoch)
        self.timings["evaluate"] = time.monotonic() - eval_started
        manifest = self._save_model(out_dir, setup, public_key_json)
        write_evaluation_files(out_dir, self.peers.lender, files, metrics)
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
            seconds_per_phase=dict(self.timings),
            parties=manifest["parties"],
            job_id=self.job_id,
        )
        metrics.update(binned)
        write_json_atomic(out_dir / "metrics.json", metrics)
        return metrics

    def align_only(self) -> dict[str, int]:
        """Start the job, set the parties up and align their ids; nothing is trained.

        Returns the aligned row counts; ``timings["align"]`` holds the PSI's seconds.
        """
        self._setup(self._start_job(), resume=False)
        started = time.monotonic()
        aligned = self._align()
        self.timings["align"] = time.monotonic() - started
        return aligned

    def _start_job(self) -> str:
        self.progress(
            "phase",
            {"phase": "keys", "message": f"coordinator makes a {self.fed.key_bits}-bit key"},
        )
        request = coordinator_pb2.StartJobRequest(env=self.env(), key_bits=self.fed.key_bits)
        self.liveness()
        reply = self.peers.call_coordinator("StartJob", request, STEP_TIMEOUT_S)
        return str(reply.public_key_json)

    def _setup(self, public_key_json: str, resume: bool) -> dict[str, Any]:
        def make(party: str) -> job_pb2.SetupRequest:
            return job_pb2.SetupRequest(
                env=self.env(),
                public_key_json=public_key_json,
                peers=self.addresses,
                resume=resume,
                state_dir=self.state_dirs.get(party, ""),
            )

        return self.call_all(self.peers.parties, "Setup", make)

    def _align(self) -> dict[str, int]:
        """Ring PSI: every party's blinded list goes round the others and back to its owner."""
        parties = self.peers.parties
        self.progress(
            "phase",
            {"phase": "align", "message": f"private ID alignment across {len(parties)} parties"},
        )

        # Every party blinds its own ids (and so makes its PSI key) before any ring starts: a
        # ring passes through the other parties, which need their key to apply it.
        # Steps: every party blinds its list, each list makes m - 1 hops and comes home.
        clock = StepClock(self.progress, "align_step", len(parties) * (len(parties) + 1))
        started = time.monotonic()
        blinded = self.call_all(parties, "PsiBlind", lambda p: psi_pb2.PsiRequest(env=self.env()))
        clock.advance(len(parties))
        for party, reply in blinded.items():
            if reply.suite != PSI_SUITE:
                theirs = repr(reply.suite) if reply.suite else "version 1 (ristretto255)"
                raise ProtocolError(
                    f"party {party!r} runs PSI {theirs}, this coordinator {PSI_SUITE!r}: "
                    "no customer could match; every party needs the same fedcredit release"
                )
        self.timings["align_blind"] = (now := time.monotonic()) - started

        def ring(owner: str) -> list[bytes]:
            points = blinded[owner]
            start = parties.index(owner)
            for hop in range(1, len(parties)):
                holder = parties[(start + hop) % len(parties)]
                points = self.call(
                    holder,
                    "PsiApply",
                    psi_pb2.PsiPoints(
                        env=self.env(), owner=owner, points=points.points, count=points.count
                    ),
                )
                clock.advance()
            final = self.call(
                owner,
                "PsiFinish",
                psi_pb2.PsiPoints(
                    env=self.env(), owner=owner, points=points.points, count=points.count
                ),
            )
            clock.advance()
            data = final.points
            return [data[i : i + 32] for i in range(0, len(data), 32)]

        f_sets = list(self._pool.map(ring, parties))
        self.timings["align_rings"] = (started := time.monotonic()) - now
        common = intersect(f_sets)
        self.timings["align_intersect"] = (now := time.monotonic()) - started
        blob = b"".join(common)
        replies = self.call_all(
            parties,
            "PsiAlign",
            lambda p: psi_pb2.PsiPoints(env=self.env(), owner=p, points=blob, count=len(common)),
        )
        self.timings["align_resolve"] = time.monotonic() - now
        self.aligned_features = {p: int(r.features) for p, r in replies.items()}
        first = replies[parties[0]]
        if any(r.common != first.common or r.test != first.test for r in replies.values()):
            raise ProtocolError("parties disagree on the aligned rows")
        self.progress(
            "aligned",
            {
                "common": first.common,
                "sizes": {p: len(s) for p, s in zip(parties, f_sets, strict=True)},
            },
        )
        return {
            "common": first.common,
            "train": first.train,
            "validation": first.validation,
            "test": first.test,
        }

    def _check_sizes(self, setup: Mapping[str, Any], aligned: Mapping[str, int]) -> None:
        if aligned["common"] == 0:
            raise ConfigError(
                "no customer is common to all parties: check that every party's id column "
                "holds the same customer ids"
            )
        if aligned["common"] < self.fed.min_overlap:
            raise ConfigError(
                f"only {aligned['common']} customers are common to all parties; the federation "
                f"requires at least {self.fed.min_overlap} (min_overlap in [federation])"
            )
        # The larger of the counts at setup and after alignment, where one-hot encoded text
        # columns add weights (a node of an older release reports 0 after alignment).
        counts = {
            p: max(int(r.features), self.aligned_features.get(p, 0)) for p, r in setup.items()
        }
        self.fed.check_batch_size(counts)
        check_batch_rule(counts, aligned["train"], self.fed.train.batch_size)

    def _register_schedule(
        self, setup: Mapping[str, Any], aligned: Mapping[str, int], binned: Mapping[str, Any]
    ) -> None:
        """Tell the coordinator what it may decrypt in this job (fedcredit.protocol.schedule).

        Each party's gradient has one slot per design column: after binning the counts the
        lender's plan gives (plus its intercept), else what each party reported at alignment
        (one-hot text columns included) or, from a node of an older release, at setup.
        """
        lender = self.peers.lender
        if "binned_features" in binned:
            features = binned["binned_features"]
            widths = {p: int(n) + (1 if p == lender else 0) for p, n in features.items()}
        else:
            widths = {
                p: self.aligned_features.get(p) or int(setup[p].features)
                for p in self.peers.parties
            }
        request = coordinator_pb2.ScheduleRequest(
            env=self.env(),
            train_rows=aligned["train"],
            validation_rows=aligned["validation"],
            test_rows=aligned["test"],
            widths=widths,
        )
        self.liveness()
        self.peers.call_coordinator("SetSchedule", request, STEP_TIMEOUT_S)

    def _binning(
        self, aligned: Mapping[str, int], out_dir: Path, *, resumed: bool
    ) -> dict[str, Any]:
        """Run federated binning, or, when resuming, keep the binning of the interrupted run.

        Binning noise is fresh every run (so two runs cannot be differenced), so a resumed
        job cannot bin again: the parties restore their encoders from their checkpoints and
        the driver keeps the report it saved (``binning.json``).
        """
        if self.fed.binning is None:
            return {}
        saved = out_dir / "binning.json"
        if resumed and saved.exists():
            binned: dict[str, Any] = json.loads(saved.read_text(encoding="utf-8"))
            return binned
        binned = run_binning(self, aligned, out_dir)
        write_json_atomic(saved, binned)
        return binned

    def _resume_point(
        self, out_dir: Path, setup: Mapping[str, Any]
    ) -> tuple[int, dict[str, Any]] | None:
        """The last epoch every party has a checkpoint of, and the saved progress; or None."""
        common = set.intersection(*(set(r.checkpoints) for r in setup.values()))
        path = out_dir / "progress.json"
        saved = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        epoch = min(max(common), int(saved["epoch"]) - 1) if common and saved else -1
        if epoch not in common:
            self.progress(
                "phase",
                {"phase": "resume", "message": "no common checkpoint: starting from epoch 1"},
            )
            return None
        return epoch, saved

    def _resume_from(self, epoch: int, saved: Mapping[str, Any]) -> TrainingState:
        """Every party restores ``epoch``'s checkpoint (its encoder too); training goes on."""
        self.call_all(
            self.peers.parties,
            "Restore",
            lambda p: job_pb2.StepRequest(env=self.env(epoch), resume_epoch=epoch),
        )
        state = TrainingState(
            epoch=epoch + 1,
            train_loss=list(saved["train_loss"][: epoch + 1]),
            validation_loss=list(saved["validation_loss"][: epoch + 1]),
        )
        self._replay_stopping(state)
        self.progress("phase", {"phase": "resume", "message": f"resuming after epoch {epoch + 1}"})
        return state

    def _replay_stopping(self, state: TrainingState) -> None:
        for epoch, loss in enumerate(state.validation_loss):
            self._update_stopping(state, epoch, loss)

    def _update_stopping(self, state: TrainingState, epoch: int, validation: float) -> None:
        """Track the best epoch by validation log-loss; ``tol`` is the least that counts.

        An epoch that lowers the loss by less than ``tol`` is still kept if it is the lowest,
        but it counts as stale for early stopping.
        """
        best = state.best_validation
        if best is None or validation < best - self.fed.train.tol:
            state.stale_epochs = 0
        else:
            state.stale_epochs += 1
        if best is None or validation < best:
            state.best_validation, state.best_epoch = validation, epoch

    def _restore_kept(self, state: TrainingState) -> None:
        """Bring every party back to the kept epoch's weights before evaluation and saving."""
        if state.best_epoch is None or state.best_epoch == state.epoch - 1:
            return
        epoch = state.best_epoch
        self.progress(
            "phase",
            {
                "phase": "keep",
                "message": f"keeping epoch {epoch + 1} (lowest validation log-loss)",
            },
        )
        self.call_all(
            self.peers.parties,
            "Restore",
            lambda p: job_pb2.StepRequest(env=self.env(epoch), resume_epoch=epoch),
        )

    def _train(self, state: TrainingState, aligned: Mapping[str, int], out_dir: Path) -> None:
        settings = self.fed.train
        batches = batch_count(aligned["train"], settings.batch_size)
        lender, hosts = self.peers.lender, self.peers.hosts
        epoch_started = time.monotonic()
        while state.epoch < settings.epochs and not state.stopped:
            epoch = state.epoch
            epoch_started = time.monotonic()
            for batch in range(batches):
                self.step(hosts, "ComputePartial", epoch, batch, "train")
                self.step(
                    [lender],
                    "ComputeResidual",
                    epoch,
                    batch,
                    "train",
                    want_loss=batch == batches - 1,
                )
                self.step(self.peers.parties, "ComputeGradient", epoch, batch, "train")
                progress = {"epoch": epoch + 1, "epochs": settings.epochs, "batch": batch + 1}
                self.progress("batch", {**progress, "batches": batches})
            if aligned["validation"]:
                self.step(hosts, "ComputePartial", epoch, batches, "validation")
                reply = self.step(
                    [lender], "ComputeResidual", epoch, batches, "validation", want_loss=True
                )[lender]
                if reply.has_loss:
                    self._update_stopping(state, epoch, reply.loss)
            replies = self._end_epoch(state, epoch, batches + 1)
            self._record_epoch(state, replies[lender], out_dir, time.monotonic() - epoch_started)

    def _end_epoch(self, state: TrainingState, epoch: int, batch: int) -> dict[str, Any]:
        """Every party checkpoints the epoch and keeps the best epoch's checkpoint too."""
        keep = 0 if state.best_epoch is None else state.best_epoch + 1
        return self.call_all(
            self.peers.parties,
            "EndEpoch",
            lambda _: job_pb2.StepRequest(env=self.env(epoch, batch), keep_epoch=keep),
        )

    def _record_epoch(
        self, state: TrainingState, reply: Any, out_dir: Path, seconds: float
    ) -> None:
        settings = self.fed.train
        state.epoch += 1
        # The Taylor loss of the training batches is recorded but drives nothing: it grows
        # with |z| even while the true log-loss falls. Stopping acts on the validation log-loss.
        if reply.has_loss:
            state.train_loss.append(reply.train_loss)
        if reply.has_validation:
            state.validation_loss.append(reply.validation_loss)
            if (
                settings.early_stopping_rounds
                and state.stale_epochs >= settings.early_stopping_rounds
            ):
                state.stopped = "early-stopping"
        write_json_atomic(
            out_dir / "progress.json",
            {
                "job_id": self.job_id,
                "epoch": state.epoch,
                "train_loss": state.train_loss,
                "validation_loss": state.validation_loss,
            },
        )
        self.progress(
            "epoch",
            {
                "epoch": state.epoch,
                "epochs": settings.epochs,
                "train_taylor_loss": state.train_loss[-1] if state.train_loss else None,
                "validation_log_loss": (
                    state.validation_loss[-1] if state.validation_loss else None
                ),
                "seconds": seconds,
                "seconds_left": seconds * (settings.epochs - state.epoch),
            },
        )

    def _evaluate(self, epoch: int) -> tuple[dict[str, Any], dict[str, bytes]]:
        self.progress("phase", {"phase": "evaluate", "message": "scoring the held-out customers"})
        self.step(self.peers.hosts, "ComputePartial", epoch + 1, 0, "test")
        reply = self.step([self.peers.lender], "Evaluate", epoch + 1, 0, "test")[self.peers.lender]
        return dict(json.loads(reply.metrics_json)), dict(reply.files)

    def _save_model(
        self, out_dir: Path, setup: Mapping[str, Any], public_key_json: str
    ) -> dict[str, Any]:
        model_dir = out_dir / "model"
        model_dir.mkdir(parents=True, exist_ok=True)
        replies = self.call_all(
            self.peers.parties,
            "SaveModel",
            lambda p: job_pb2.SaveRequest(
                env=self.env(), model_dir=str(model_dir) if p in self.state_dirs else ""
            ),
        )
        from fedcredit import __version__

        manifest = {
            "fedcredit_version": __version__,
            "federation": self.fed.name,
            "job_id": self.job_id,
            "lender": self.peers.lender,
            "parties": {p: json.loads(r.manifest_json) for p, r in replies.items()},
            "feature_names": {p: list(setup[p].feature_names) for p in self.peers.parties},
            "train": {k: getattr(self.fed.train, k) for k in self.fed.train.__dataclass_fields__},
        }
        write_json_atomic(model_dir / "manifest.json", manifest)
        return manifest
