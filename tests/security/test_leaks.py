"""Hardening against leaks: what crosses the wire during a real training job, and what the
encoding of a residual can tell.

A small federation (coordinator, lender, ecommerce, payments) built by ``build_node`` runs in
this process with real mutual TLS and a 1024-bit key, and a real ``Driver`` runs a whole job:
alignment, training, validation, evaluation, saving the model. A recording server interceptor
on every node (``build_node(..., interceptors=...)``) keeps the exact serialized bytes of every
request as it arrived and every reply as it left; every call of the job ends at one of these
servers, so together they hold everything any node sent.

The job is then replayed in one process with the protocol's own domain objects (the parties'
data, the aligned order the PSI gives, the same batches). Replaying reaches the saved model bit
for bit, so it yields the exact values the job computed in the clear: raw and fixed-point
features, labels, per-batch partial scores, scores, residuals, gradients and weights. None of
them may appear in any captured message in the byte forms a leak would take.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message
from phe import EncodedNumber, paillier

from fedcredit.cli.demo import write_demo_federation
from fedcredit.config import Federation, load_federation
from fedcredit.crypto import (
    EncryptedVector,
    PublicKey,
    encrypt_vector,
    generate_keypair,
    unmask,
)
from fedcredit.crypto.serde import ciphertext_width
from fedcredit.crypto.vector import decrypt_vector
from fedcredit.data.loader import load_party_csv
from fedcredit.data.synthetic import write_institutions
from fedcredit.model.logistic import fit_plain
from fedcredit.model.metrics import auc
from fedcredit.node.serde import common as convert
from fedcredit.proto.v1 import common_pb2
from fedcredit.protocol.binning import BinEncoder
from fedcredit.protocol.fixedpoint import Z_SCALE_BITS, residual_scale_bits
from fedcredit.protocol.keyholder import KeyHolder
from fedcredit.protocol.logistic.lender import LabelParty
from fedcredit.protocol.logistic.local import validate
from fedcredit.protocol.logistic.partner import FeatureParty
from fedcredit.protocol.logistic.settings import reference_settings
from tests.support.data import shared_data_dir
from tests.support.federation import NODES, start_nodes
from tests.support.recorder import Exchange, Recorder

WINDOW = 8  # patterns are looked up by their last 8 bytes; shorter ones would match by chance


@dataclass
class RecordedJob:
    fed: Federation
    folder: Path
    design: str
    metrics: dict[str, Any]
    exchanges: list[Exchange]
    unrecorded: list[str]

    def methods(self) -> set[str]:
        return {e.method.rsplit("/", 1)[1] for e in self.exchanges}

    def messages(self) -> Iterator[tuple[Exchange, Any]]:
        """Every fedcredit message on the wire, nested ones included, with its exchange."""
        for exchange in self.exchanges:
            if exchange.method.startswith("/fedcredit."):
                for side, data in (("request", exchange.request), ("response", exchange.response)):
                    for message in submessages(parse(exchange.method, data, side)):
                        yield exchange, message

    def public_keys(self) -> dict[str, PublicKey]:
        """The keys announced on the wire (the coordinator's; the lender's own for binning)."""
        keys = [
            PublicKey.from_json(message.public_key_json)
            for _, message in self.messages()
            if "public_key_json" in message.DESCRIPTOR.fields_by_name and message.public_key_json
        ]
        return {key.fingerprint: key for key in keys}

    def model(self, party: str) -> dict[str, Any]:
        text = (self.folder / "run" / "model" / f"{party}.json").read_text()
        return dict(json.loads(text))


def run_recorded_job(folder: Path, design: str) -> RecordedJob:
    """A whole job on in-process nodes, every call recorded.

    ``binned``: the demo's federated binning first (its messages carry the encrypted labels),
    then training on one-hot bins. ``standardized``: no binning, training on standardized
    columns, whose fixed-point codes are then values worth looking for (bins are 0 or 1).
    """
    data = write_institutions(folder / "data", 400, seed=3)
    path = write_demo_federation(folder, data, key_bits=1024, epochs=2)
    text = path.read_text().replace("batch_size = 4096", "batch_size = 64")
    path.write_text(text if design == "binned" else text.replace("[binning]\n", ""))
    fed = load_federation(path, allow_small_keys=True)
    exchanges: list[Exchange] = []
    unrecorded: list[str] = []
    recorders = {name: [Recorder(name, exchanges, unrecorded)] for name in NODES}
    # Every node's home is the folder holding the driver's state/ and run/model.
    nodes = start_nodes(fed, folder, names=NODES, interceptors=recorders)
    try:
        driver = nodes.new_driver()
        try:
            metrics = driver.run(folder / "run")
        finally:
            driver.peers.close()
    finally:
        nodes.close()
    return RecordedJob(fed, folder, design, metrics, exchanges, unrecorded)


def parse(method: str, data: bytes, side: str) -> Any:
    """The message of ``method``'s request or response type parsed from ``data``."""
    service, name = method.lstrip("/").rsplit("/", 1)
    descriptor = descriptor_pool.Default().FindMethodByName(f"{service}.{name}")
    message_type = descriptor.input_type if side == "request" else descriptor.output_type
    message = message_factory.GetMessageClass(message_type)()
    message.ParseFromString(data)
    return message


