"""Attacks on the coordinator's decryption (security review F4): one party that deviates.

Real in-process nodes (``build_node``, mutual TLS, 1024-bit keys) and a real ``Driver`` run whole
jobs. A deviating party is our own node plus a server interceptor (``Deviation``) that, after
the node's real handler of one RPC ran, takes the ciphertexts of that RPC and asks the real
coordinator, over its own mutual-TLS channel, to decrypt what it should not: a few changed lines
the other parties cannot see, not a stand-in. The truth each attack is checked against (labels,
a host's partial scores) is computed here from the parties' files, as every party computes its
rows from the shared seed.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from fedcredit.config import Federation, load_federation
from fedcredit.crypto import EncryptedVector, PublicKey, encrypt_vector, mask_and_pack, unmask
from fedcredit.data.loader import load_party_csv
from fedcredit.data.synthetic import ECOMMERCE_COLUMNS, write_institutions
from fedcredit.driver.job import Driver
from fedcredit.node.serde import common as convert
from fedcredit.node.transport.client import RemoteCallError, open_channel
from fedcredit.node.transport.identity import Handler, HandlerInterceptor, caller_party
from fedcredit.node.transport.tls import CertPaths, load_channel_credentials
from fedcredit.proto.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc
from fedcredit.protocol.fixedpoint import Z_SCALE_BITS, job_gradient_value_bits, score_value_bits
from fedcredit.protocol.logistic.partner import FeatureParty
from fedcredit.protocol.split import Split, batch_rows, split_rows
from tests.support.federation import NODES, start_nodes

BATCH = 64
#: A bound on the residual [[4d]] at its scale (|4d| < 4 at 2^44): what a thief masks it with.
RESIDUAL_BITS = 50
#: Every way a thief may label its request.
PHASES = ("train", "validation", "test", "score")

Action = Callable[[Any, grpc.ServicerContext, Any], None]


class Deviation(HandlerInterceptor):
    """On a node: after the real handler of an RPC ran, the node's own extra step (it sees the
    request, the caller and the reply)."""

    def __init__(self) -> None:
        self.after: dict[str, Action] = {}

    def wrap(self, handler: Handler, method: str) -> Handler:
        name = method.rsplit("/", 1)[-1]
        behaviour = handler.unary_unary
        if behaviour is None:
            return handler

        def run(request: Any, context: grpc.ServicerContext) -> Any:
            reply = behaviour(request, context)
            action = self.after.get(name)
            if action is not None:
                action(request, context, reply)
            return reply

        return grpc.unary_unary_rpc_method_handler(
            run,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@dataclass
class Thief:
    """What a deviating party asked the coordinator for, and what it got."""

    stolen: dict[tuple[int, int, str], np.ndarray] = field(default_factory=dict)
    refused: list[tuple[str, grpc.StatusCode]] = field(default_factory=list)
    done: set[tuple[int, int]] = field(default_factory=set)

    def codes(self) -> set[grpc.StatusCode]:
        return {code for _, code in self.refused}


@dataclass
class Nodes:
    fed: Federation
    home: Path
    certs: CertPaths
    addresses: dict[str, str]
    deviations: dict[str, Deviation]
    channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def folder(self, name: str) -> Path:
        """Node ``name``'s own folder: its checkpoints, its model part, the coordinator's audit."""
        return self.home / "nodes" / name

    def coordinator(self, me: str) -> coordinator_pb2_grpc.CoordinatorStub:
        """The coordinator's stub over ``me``'s own mutual-TLS channel."""
        if me not in self.channels:
            creds = load_channel_credentials(self.certs.ca, self.certs.cert(me), self.certs.key(me))
            self.channels[me] = open_channel(
                self.addresses["coordinator"], party_name="coordinator", credentials=creds
            )
        return coordinator_pb2_grpc.CoordinatorStub(self.channels[me])

    def key(self, me: str) -> PublicKey:
        reply = self.coordinator(me).GetPublicKey(coordinator_pb2.PublicKeyRequest(), timeout=30)
        return PublicKey.from_json(reply.public_key_json)

    def ask(self, me: str, env: Any, packed: Any, phase: str) -> list[int] | grpc.StatusCode:
        """``me`` asks for a masked decryption labelled ``phase``: the slots, or the refusal."""
        request = coordinator_pb2.DecryptRequest(
            env=env, packed=convert.packed_to_proto(packed, self.key(me)), phase=phase
        )
        try:
            reply = self.coordinator(me).DecryptMasked(request, timeout=60)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return,attr-defined,unused-ignore]
        return convert.ints_from_bytes(reply.slots, reply.slot_bytes, reply.count)

    def driver(self) -> Driver:
        creds = load_channel_credentials(
            self.certs.ca, self.certs.cert("coordinator"), self.certs.key("coordinator")
        )
        return Driver(
            self.fed,
            self.addresses,
            credentials=creds,
            progress=lambda *_: None,
        )

    def run(self, out: Path) -> dict[str, Any]:
        driver = self.driver()
        try:
            return driver.run(out)
        finally:
            driver.peers.close()

    # -- the truth, as every party computes its rows from the shared seed --------------------
    def common(self) -> list[str]:
        ids = [set(load_party_csv(p.data, id_column=p.id_column).ids) for p in self.fed.parties]
        return sorted(set.intersection(*ids))

    def split(self) -> Split:
        t = self.fed.train
        return split_rows(
            len(self.common()),
            test_fraction=t.test_fraction,
            validation_fraction=t.validation_fraction,
            seed=t.seed,
        )

    def train_rows(self, epoch: int, batch: int) -> np.ndarray:
        t = self.fed.train
        return batch_rows(self.split().train, t.batch_size, t.seed, epoch, batch)

    def gradient_bits(self) -> int:
        """The width of every gradient request of a job (a protocol constant: the thief's too)."""
        t = self.fed.train
        return job_gradient_value_bits(
            len(self.split().train), t.batch_size, t.x_scale_bits, t.sigmoid
        )

    def labels(self, epoch: int, batch: int) -> np.ndarray:
        lender = self.fed.lender
        with open(lender.data, newline="", encoding="utf-8") as handle:
            label = {
                r[lender.id_column]: int(r[str(lender.label_column)])
                for r in csv.DictReader(handle)
            }
        common = self.common()
        return np.array([label[common[i]] for i in self.train_rows(epoch, batch)])

    def host_partial(self, host: str, epoch: int, batch: int) -> np.ndarray:
        """``u_h`` of a training batch: the host's weights after epoch ``epoch - 1``."""
        config = self.fed.party(host)
        data = load_party_csv(config.data, id_column=config.id_column, features=config.features)
        party = FeatureParty(host, data.ids, data.X, data.feature_names, self.fed.train)
        party.align(self.common())
        checkpoint = self.folder(host) / f"checkpoint-{epoch - 1}.json"
        party.weights = np.asarray(json.loads(checkpoint.read_text())["weights"])
        rows = self.train_rows(epoch, batch)
        return party.linear(party.design_for(party.raw[party.aligned_rows[rows]]))

    def audit(self) -> list[dict[str, Any]]:
        path = self.folder("coordinator") / "decryption-audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]


def federation_text(data: dict[str, Path]) -> str:
    return f"""[federation]
name = "decrypt"
key_bits = 1024

[coordinator]
address = "127.0.0.1:50050"

[[party]]
name = "lender"
role = "lending"
address = "127.0.0.1:50051"
data = "{data["lender"]}"
id_column = "id"
label_column = "default"

[[party]]
name = "ecommerce"
role = "ecommerce"
address = "127.0.0.1:50052"
data = "{data["ecommerce"]}"
id_column = "id"
features = {json.dumps(list(ECOMMERCE_COLUMNS))}

[[party]]
name = "payments"
role = "payments"
address = "127.0.0.1:50053"
data = "{data["payments"]}"
id_column = "id"

[train]
epochs = 2
batch_size = {BATCH}
test_fraction = 0.25
validation_fraction = 0.1
early_stopping_rounds = 0
seed = 7
x_scale_bits = 16
"""


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    home = tmp_path_factory.mktemp("decrypt")
    data = write_institutions(home / "data", 400, seed=5)
    path = home / "federation.toml"
    path.write_text(federation_text(data), encoding="utf-8")
    fed = load_federation(path, allow_small_keys=True)
    deviations = {name: Deviation() for name in NODES}
    started = start_nodes(
        fed,
        home,
        names=NODES,
        interceptors={name: [deviations[name]] for name in NODES},
        state_dir=lambda name: home / "nodes" / name,
    )
    nodes = Nodes(fed, home, started.certs, started.addresses, deviations)
    try:
        yield nodes
    finally:
        for channel in nodes.channels.values():
            channel.close()
        started.close()


@pytest.fixture()
def nodes(federation: Nodes) -> Iterator[Nodes]:
    for deviation in federation.deviations.values():
        deviation.after.clear()
    yield federation
    for deviation in federation.deviations.values():
        deviation.after.clear()


def residual_of(nodes: Nodes, me: str, request: Any) -> EncryptedVector:
    """The ``[[4d]]`` a host received in ``PutResidual``, as its node loaded it."""
    vector = request.vector
    return convert.vector_from_proto(
        vector, nodes.key(me), scale_bits=vector.scale_bits, count=vector.count
    )


def steal_labels(nodes: Nodes, me: str, thief: Thief, residual: EncryptedVector, env: Any) -> None:
    """Mask ``[[4d]]``, have it decrypted, read every label: 4d < 0 exactly when y = 1."""
    packed, masks = mask_and_pack(residual, RESIDUAL_BITS)
    for phase in PHASES:
        answer = nodes.ask(me, env, packed, phase)
        if isinstance(answer, grpc.StatusCode):
            thief.refused.append((phase, answer))
            continue
        d4 = unmask(answer, masks, residual.scale_bits)
        thief.stolen[(env.epoch, env.batch, phase)] = (d4 < 0).astype(np.int64)


def stolen_matches(nodes: Nodes, thief: Thief) -> str:
    rows = sum(len(v) for v in thief.stolen.values())
    right = sum(
        int((labels == nodes.labels(epoch, batch)).sum())
        for (epoch, batch, _), labels in thief.stolen.items()
    )
    return f"the thief read {rows} training labels, {right} of them right"


# -- F4: a host has the residual it received decrypted ------------------------------------------
def test_a_host_that_masks_the_residual_it_received_learns_no_label(
    nodes: Nodes, tmp_path: Path
) -> None:
    thief = Thief()

    def after_put_residual(request: Any, context: grpc.ServicerContext, reply: Any) -> None:
        if request.env.epoch == 0:
            steal_labels(
                nodes, "ecommerce", thief, residual_of(nodes, "ecommerce", request), request.env
            )

    nodes.deviations["ecommerce"].after["PutResidual"] = after_put_residual

    metrics = nodes.run(tmp_path / "run")

    assert not thief.stolen, stolen_matches(nodes, thief)
    assert thief.codes() == {grpc.StatusCode.PERMISSION_DENIED}
    assert metrics["epochs"] == 2  # refusing the thief does not stop the honest job


def test_a_host_asking_for_one_slot_more_than_its_columns_is_refused(
    nodes: Nodes, tmp_path: Path
) -> None:
    thief = Thief()
    width = len(ECOMMERCE_COLUMNS)

    def after_put_residual(request: Any, context: grpc.ServicerContext, reply: Any) -> None:
        # Its gradient has one slot per design column; one more slot carries one residual.
        residual = residual_of(nodes, "ecommerce", request)
        extra = EncryptedVector(
            residual.public_key, residual.ciphertexts[: width + 1], residual.scale_bits
        )
        packed, masks = mask_and_pack(extra, nodes.gradient_bits())
        answer = nodes.ask("ecommerce", request.env, packed, "train")
        if isinstance(answer, grpc.StatusCode):
            thief.refused.append(("train", answer))
        else:
            d4 = unmask(answer, masks, residual.scale_bits)
            thief.stolen[(request.env.epoch, request.env.batch, "train")] = (d4 < 0).astype(int)

    nodes.deviations["ecommerce"].after["PutResidual"] = after_put_residual

    nodes.run(tmp_path / "run")

    assert not thief.stolen, f"the thief read {sum(map(len, thief.stolen.values()))} labels"
    assert thief.codes() == {grpc.StatusCode.PERMISSION_DENIED}


def test_a_second_request_for_a_step_already_decrypted_is_refused(
    nodes: Nodes, tmp_path: Path
) -> None:
    thief = Thief()
    width = len(ECOMMERCE_COLUMNS)
    residuals: dict[tuple[int, int], Any] = {}

    def keep_residual(request: Any, context: grpc.ServicerContext, reply: Any) -> None:
        residuals[(request.env.epoch, request.env.batch)] = request

    def after_gradient(request: Any, context: grpc.ServicerContext, reply: Any) -> None:
        # The node's honest gradient request of this step has been answered: ask again, with
        # exactly as many slots (the first residuals of the batch instead of the gradient).
        step = (request.env.epoch, request.env.batch)
        if step in thief.done:
            return
        thief.done.add(step)
        residual = residual_of(nodes, "ecommerce", residuals[step])
        first = EncryptedVector(
            residual.public_key, residual.ciphertexts[:width], residual.scale_bits
        )
        packed, masks = mask_and_pack(first, nodes.gradient_bits())
        answer = nodes.ask("ecommerce", request.env, packed, "train")
        if isinstance(answer, grpc.StatusCode):
            thief.refused.append(("train", answer))
        else:
            d4 = unmask(answer, masks, residual.scale_bits)
            thief.stolen[(*step, "train")] = (d4 < 0).astype(int)

    nodes.deviations["ecommerce"].after["PutResidual"] = keep_residual
    nodes.deviations["ecommerce"].after["ComputeGradient"] = after_gradient

    nodes.run(tmp_path / "run")

    assert thief.done
    assert not thief.stolen, f"the thief read {sum(map(len, thief.stolen.values()))} labels"
    assert thief.codes() == {grpc.StatusCode.PERMISSION_DENIED}
    reasons = {e["reason"] for e in nodes.audit() if e["decision"] == "refused"}
    assert any("one per step" in r for r in reasons)


def test_a_host_substituting_within_its_width_reads_that_many_labels_once_and_stops_the_job(
    nodes: Nodes, tmp_path: Path
) -> None:
    # The limit of the design: the coordinator cannot tell a gradient from other ciphertexts of
    # the same size. What the schedule guarantees is the size and the once (docs/THREAT-MODEL.md).
    thief = Thief()
    width = len(ECOMMERCE_COLUMNS)

    def substitute(request: Any, context: grpc.ServicerContext, reply: Any) -> None:
        residual = residual_of(nodes, "ecommerce", request)
        first = EncryptedVector(
            residual.public_key, residual.ciphertexts[:width], residual.scale_bits
        )
        packed, masks = mask_and_pack(first, nodes.gradient_bits())
        for _ in range(2):
            answer = nodes.ask("ecommerce", request.env, packed, "train")
            if isinstance(answer, grpc.StatusCode):
                thief.refused.append(("train", answer))
            else:
                d4 = unmask(answer, masks, residual.scale_bits)
                thief.stolen[(request.env.epoch, request.env.batch, "train")] = (d4 < 0).astype(int)
            packed, masks = mask_and_pack(residual, RESIDUAL_BITS)  # then the whole batch

    nodes.deviations["ecommerce"].after["PutResidual"] = substitute

    with pytest.raises(RemoteCallError) as info:
        nodes.run(tmp_path / "run")

    assert [len(v) for v in thief.stolen.values()] == [width]  # one step, its width
    assert thief.codes() == {grpc.StatusCode.PERMISSION_DENIED}
    assert info.value.party == "ecommerce"
    refusals = [e for e in nodes.audit() if e["decision"] == "refused"]
    assert refusals[-1]["caller"] == "ecommerce" and "one per step" in refusals[-1]["reason"]


# -- F4: the lender has a host's partial scores decrypted ---------------------------------------
def test_a_lender_that_masks_a_host_partial_score_learns_none_of_it(
    nodes: Nodes, tmp_path: Path
) -> None:
    thief = Thief()
    bits = score_value_bits()

    def after_put_partial(request: Any, context: grpc.ServicerContext, reply: Any) -> None:
        env = request.env
        # Batch 0 of epoch 1: the host's weights are those of its checkpoint of epoch 0.
        step = (env.epoch, env.batch)
        if caller_party(context) != "ecommerce" or request.phase != "train" or step != (1, 0):
            return
        key = nodes.key("lender")
        u = convert.vector_from_proto(request.vector, key, scale_bits=Z_SCALE_BITS, count=None)
        packed, masks = mask_and_pack(u, bits)
        for phase in PHASES:
            answer = nodes.ask("lender", env, packed, phase)
            if isinstance(answer, grpc.StatusCode):
                thief.refused.append((phase, answer))
            else:
                thief.stolen[(env.epoch, env.batch, phase)] = unmask(answer, masks, Z_SCALE_BITS)
        # The loss request squares each masked slot: with one slot, (u + r)^2 gives u.
        one = EncryptedVector(key, u.ciphertexts[:1], Z_SCALE_BITS)
        scores, r = mask_and_pack(one, bits)
        sums, _ = mask_and_pack(one, bits)
        loss = coordinator_pb2.LossRequest(
            env=env,
            masked_scores=convert.packed_to_proto(scores, key),
            masked_sums=convert.packed_to_proto(sums, key),
        )
        try:
            squared = nodes.coordinator("lender").DecryptLoss(loss, timeout=60)
        except grpc.RpcError as exc:
            thief.refused.append(("loss", exc.code()))  # type: ignore[attr-defined,unused-ignore]
        else:
            total = int.from_bytes(squared.total, "big")
            value = math.isqrt(total) - r[0]
            thief.stolen[(env.epoch, env.batch, "loss")] = np.array([value / 2.0**Z_SCALE_BITS])

    nodes.deviations["lender"].after["PutPartial"] = after_put_partial

    nodes.run(tmp_path / "run")

    truth = nodes.host_partial("ecommerce", 1, 0)
    right = [k[2] for k, v in thief.stolen.items() if np.allclose(v, truth[: len(v)], atol=1e-5)]
    assert not thief.stolen, f"the lender read ecommerce's partial scores exactly, as {right}"
    assert thief.codes() == {grpc.StatusCode.PERMISSION_DENIED}


# -- the audit log, retries, the schedule and scoring over the wire ------------------------------
def test_every_decryption_of_an_honest_job_is_in_the_audit_log_with_one_width_per_party(
    nodes: Nodes, tmp_path: Path
) -> None:
    metrics = nodes.run(tmp_path / "run")

    job = [e for e in nodes.audit() if e["job"] == metrics["job_id"]]
    assert [e["step"] for e in job].count("schedule") == 1
    assert {e["decision"] for e in job} == {"allowed"}
    batches, epochs = 3, 2
    for party in ("lender", "ecommerce", "payments"):
        train = [e for e in job if e["caller"] == party and e["step"] == "train"]
        assert len(train) == batches * epochs
        # One width per party for the whole job: nothing about any batch's data (F13).
        assert len({(tuple(e["count"]), tuple(e["value_bits"])) for e in train}) == 1
    assert len({tuple(e["value_bits"]) for e in job if e["step"] == "train"}) == 1
    lender_steps = [e["step"] for e in job if e["step"] not in ("train", "schedule")]
    assert sorted(lender_steps) == ["loss"] * epochs + ["test"] + ["validation"] * epochs
    assert {e["caller"] for e in job if e["step"] != "train"} == {"lender", "coordinator"}


def test_an_identical_retry_gets_the_same_slots_and_a_new_request_for_the_step_is_refused(
    nodes: Nodes, tmp_path: Path
) -> None:
    seen: list[tuple[Any, Any]] = []

    def record(request: Any, context: grpc.ServicerContext, reply: Any) -> None:
        if caller_party(context) == "ecommerce" and not seen:
            seen.append((request, reply))

    nodes.deviations["coordinator"].after["DecryptMasked"] = record
    nodes.run(tmp_path / "run")
    request, reply = seen[0]
    stub = nodes.coordinator("ecommerce")

    again = stub.DecryptMasked(request, timeout=60)
    renumbered = coordinator_pb2.DecryptRequest()
    renumbered.CopyFrom(request)
    renumbered.env.seq += 1_000
    with pytest.raises(grpc.RpcError) as info:
        stub.DecryptMasked(renumbered, timeout=60)

    assert again.slots == reply.slots
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined,unused-ignore]


