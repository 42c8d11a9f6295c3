"""A data party's node: its data, its job state, and its connections to peers.

The servicers (``fedcredit.node.services``) decode a message, call one method here and encode
its answer; every method takes and returns domain values (``fedcredit.node.results``), never a
protobuf message. Peer ciphertexts are validated on the way in (``serde.common``); the messages
this node sends its peers are built by ``fedcredit.node.serde``. Nothing here logs a value.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fedcredit.config import ScoringSettings
from fedcredit.crypto import EncryptedVector, PackedCiphertexts, PublicKey
from fedcredit.decision import Policy
from fedcredit.decision.stability import FeatureStability
from fedcredit.errors import ProtocolError
from fedcredit.model.logistic import sigmoid
from fedcredit.model.scorecard import Scorecard
from fedcredit.node.evaluation import EVALUATION_CSV, evaluation_csv, lender_evaluation
from fedcredit.node.partner import PartnerScoring
from fedcredit.node.psi_lists import PsiLists
from fedcredit.node.results import Alignment, EpochLosses, Evaluation, IncomingVector, SetupSummary
from fedcredit.node.serde import common, keys, psi
from fedcredit.node.stability import StabilityQuery, columns_stability, load_reference
from fedcredit.node.transport.peers import COORDINATOR, Peers, check_key
from fedcredit.protocol.checkpoint import write_importance, write_json_atomic, write_text_atomic
from fedcredit.protocol.fixedpoint import Z_SCALE_BITS, residual_scale_bits
from fedcredit.protocol.guard import Header
from fedcredit.protocol.logistic.lender import LabelParty
from fedcredit.protocol.logistic.partner import FeatureParty
from fedcredit.protocol.reference import column_reference
from fedcredit.protocol.trees.columns import TreeColumns
from fedcredit.psi import PointBuffer, PSIParty
from fedcredit.psi.ring import Commitment, RingLedger

log = logging.getLogger("fedcredit.node")

PEER_TIMEOUT_S = 120.0

Role = FeatureParty | TreeColumns
"""A job's role: the logistic family's (``FeatureParty``) or the trees family's
(``fedcredit.node.trees_state`` runs its rounds)."""


@dataclass
class JobState:
    """Everything a node holds for one job."""

    job_id: str
    party: Role
    peers: Peers
    state_dir: Path
    psi: PSIParty | None = None
    ring: RingLedger | None = None
    """Which PSI lists this party may blind: its peers' commitments (security review F11)."""
    lists: PsiLists = field(default_factory=PsiLists)
    partials: dict[tuple[str, int, int], dict[str, EncryptedVector]] = field(default_factory=dict)
    residuals: dict[tuple[int, int], EncryptedVector] = field(default_factory=dict)
    last_train_loss: float | None = None
    last_validation_loss: float | None = None
    score_baseline: dict[str, object] | None = None
    """The lender's: its test rows' score deciles (``ScoreBaseline.to_dict()``), for monitoring."""