def submessages(message: Message) -> Iterator[Message]:
    """Every message nested in ``message`` (itself included), maps and repeated fields too."""
    yield message
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        if descriptor.message_type.GetOptions().map_entry:
            values: Iterable[Any] = value.values()
        elif descriptor.is_repeated:
            values = value
        else:
            values = [value]
        for item in values:
            if isinstance(item, Message):
                yield from submessages(item)


# -- looking for many byte patterns at once ---------------------------------------------------
class Haystack:
    """Captured messages, with every 8-byte window sorted so that many thousands of patterns
    can be looked up at once; a candidate is confirmed by a plain search of each message."""

    def __init__(self, messages: Iterable[bytes]) -> None:
        self.messages = [m for m in messages if m]
        blob = np.frombuffer(b"".join(self.messages), dtype=np.uint8)
        windows = np.lib.stride_tricks.sliding_window_view(blob, WINDOW)
        self._keys = np.unique(np.ascontiguousarray(windows).view("<u8").ravel())

    def found(self, patterns: dict[bytes, str]) -> list[str]:
        """The descriptions of the patterns that occur in some message."""
        if any(len(p) < WINDOW for p in patterns):
            raise ValueError("patterns shorter than 8 bytes would match by chance")
        items = list(patterns.items())
        keys = np.array([int.from_bytes(p[-WINDOW:], "little") for p, _ in items], np.uint64)
        where = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        candidates = np.flatnonzero(self._keys[where] == keys)
        return [
            items[i][1] for i in candidates.tolist() if any(items[i][0] in m for m in self.messages)
        ]


def trivial(magnitude: float | int) -> bool:
    """Zero and powers of two (0.5, 1, 2, 2**16, ...) are skipped: they are flags, one-hot codes,
    the intercept's column, initial weights and the first residuals 2 - 4y (the label checks
    cover those), and their byte forms are one set bit among zero bytes."""
    if isinstance(magnitude, int):
        return magnitude & (magnitude - 1) == 0
    return magnitude == 0 or math.frexp(magnitude)[0] == 0.5