def test_a_host_cannot_register_the_schedule_of_the_job(nodes: Nodes, tmp_path: Path) -> None:
    metrics = nodes.run(tmp_path / "run")
    wider = coordinator_pb2.ScheduleRequest(
        env=common_pb2.Envelope(job_id=metrics["job_id"], seq=1),
        train_rows=216,
        validation_rows=24,
        test_rows=80,
        widths={"lender": 5, "ecommerce": 63, "payments": 5},
    )

    with pytest.raises(grpc.RpcError) as info:
        nodes.coordinator("ecommerce").SetSchedule(wider, timeout=30)

    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined,unused-ignore]
    assert nodes.audit()[-1]["caller"] == "ecommerce"
    assert nodes.audit()[-1]["decision"] == "refused"


def test_a_scoring_job_decrypts_the_lender_scores_only(nodes: Nodes) -> None:
    env = common_pb2.Envelope(job_id="scoring-test", seq=1)
    request = coordinator_pb2.StartJobRequest(env=env, key_bits=1024)
    nodes.coordinator("coordinator").StartJob(request, timeout=120)
    key = nodes.key("lender")
    packed, masks = mask_and_pack(
        encrypt_vector(key, np.full(3, 0.25), Z_SCALE_BITS), score_value_bits()
    )

    scores = nodes.ask("lender", env, packed, "score")
    host = nodes.ask("ecommerce", env, packed, "score")

    assert not isinstance(scores, grpc.StatusCode)
    assert unmask(scores, masks, Z_SCALE_BITS).tolist() == [0.25] * 3
    assert host == grpc.StatusCode.PERMISSION_DENIED