class PartyNode:
    """The domain side of a party node; one instance per node process."""

    def __init__(
        self,
        name: str,
        party_factory: Callable[[], Role],
        peers_factory: Callable[[dict[str, str]], Peers],
        home: Path | None = None,
        scoring: ScoringSettings | None = None,
    ) -> None:
        self.name = name
        self.home = home if home is not None else Path(".") / f"state-{name}"
        """The node's own folder. Checkpoints and the model part go inside it: where the
        driver names a folder, that folder must lie within this one (see ``within_home``)."""
        self.partner = PartnerScoring(name, self.home, scoring or ScoringSettings())
        """Its answers to the lender's scoring requests: policy, quota, audit log."""
        self._party_factory = party_factory
        self._peers_factory = peers_factory
        self._job: JobState | None = None
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self.scorecard = Scorecard()
        self.policy: Policy | None = None  # the lender's [policy]: the report's decision mix
        self._scoring: Role | None = None
        self._reference: object = None  # the loaded model part's stability reference
        self.static_peers: Peers | None = None
        self.allow_small_keys = False
        """The test-only switch: peers' keys of 512 to 2047 bits pass ``check_peer_key`` too."""

    # -- helpers ---------------------------------------------------------------------------
    @property
    def job(self) -> JobState:
        if self._job is None:
            raise ProtocolError(f"party {self.name!r} has no job set up")
        return self._job

    @property
    def is_lender(self) -> bool:
        return isinstance(self.job.party, LabelParty)

    def _lender(self) -> LabelParty:
        party = self.job.party
        if not isinstance(party, LabelParty):
            raise ProtocolError(f"party {self.name!r} is not the label holder")
        return party

    def _next(self, header: Header) -> Header:
        """``header`` with this node's next sequence number, for a message it sends."""
        return Header(header.job_id, header.epoch, header.batch, next(self._seq))

    next_header = _next

    def _features(self) -> FeatureParty:
        """The job's logistic role (its steps are refused in a job of another family)."""
        party = self.job.party
        if not isinstance(party, FeatureParty):
            raise ProtocolError(f"party {self.name!r}: this job's family has no such step")
        return party

    def _key(self) -> PublicKey:
        key = self.job.party.public_key
        if key is None:
            raise ProtocolError(f"party {self.name!r} has no public key")
        return key

    def within_home(self, requested: str, what: str) -> Path:
        """A folder the driver asked for, resolved inside the node's home, or ProtocolError.

        A relative path is taken from the home. The driver (the coordinator's side)
        never decides where on an institution's machine a node writes: anything that
        resolves outside the home, through ``..`` or a symbolic link, is refused.
        """
        home = self.home.resolve()
        path = Path(requested)
        target = (path if path.is_absolute() else home / path).resolve()
        if target != home and home not in target.parents:
            raise ProtocolError(
                f"party {self.name!r}: the {what} {requested!r} is outside the node's folder "
                f"{home} (start the node with --state-dir to choose that folder)"
            )
        return target

    # -- setup and alignment -------------------------------------------------------------------
    def setup(
        self,
        header: Header,
        public_key_json: str,
        peers: dict[str, str],
        resume: bool,
        state_dir: str,
    ) -> SetupSummary:
        party = self._party_factory()
        party.public_key = check_key(
            PublicKey.from_json(public_key_json),
            allow_small=self.allow_small_keys,
            party="the coordinator",
        )
        directory = self.within_home(state_dir, "state folder") if state_dir else self.home
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self._job is not None:
                self._job.peers.close()
            self._job = JobState(header.job_id, party, self._peers_factory(peers), directory)
        checkpoints = (
            sorted(int(p.stem.split("-")[1]) for p in directory.glob("checkpoint-*.json"))
            if resume
            else []
        )
        return SetupSummary(
            rows=len(party.ids),
            features=party.n_weights,
            checkpoints=checkpoints,
            data_hash=self.partner.fingerprint(header.job_id, party.data_hash),
            feature_names=list(party.feature_names),
        )

    def _psi(self) -> PSIParty:
        if self.job.psi is None:
            raise ProtocolError(f"party {self.name!r}: PSI was not started")
        return self.job.psi

    def _ring(self) -> RingLedger:
        job = self.job
        with self._lock:
            if job.ring is None:
                job.ring = RingLedger(self.name, job.peers.parties)
            return job.ring

    def _hand_on(self, recipient: str, commitment: Commitment) -> None:
        """Tell the party that processes a PSI list next, directly, which list it is, before the
        driver gets it: that party blinds or finishes no other."""
        job = self.job
        message = psi.commitment_message(
            common.envelope(self._next(Header(job.job_id, 0, 0, 0))), commitment
        )
        job.peers.call(recipient, lambda s: s.psi.PsiCommit, message, PEER_TIMEOUT_S)

    def psi_bound(self, step: str, owner: str) -> tuple[str, int]:
        """Who announced the list ``step`` takes for ``owner``, and its size (chunks stop there)."""
        if step == "PsiAlign":  # the common values: never more than this party's own ids
            return self.name, self._psi().own_size
        return self._ring().announced(owner)

    def psi_commit(self, caller: str, commitment: Commitment) -> None:
        """A peer's commitment to the list it hands this party next (caller from its cert)."""
        self._ring().record(caller, commitment)

    def psi_blind(self) -> PointBuffer:
        job, ring = self.job, self._ring()
        psi = PSIParty(job.party.ids, job.job_id, len(job.peers.parties))
        points = psi.start()
        try:
            self._hand_on(*ring.start(points))
        except BaseException:
            ring.abandon_start()
            raise
        job.psi = psi
        return points

    def psi_apply(self, owner: str, points: PointBuffer) -> PointBuffer:
        """Blind ``owner``'s list: once per owner of the job, and only the list its previous
        holder committed to (so never a list the driver made up)."""
        ring = self._ring()
        hop = ring.admit_relay(owner, points)
        try:
            relayed = self._psi().relay(points)
            self._hand_on(*ring.handing_on(owner, hop, relayed))
        except BaseException:
            ring.release(owner)  # the result never left this party
            raise
        return relayed

    def psi_finish(self, points: PointBuffer) -> PointBuffer:
        self._ring().admit_finish(points)
        return self._psi().finish(points)

    def psi_align(self, points: PointBuffer) -> Alignment:
        party = self.job.party
        stats = party.align(self._psi().resolve(points).ids)
        # Weights after alignment: one-hot text columns add some (the driver's batch-size check).
        return Alignment(
            common=stats.common,
            train=stats.train,
            validation=stats.validation,
            test=stats.test,
            features=party.n_weights,
        )

    # -- training steps ------------------------------------------------------------------------
    def compute_partial(self, header: Header, phase: str) -> None:
        """A host encrypts its partial scores and sends them straight to the lender."""
        job = self.job
        vector = self._features().partial(phase, header.epoch, header.batch)
        message = common.cipher_message(common.envelope(self._next(header)), phase, vector)
        job.peers.call(job.peers.lender, lambda s: s.logistic.PutPartial, message, PEER_TIMEOUT_S)

    def put_partial(
        self, caller: str, header: Header, phase: str, incoming: IncomingVector
    ) -> None:
        job = self.job
        lender = self._lender()
        if caller not in job.peers.hosts:
            raise ProtocolError(f"partial scores from {caller!r}, which is not a host of this job")
        rows = len(lender.rows_of(phase, header.epoch, header.batch))
        vector = incoming(self._key(), Z_SCALE_BITS, rows)
        with self._lock:
            job.partials.setdefault((phase, header.epoch, header.batch), {})[caller] = vector

    def _take_partials(self, phase: str, header: Header) -> dict[str, EncryptedVector]:
        job = self.job
        with self._lock:
            partials = job.partials.pop((phase, header.epoch, header.batch), {})
        missing = sorted(set(job.peers.hosts) - set(partials))
        if missing:
            raise ProtocolError(f"no partial scores from {', '.join(missing)} for this step")
        return partials

    def compute_residual(self, header: Header, phase: str, want_loss: bool) -> float | None:
        """The lender forms [[4d]] for the batch, sends it to every host, keeps its own."""
        job = self.job
        lender = self._lender()
        z = lender.encrypted_scores(
            phase, header.epoch, header.batch, self._take_partials(phase, header)
        )
        if phase == "train":
            residual = lender.residual(z, phase, header.epoch, header.batch)
            job.residuals[(header.epoch, header.batch)] = residual
            message = common.cipher_message(common.envelope(self._next(header)), phase, residual)
            job.peers.fan_out(
                job.peers.hosts,
                lambda s: s.logistic.PutResidual,
                lambda _: message,
                PEER_TIMEOUT_S,
            )
        if not want_loss:
            return None
        if phase == "validation":
            # The true log-loss from the validation rows' final scores (what stopping and the
            # kept model act on); the training figure stays the Taylor loss, named as such.
            packed, pending = LabelParty.score_request(z)
            scores = LabelParty.finish_scores(self._decrypt(header, packed, "validation"), pending)
            job.last_validation_loss = lender.validation_log_loss(scores)
            return job.last_validation_loss
        job.last_train_loss = self._secure_loss(lender, z, phase, header)
        return job.last_train_loss

    def _secure_loss(
        self, lender: LabelParty, z: EncryptedVector, phase: str, header: Header
    ) -> float:
        request, pending = lender.loss_request(z, phase, header.epoch, header.batch)
        message = keys.loss_request(
            common.envelope(self._next(header)),
            request.masked_scores,
            request.masked_sums,
            self._key(),
        )
        reply = self.job.peers.call(
            COORDINATOR, lambda s: s.coordinator.DecryptLoss, message, PEER_TIMEOUT_S
        )
        return LabelParty.finish_loss(keys.loss_total(reply), pending)

    def put_residual(self, caller: str, header: Header, incoming: IncomingVector) -> None:
        job = self.job
        if caller != job.peers.lender:
            raise ProtocolError(f"residuals from {caller!r}, which is not the lender")
        rows = len(job.party.rows_of("train", header.epoch, header.batch))
        scale = residual_scale_bits(job.party.settings.sigmoid)
        vector = incoming(self._key(), scale, rows)
        with self._lock:
            job.residuals[(header.epoch, header.batch)] = vector

    def compute_gradient(self, header: Header) -> None:
        """X.T @ [[4d]], masked and packed, decrypted by the coordinator, unmasked here."""
        job = self.job
        with self._lock:
            residual = job.residuals.pop((header.epoch, header.batch), None)
        if residual is None:
            raise ProtocolError(f"party {self.name!r} has no residual for this batch")
        party = self._features()
        packed, pending = party.gradient_request(residual, header.epoch, header.batch)
        slots = self._decrypt(header, packed, "train")
        party.apply_gradient(slots, pending, header.epoch)

    def _decrypt(self, header: Header, packed: PackedCiphertexts, phase: str) -> list[int]:
        """The coordinator's masked slots for ``phase``'s step of the schedule."""
        message = keys.decrypt_request(
            common.envelope(self._next(header)), packed, self._key(), phase
        )
        reply = self.job.peers.call(
            COORDINATOR, lambda s: s.coordinator.DecryptMasked, message, PEER_TIMEOUT_S
        )
        return keys.slots_of(reply)

    def end_epoch(self, header: Header, keep_epoch: int | None = None) -> EpochLosses:
        """Checkpoint this party's state for the finished epoch (atomically).

        The last two checkpoints stay (for ``--resume``), and so does ``keep_epoch``'s, the
        best epoch so far by validation log-loss, which the driver restores at the end.
        """
        job = self.job
        job.party.epoch = header.epoch + 1
        write_json_atomic(job.state_dir / f"checkpoint-{header.epoch}.json", job.party.state())
        for old in job.state_dir.glob("checkpoint-*.json"):
            number = int(old.stem.split("-")[1])
            if number < header.epoch - 1 and number != keep_epoch:
                old.unlink(missing_ok=True)
        losses = EpochLosses(job.last_train_loss, job.last_validation_loss)
        job.last_train_loss = job.last_validation_loss = None
        return losses

    def restore(self, epoch: int) -> None:
        path = self.job.state_dir / f"checkpoint-{epoch}.json"
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ProtocolError(
                f"party {self.name!r} cannot read checkpoint {path.name}: {exc}"
            ) from exc
        self.job.party.load_state(state)

    # -- evaluation, model, scoring ------------------------------------------------------------
    def evaluate(self, header: Header) -> Evaluation:
        lender = self._lender()
        z = lender.encrypted_scores(
            "test", header.epoch, header.batch, self._take_partials("test", header)
        )
        packed, pending = LabelParty.score_request(z)
        scores = LabelParty.finish_scores(self._decrypt(header, packed, "test"), pending)
        rows = lender.rows_of("test", 0, 0)
        threshold = float(lender.settings.threshold)
        return self.evaluation(lender, rows, lender.labels(rows), scores, threshold)

    def evaluation(
        self, lender: Role, rows: np.ndarray, y: np.ndarray, margins: np.ndarray,
        threshold: float, extra: Mapping[str, object] | None = None,
    ) -> Evaluation:  # fmt: skip
        """Either family's evaluation of the test rows (``lender_evaluation``): keeps their
        score deciles for the model part and writes ``evaluation.csv`` in the job's folder."""
        result, baseline = lender_evaluation(
            self.scorecard, self.policy, y, margins, threshold, extra
        )
        self.job.score_baseline = baseline.to_dict()
        ids = [lender.ids[i] for i in lender.aligned_rows[rows].tolist()]
        csv = evaluation_csv(ids, y, sigmoid(margins))
        write_text_atomic(self.job.state_dir / EVALUATION_CSV, csv)
        return result

    def save_model(self, model_dir: str) -> str:
        part = self.job.party.model_part()
        part["public_key_fingerprint"] = self._key().fingerprint
        # What fedcredit monitor compares a new population with (docs/DECISIONS.md); a party
        # that aligned no rows has no training rows to describe.
        if self.job.party.split is not None:
            part["stability_reference"] = column_reference(self.job.party).to_dict()
        if self.job.score_baseline is not None:
            part["score_baseline"] = self.job.score_baseline
        directory = (
            self.within_home(model_dir, "model folder") if model_dir else self.home / "model"
        )
        write_json_atomic(directory / f"{self.name}.json", part)
        write_importance(self.job.party, self.job.state_dir)
        summary = {k: part[k] for k in ("party", "has_label", "public_key_fingerprint")}
        summary["data_hash"] = self.partner.fingerprint(self.job.job_id, part["data_hash"])
        summary["features"] = len(part["feature_names"])
        return json.dumps(summary)

    def load_model(self, model_dir: Path) -> None:
        """Load this party's stored model part for scoring."""
        party = self._party_factory()
        try:
            part = json.loads((model_dir / f"{self.name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ProtocolError(
                f"party {self.name!r}: cannot read its model part in {model_dir}: {exc}"
            ) from exc
        family = part.get("family", "logistic")
        if family != ("trees" if isinstance(party, TreeColumns) else "logistic"):
            raise ProtocolError(f"party {self.name!r}: {model_dir} holds a {family} model, "
                                "not one of the federation file's [model] family")  # fmt: skip
        party.load_model_part(part)
        self._scoring = party
        self._reference = part.get("stability_reference")

    def scoring_role(self) -> Role:
        """The loaded model part's role, of either family."""
        if self._scoring is None:
            raise ProtocolError(f"party {self.name!r} has no model loaded (start it with --model)")
        return self._scoring

    def scoring_party(self) -> FeatureParty:
        if not isinstance(party := self.scoring_role(), FeatureParty):
            raise ProtocolError(f"party {self.name!r}: its model is not a logistic model")
        return party

    def scoring_peers(self) -> Peers:
        """Connections to the federation's nodes at their configured addresses (for scoring)."""
        if self.static_peers is None:
            raise ProtocolError(f"party {self.name!r} was started without its peers' addresses")
        return self.static_peers

    def partial_score(
        self, caller: str, ids: list[str], peers: Peers, job: str = ""
    ) -> EncryptedVector:
        """This partner's encrypted partial scores for the lender (``fedcredit.node.partner``)."""
        party = self.scoring_party()
        return self.partner.partial_score(caller, job, ids, party, peers)

    def stability(self, caller: str, ids: list[str], job: str = "") -> list[FeatureStability]:
        """The CSI of each of this party's columns on ``ids``, for the lender: at a partner
        under its scoring policy (``PartnerScoring.stability``), at the lender for its own
        operator. Either family: the reference describes the party's raw columns."""
        party = self.scoring_role()
        reference = load_reference(self._reference, self.name)
        lender = self.scoring_peers().lender
        if self.name != lender:
            query = StabilityQuery(caller, lender, job, tuple(ids))
            return self.partner.stability(query, party, reference)
        if caller != lender:
            raise ProtocolError(
                f"stability indices go only to the lender's operator, not {caller!r}"
            )
        return columns_stability(party, reference, ids, None)