@dataclass
class Patterns:
    """Byte forms of secret values, each with a description for the failure message."""

    items: dict[bytes, str] = field(default_factory=dict)

    def add(self, pattern: bytes, what: str) -> None:
        # A run of one byte value (zeros above all) says nothing about any value.
        if len(pattern) >= WINDOW and len(set(pattern)) > 1:
            self.items.setdefault(pattern, what)

    def floats(self, values: Iterable[float], what: str) -> None:
        """float64 in both byte orders and the shortest decimal text (as JSON writes it)."""
        for value in values:
            if not math.isfinite(value) or trivial(abs(value)):
                continue
            self.add(np.float64(value).astype("<f8").tobytes(), f"{what} {value!r} (f64 le)")
            self.add(np.float64(value).astype(">f8").tobytes(), f"{what} {value!r} (f64 be)")
            self.add(repr(float(value)).encode(), f"{what} {value!r} (text)")

    def ints(self, values: Iterable[int], what: str) -> None:
        """Signed integers as int64 in both byte orders and as minimal big-endian bytes."""
        for value in values:
            value = int(value)
            if trivial(abs(value)):
                continue
            if -(2**63) <= value < 2**63:
                self.add(value.to_bytes(8, "little", signed=True), f"{what} {value} (i64 le)")
                self.add(value.to_bytes(8, "big", signed=True), f"{what} {value} (i64 be)")
            size = (abs(value).bit_length() + 8) // 8
            self.add(value.to_bytes(size, "big", signed=True), f"{what} {value} (signed be)")
            self.add(abs(value).to_bytes(size, "big"), f"{what} {value} (magnitude be)")

    def labels(self, labels: np.ndarray, what: str) -> None:
        """A label vector as bytes, as bits (both bit orders), as int64 and float64."""
        y = np.asarray(labels, dtype=np.uint8)
        self.add(y.tobytes(), f"{what} (one byte per label)")
        self.add(np.packbits(y).tobytes(), f"{what} (bits)")
        self.add(np.packbits(y, bitorder="little").tobytes(), f"{what} (bits, little)")
        self.add(y.astype("<i8").tobytes(), f"{what} (int64)")
        self.add(y.astype("<f8").tobytes(), f"{what} (float64)")


# -- the job replayed in the clear ------------------------------------------------------------
@dataclass
class Truth:
    """What the job computed in the clear, from the replay."""

    secrets: dict[str, Patterns]
    final_weights: dict[str, list[float]]
    batches: int


def aligned_parties(job: RecordedJob, public: PublicKey) -> dict[str, FeatureParty]:
    """Every party's domain object on its own data, aligned as in the job, with its bins."""
    parties: dict[str, FeatureParty] = {}
    for config in job.fed.parties:
        data = load_party_csv(
            config.data, id_column=config.id_column, label_column=config.label_column
        )
        settings = job.fed.train
        party: FeatureParty
        if config.is_lender:
            assert data.y is not None
            party = LabelParty(config.name, data.ids, data.X, data.feature_names, data.y, settings)
        else:
            party = FeatureParty(config.name, data.ids, data.X, data.feature_names, settings)
        party.public_key = public
        party.release_bits = job.fed.scoring.precision_bits  # as make_party_node sets it
        parties[config.name] = party
    # The PSI hands every party the common ids sorted as strings (PSIParty.resolve).
    common = sorted(set.intersection(*(set(p.ids) for p in parties.values())))
    for name, party in parties.items():
        party.align(common)
        encoder = job.model(name)["encoder"]
        if encoder is not None:
            party.set_encoder(BinEncoder.from_dict(encoder))
    return parties


def data_secrets(parties: dict[str, FeatureParty], lender: LabelParty) -> dict[str, Patterns]:
    """Raw features and their fixed-point codes, row ids, and the labels as whole vectors."""
    secrets = {k: Patterns() for k in ("features", "labels", "model", "ids")}
    for name, party in parties.items():
        secrets["features"].floats(party.raw.ravel().tolist(), f"{name} feature")
        fixed = party.design_for(party.raw).ravel().tolist()
        secrets["features"].ints(fixed, f"{name} fixed-point feature")
        for cid in party.ids:
            secrets["ids"].add(cid.encode(), f"{name} id {cid}")
    aligned = lender.labels(np.arange(len(lender.aligned_rows)))
    secrets["labels"].labels(aligned, "labels of the aligned rows")
    secrets["labels"].labels(lender.labels(np.argsort(lender.aligned_rows)), "labels in file order")
    return secrets


def replay(job: RecordedJob) -> Truth:
    """The job's training replayed with the protocol's domain objects and a throwaway key.

    The masks of the masked decryptions cancel exactly, so the replay takes the same steps
    as the federated job whatever the key: its weights must equal the saved model's. A binned
    job's bins come from the saved model (each party's encoder). Every per-batch value is kept.
    """
    public, private = generate_keypair(1024, allow_small=True)
    keys = KeyHolder(allow_small_keys=True)
    keys.use_keypair("replay", public, private)
    parties = aligned_parties(job, public)
    lender = parties[job.fed.lender.name]
    assert isinstance(lender, LabelParty)
    hosts = [p for p in parties.values() if p is not lender]
    secrets = data_secrets(parties, lender)
    design = {n: p.design_for(p.raw[p.aligned_rows]) for n, p in parties.items()}
    model = secrets["model"]

    def scores(phase: str, epoch: int, batch: int) -> None:
        rows = lender.rows_of(phase, epoch, batch)
        secrets["labels"].labels(lender.labels(rows), f"labels of {phase} {epoch}/{batch}")
        total = np.zeros(len(rows))
        for name, party in parties.items():
            u = party.linear(design[name][rows])
            total += u
            model.floats(u.tolist(), f"{name} partial score ({phase})")
            model.ints(np.rint(u * 2.0**Z_SCALE_BITS).tolist(), f"{name} fixed-point partial")
        model.floats(total.tolist(), f"score z ({phase})")

    def gradient_step(party: FeatureParty, residual: EncryptedVector, at: tuple[int, int]) -> None:
        model.floats(party.weights.tolist(), f"{party.name} weight")
        packed, pending = party.gradient_request(residual, *at)
        slots = keys.decrypt_masked(packed)
        model.ints([s - m for s, m in zip(slots, pending.masks, strict=True)], "gradient")
        g = unmask(slots, pending.masks, pending.scale_bits) / (4.0 * pending.rows)
        l2 = np.full(party.n_weights, float(job.fed.train.l2))
        if party is lender:
            l2[-1] = 0.0  # the intercept is not regularized
        model.floats(g.tolist(), f"{party.name} gradient")
        model.floats((g + l2 * party.weights).tolist(), f"{party.name} gradient with L2")
        party.apply_gradient(slots, pending, at[0])

    epochs, batches = int(job.metrics["epochs"]), lender.batches_per_epoch()
    for epoch in range(epochs):
        for batch in range(batches):
            scores("train", epoch, batch)
            partials = {h.name: h.partial("train", epoch, batch) for h in hosts}
            z = lender.encrypted_scores("train", epoch, batch, partials)
            residual = lender.residual(z, "train", epoch, batch)
            four_d = decrypt_vector(private, residual)
            model.floats(four_d.tolist(), "residual 4d")
            model.floats((four_d / 4.0).tolist(), "residual d")
            model.ints(np.rint(four_d * 2.0**residual.scale_bits).tolist(), "fixed-point 4d")
            for party in (lender, *hosts):
                gradient_step(party, residual, (epoch, batch))
        if len(lender.rows_of("validation", epoch, batches)):
            scores("validation", epoch, batches)
            validate(lender, hosts, keys, epoch)  # the lender's expansion point moves with it
        if epoch + 1 == int(job.metrics["kept_epoch"]):
            # The run keeps this epoch's model (the best by validation log-loss).
            kept = {n: p.weights.copy() for n, p in parties.items()}
    for name, party in parties.items():
        party.weights = kept[name]
    scores("test", epochs, 0)
    for party in parties.values():
        model.floats(party.weights.tolist(), f"{party.name} final weight")
    final = {n: p.weights.tolist() for n, p in parties.items()}
    return Truth(secrets, final, batches)


@pytest.fixture(scope="module", params=["standardized", "binned"])
def job(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> RecordedJob:
    return run_recorded_job(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture(scope="module")
def truth(job: RecordedJob) -> Truth:
    return replay(job)


@pytest.fixture(scope="module")
def wire(job: RecordedJob) -> Haystack:
    return Haystack(b for e in job.exchanges for b in (e.request, e.response))


# -- 1. what crosses the wire -----------------------------------------------------------------
def test_the_recording_holds_every_step_of_the_job(job: RecordedJob) -> None:
    steps = {"Setup", "PsiBlind", "PsiApply", "PsiFinish", "PsiAlign", "ComputePartial"}
    steps |= {"PutPartial", "ComputeResidual", "PutResidual", "ComputeGradient", "EndEpoch"}
    steps |= {"StartJob", "DecryptMasked", "DecryptLoss", "Evaluate"}
    if job.design == "binned":
        steps |= {"SendLabels", "PutLabels", "ComputeBinSums", "PutBinSums", "SelectBins"}
    assert steps <= job.methods()
    assert job.unrecorded == []
    assert all(e.caller and e.request and e.response for e in job.exchanges)


def test_the_replay_reaches_the_saved_model_bit_for_bit(job: RecordedJob, truth: Truth) -> None:
    for name, weights in truth.final_weights.items():
        assert job.model(name)["weights"] == weights, name
    assert truth.batches > 1


def test_the_search_finds_values_that_are_meant_to_cross(job: RecordedJob, wire: Haystack) -> None:
    # The lender's secure training loss crosses as a double in EndEpoch; a ciphertext crosses
    # in every PutPartial. If the search missed them, its silence below would mean nothing.
    meant = Patterns()
    meant.floats(job.metrics["train_taylor_loss"], "train loss")
    vector = next(
        parse(e.method, e.request, "request").vector
        for e in job.exchanges
        if e.method.endswith("/PutPartial")
    )
    meant.add(vector.data[-40:], "a partial-score ciphertext")
    assert {"a partial-score ciphertext", *(v for v in meant.items.values() if "le" in v)} <= set(
        wire.found(meant.items)
    )


def test_every_ciphertext_on_the_wire_is_a_valid_randomized_ciphertext_of_an_announced_key(
    job: RecordedJob,
) -> None:
    keys = job.public_keys()
    counts = {"CipherVector": 0, "PackedCiphers": 0}
    for exchange, message in job.messages():
        kind = message.DESCRIPTOR.name
        if kind not in counts:
            continue
        key = keys[message.key_fingerprint]  # a KeyError: a key nobody announced
        if kind == "CipherVector":
            vector = convert.vector_from_proto(
                message, key, scale_bits=message.scale_bits, count=None
            )  # validates the length against the count, 0 < c < n^2, gcd(c, n) = 1
            # Labels for binning go at scale 0, scores at Z, residuals at theirs.
            assert vector.scale_bits in (0, Z_SCALE_BITS, residual_scale_bits("local"))
        else:
            convert.packed_from_proto(message, key)  # the same checks, for packed slots
        counts[kind] += 1
        n, width, data = int(key.n), ciphertext_width(key), message.data
        ciphertexts = [
            int.from_bytes(data[i : i + width], "big") for i in range(0, len(data), width)
        ]
        # A plaintext (or its encoding) is below n; an encryption without randomness,
        # (1 + n)^m = 1 + m n, is 1 mod n. A real ciphertext is neither.
        assert all(c > n and c % n != 1 for c in ciphertexts), exchange.method
    batches = len([e for e in job.exchanges if e.method.endswith("/PutResidual")])
    assert len(keys) == (2 if job.design == "binned" else 1)
    assert counts["CipherVector"] > batches > 0
    assert counts["PackedCiphers"] > batches


def test_no_raw_feature_value_or_fixed_point_code_crosses_the_wire(
    truth: Truth, wire: Haystack
) -> None:
    patterns = truth.secrets["features"].items
    assert len(patterns) > 1000
    assert wire.found(patterns) == []


def test_no_label_vector_crosses_the_wire(truth: Truth, wire: Haystack) -> None:
    patterns = truth.secrets["labels"].items
    assert len(patterns) > 5 * truth.batches
    assert wire.found(patterns) == []


def test_no_weight_gradient_partial_score_or_residual_crosses_the_wire(
    truth: Truth, wire: Haystack
) -> None:
    patterns = truth.secrets["model"].items
    assert len(patterns) > 1000
    assert wire.found(patterns) == []


def test_the_coordinator_and_its_driver_receive_no_row_id(job: RecordedJob) -> None:
    # The coordinator's node receives requests; the driver (the coordinator's operator, calling
    # with its certificate) receives the replies of its calls. Ids reach them only as points.
    received = [e.request for e in job.exchanges if e.node == "coordinator"]
    received += [e.response for e in job.exchanges if e.caller == "coordinator"]
    psi = [e for e in job.exchanges if e.caller == "coordinator" and "/Psi" in e.method]
    ids = {
        cid.encode(): f"{p.name} id {cid}"
        for p in job.fed.parties
        for cid in load_party_csv(p.data, id_column=p.id_column).ids
    }
    assert len(psi) > 3 and len(ids) > 300
    assert Haystack(received).found(ids) == []


def test_no_row_id_crosses_the_wire_during_training(truth: Truth, wire: Haystack) -> None:
    assert wire.found(truth.secrets["ids"].items) == []


# -- 2. one scale per message: the encoding of a residual says nothing about its label -------
def residuals(
    shared_data: Path | None, scratch: Path, rows: int = 3000
) -> tuple[np.ndarray, np.ndarray]:
    """Residuals d = p - y of a plaintext logistic model on the UCI credit data (synthetic
    lender data when the shared data is absent), and the labels y."""
    if shared_data is not None:
        path = shared_data / "uci_default_credit" / "UCI_Credit_Card.csv"
        header = path.read_text().splitlines()[0].replace('"', "").split(",")
        table = np.loadtxt(path, delimiter=",", skiprows=1)
        columns = ["LIMIT_BAL", "PAY_0", "PAY_2", "PAY_3", "BILL_AMT1", "PAY_AMT1", "AGE"]
        x = table[:, [header.index(c) for c in columns]]
        y = table[:, header.index("default.payment.next.month")].astype(np.int64)
    else:
        files = write_institutions(scratch, 4000, seed=1)
        data = load_party_csv(files["lender"], id_column="id", label_column="default")
        assert data.y is not None
        x, y = data.X, data.y.astype(np.int64)
    pick = np.random.default_rng(11).permutation(len(y))[:rows]
    x, y = x[pick], y[pick]
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    p = fit_plain(x, y, reference_settings()).predict_proba(x)
    return p - y, y


def lookup_auc(features: list[tuple[int, ...]], y: np.ndarray) -> float:
    """AUC on the second half of a classifier that predicts, for each value of the features,
    the label rate it had on the first half (the best any classifier can do on them)."""
    half = len(y) // 2
    rates: dict[tuple[int, ...], list[int]] = {}
    for f, label in zip(features[:half], y[:half].tolist(), strict=True):
        rates.setdefault(f, []).append(label)
    prior = float(y[:half].mean())
    guess = [float(np.mean(rates[f])) if f in rates else prior for f in features[half:]]
    return auc(y[half:], guess)


@pytest.fixture(scope="module")
def uci_residuals(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    return residuals(shared_data_dir(), tmp_path_factory.mktemp("residuals"))


def test_residuals_on_the_wire_carry_one_scale_and_one_width_so_they_predict_no_label(
    uci_residuals: tuple[np.ndarray, np.ndarray],
) -> None:
    d, y = uci_residuals
    key, _ = generate_keypair(1024, allow_small=True)
    width = ciphertext_width(key)
    features: list[tuple[int, ...]] = []
    for start in range(0, len(d), 500):  # one message per mini-batch, as the lender sends
        vector = encrypt_vector(key, 4.0 * d[start : start + 500], residual_scale_bits("local"))
        message = common_pb2.CipherVector.FromString(
            convert.vector_to_proto(vector).SerializeToString()
        )
        chunks = [message.data[i : i + width] for i in range(0, len(message.data), width)]
        assert len(chunks) == message.count
        features += [(message.scale_bits, len(chunk)) for chunk in chunks]
    assert len(set(features)) == 1
    assert lookup_auc(features, y) == 0.5


def test_phe_default_exponents_of_the_same_residuals_do_predict_labels(
    uci_residuals: tuple[np.ndarray, np.ndarray],
) -> None:
    # The control: phe picks an exponent per value from its size, and the exponent travels in
    # the clear with the ciphertext. For 4d (what the lender sends), |4d| is at least 2 for a
    # defaulter and below 1 for most others: the exponent all but names the label.
    d, y = uci_residuals
    public, _ = paillier.generate_paillier_keypair(n_length=1024)
    features = [(EncodedNumber.encode(public, float(4.0 * v)).exponent,) for v in d]
    assert len(set(features)) > 1
    assert lookup_auc(features, y) > 0.7
