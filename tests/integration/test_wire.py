"""Hardening on the wire: real in-process party and coordinator nodes (``build_node``, real mutual
TLS, 1024-bit keys) refuse malformed ciphertexts, foreign jobs, replays, oversize messages,
unknown transports and random bytes with the right status, and serve the next valid call.

Random-byte fuzzing sends ``FUZZ_TOTAL`` = 10,000 requests, spread evenly over every RPC of both
services (each test counts what it sent).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedcredit.crypto import PublicKey, encrypt_vector, mask_and_pack
from fedcredit.crypto.serde import ciphertext_width
from fedcredit.node.serde import common as convert
from fedcredit.node.transport.client import open_channel
from fedcredit.node.transport.peers import PARTY_RPC_PATHS, PeerStubs
from fedcredit.node.transport.server import DEFAULT_MAX_MESSAGE_BYTES
from fedcredit.node.transport.tls import CertPaths, init_certs, load_channel_credentials
from fedcredit.proto.v1 import (
    common_pb2,
    coordinator_pb2,
    job_pb2,
)
from fedcredit.protocol.fixedpoint import Z_SCALE_BITS, score_value_bits
from tests.support.federation import InProcessFederation, saved_weights, start_federation

FUZZ_TOTAL = 10_000
PARTY_METHODS = list(PARTY_RPC_PATHS)
COORDINATOR_METHODS = list(
    coordinator_pb2.DESCRIPTOR.services_by_name["Coordinator"].methods_by_name
)
FUZZ_METHODS = [f"Party/{m}" for m in PARTY_METHODS] + [
    f"Coordinator/{m}" for m in COORDINATOR_METHODS
]


def fuzz_budget(method: str) -> int:
    """This RPC's share of FUZZ_TOTAL; the shares of all RPCs add up to exactly FUZZ_TOTAL."""
    share, extra = divmod(FUZZ_TOTAL, len(FUZZ_METHODS))
    return share + (FUZZ_METHODS.index(method) < extra)


# What a refusal of a malformed or unauthorized request may look like; never INTERNAL/UNKNOWN.
REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessFederation]:
    federation = start_federation(tmp_path_factory.mktemp("wire"))
    yield federation
    federation.close()


def code_of(fn: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code()  # type: ignore[no-any-return, attr-defined]


# -- valid messages and their corruptions ----------------------------------------------------
def valid_partial(nodes: InProcessFederation) -> common_pb2.CipherVector:
    vector = encrypt_vector(nodes.key, np.zeros(nodes.train_rows()), Z_SCALE_BITS)
    return convert.vector_to_proto(vector)


def valid_packed(nodes: InProcessFederation, count: int = 4) -> common_pb2.PackedCiphers:
    """Scores as the lender sends them for decryption (what this job, with no schedule, allows)."""
    scores = encrypt_vector(nodes.key, np.zeros(count), Z_SCALE_BITS)
    packed, _ = mask_and_pack(scores, score_value_bits())
    return convert.packed_to_proto(packed, nodes.key)


def put_partial(
    nodes: InProcessFederation, vector: common_pb2.CipherVector, *, job: str | None = None,
    seq: int | None = None, caller: str = "ecommerce",
) -> common_pb2.Ack:  # fmt: skip
    request = common_pb2.CipherMessage(
        env=nodes.env(job=job, seq=seq), phase="train", vector=vector
    )
    return nodes.party(caller).PutPartial(request, timeout=30)


def decrypt(
    nodes: InProcessFederation, packed: common_pb2.PackedCiphers, *, job: str | None = None
) -> coordinator_pb2.DecryptReply:
    request = coordinator_pb2.DecryptRequest(env=nodes.env(job=job), packed=packed, phase="score")
    return nodes.coordinator("lender").DecryptMasked(request, timeout=30)


def with_first_ciphertext(key: PublicKey, data: bytes, value: int) -> bytes:
    width = ciphertext_width(key)
    return value.to_bytes(width, "big") + data[width:]


CIPHERTEXT_VALUES: dict[str, Callable[[PublicKey], int]] = {
    "c=0": lambda k: 0,
    "c=n": lambda k: int(k.n),
    "c=n^2": lambda k: int(k.nsquare),
    "c=max width": lambda k: 256 ** ciphertext_width(k) - 1,
    "c=2n, not coprime with n": lambda k: 2 * int(k.n),
}


def _corruptions(field_name: str, more: int) -> dict[str, Callable[[Any, PublicKey], None]]:
    def set_first(value: Callable[[PublicKey], int]) -> Callable[[Any, PublicKey], None]:
        def apply(msg: Any, key: PublicKey) -> None:
            msg.data = with_first_ciphertext(key, msg.data, value(key))

        return apply

    def setter(name: str, value: Callable[[Any], Any]) -> Callable[[Any, PublicKey], None]:
        return lambda msg, key: setattr(msg, name, value(msg))

    cases = {name: set_first(value) for name, value in CIPHERTEXT_VALUES.items()}
    cases.update(
        {
            "one byte short": setter("data", lambda m: m.data[:-1]),
            "one byte long": setter("data", lambda m: m.data + b"\0"),
            "count too high": setter("count", lambda m: m.count + more),
            "another key's fingerprint": setter("key_fingerprint", lambda m: "0" * 32),
        }
    )
    cases[field_name] = setter(field_name, lambda m: getattr(m, field_name) + 1)
    return cases


VECTOR_CORRUPTIONS = _corruptions("scale_bits", 1)
# Several values share a packed ciphertext: a count needing more ciphertexts than were sent.
PACKED_CORRUPTIONS = _corruptions("slot_bits", 1000)


# -- 1. ciphertexts ---------------------------------------------------------------------------
def test_a_valid_partial_score_vector_is_accepted(nodes: InProcessFederation) -> None:
    assert put_partial(nodes, valid_partial(nodes)).env.job_id == nodes.job_id


@pytest.mark.parametrize("corruption", list(VECTOR_CORRUPTIONS))
def test_party_node_refuses_a_bad_ciphertext_vector_and_serves_the_next_call(
    nodes: InProcessFederation, corruption: str
) -> None:
    vector = valid_partial(nodes)
    VECTOR_CORRUPTIONS[corruption](vector, nodes.key)
    assert code_of(lambda: put_partial(nodes, vector)) == grpc.StatusCode.INVALID_ARGUMENT
    assert put_partial(nodes, valid_partial(nodes)).env.job_id == nodes.job_id


@pytest.mark.parametrize("corruption", list(PACKED_CORRUPTIONS))
def test_coordinator_refuses_bad_packed_ciphertexts_and_serves_the_next_call(
    nodes: InProcessFederation, corruption: str
) -> None:
    packed = valid_packed(nodes)
    PACKED_CORRUPTIONS[corruption](packed, nodes.key)
    assert code_of(lambda: decrypt(nodes, packed)) == grpc.StatusCode.INVALID_ARGUMENT
    assert decrypt(nodes, valid_packed(nodes)).count == 4


# -- jobs, replays, sizes ---------------------------------------------------------------------
def test_party_node_refuses_a_message_of_another_job(nodes: InProcessFederation) -> None:
    code = code_of(lambda: put_partial(nodes, valid_partial(nodes), job="another-job"))
    step = job_pb2.StepRequest(env=nodes.env(job="another-job"), phase="train")
    driver_code = code_of(lambda: nodes.party("coordinator").ComputeGradient(step, timeout=30))
    assert (code, driver_code) == (grpc.StatusCode.FAILED_PRECONDITION,) * 2


def test_coordinator_refuses_a_message_of_another_job(nodes: InProcessFederation) -> None:
    code = code_of(lambda: decrypt(nodes, valid_packed(nodes), job="another-job"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION


def test_a_retry_gets_the_same_reply_and_an_older_sequence_number_is_refused(
    nodes: InProcessFederation,
) -> None:
    seq = nodes.seq()
    first = put_partial(nodes, valid_partial(nodes), seq=seq)
    retry = put_partial(nodes, valid_partial(nodes), seq=seq)
    stale = code_of(lambda: put_partial(nodes, valid_partial(nodes), seq=seq - 1))
    assert retry == first
    assert stale == grpc.StatusCode.FAILED_PRECONDITION
    assert put_partial(nodes, valid_partial(nodes)).env.job_id == nodes.job_id


def test_oversize_message_is_refused_and_the_node_serves_the_next_call(
    nodes: InProcessFederation,
) -> None:
    vector = common_pb2.CipherVector(data=b"\0" * (DEFAULT_MAX_MESSAGE_BYTES + 1))
    request = common_pb2.CipherMessage(env=nodes.env(), phase="train", vector=vector)
    # Our own channel sends up to its limit too; go around it with a raw channel that allows more.
    creds = load_channel_credentials(
        nodes.certs.ca, nodes.certs.cert("ecommerce"), nodes.certs.key("ecommerce")
    )
    options = [
        ("grpc.ssl_target_name_override", "lender"),
        ("grpc.max_send_message_length", -1),
    ]
    with grpc.secure_channel(nodes.addresses["lender"], creds, options=options) as channel:
        stub = PeerStubs(channel)
        code = code_of(lambda: stub.PutPartial(request, timeout=60))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert put_partial(nodes, valid_partial(nodes)).env.job_id == nodes.job_id


def test_absurd_key_size_is_refused_by_the_coordinator(nodes: InProcessFederation) -> None:
    request = coordinator_pb2.StartJobRequest(env=nodes.env(job="huge-key"), key_bits=2**31)
    code = code_of(lambda: nodes.coordinator("coordinator").StartJob(request, timeout=30))
    assert code in {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}
    assert decrypt(nodes, valid_packed(nodes)).count == 4


# -- 2. transport, against the real lender node -----------------------------------------------
def _health(channel: grpc.Channel) -> Any:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)


def _transport_channel(nodes: InProcessFederation, case: str, other: CertPaths) -> grpc.Channel:
    address, ca = nodes.addresses["lender"], nodes.certs.ca
    if case == "plaintext":
        return open_channel(address, party_name="lender", credentials=None, self_name="ecommerce")
    if case == "no client certificate":
        creds = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    elif case == "certificate from another CA":
        creds = load_channel_credentials(ca, other.cert("ecommerce"), other.key("ecommerce"))
    else:  # a certificate of the right CA for a party that is not in the federation
        creds = load_channel_credentials(
            ca, nodes.certs.cert("outsider"), nodes.certs.key("outsider")
        )
    return open_channel(address, party_name="lender", credentials=creds)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no client certificate", grpc.StatusCode.UNAVAILABLE),
        ("certificate from another CA", grpc.StatusCode.UNAVAILABLE),
        ("party not in the federation", grpc.StatusCode.PERMISSION_DENIED),
        ("plaintext", grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_party_node_refuses_callers_without_a_federation_certificate(
    nodes: InProcessFederation, tmp_path: Path, case: str, expected: grpc.StatusCode
) -> None:
    other = init_certs(tmp_path / "other-ca", ["ecommerce"])
    with _transport_channel(nodes, case, other) as channel:
        health = code_of(lambda: _health(channel))
        rpc = code_of(
            lambda: PeerStubs(channel).PutPartial(
                common_pb2.CipherMessage(env=nodes.env()), timeout=10
            )
        )
    assert (health, rpc) == (expected, expected)
    assert _health(nodes.channel("ecommerce", "lender")).status == SERVING


# -- fuzzing: random bytes to every RPC of both services --------------------------------------
def _raw(channel: grpc.Channel, path: str) -> Any:
    return channel.unary_unary(path, request_serializer=None, response_deserializer=None)


def _check_fuzz_answer(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except grpc.RpcError as exc:
        assert exc.code() in REFUSALS, (exc.code(), exc.details())  # type: ignore[attr-defined]


def fuzz_settings(method: str) -> settings:
    return settings(
        max_examples=fuzz_budget(method),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def test_the_fuzz_budget_is_ten_thousand_requests_over_every_rpc() -> None:
    budgets = [fuzz_budget(m) for m in FUZZ_METHODS]
    assert sum(budgets) == FUZZ_TOTAL == 10_000
    assert max(budgets) - min(budgets) <= 1


@pytest.mark.parametrize("method", PARTY_METHODS)
def test_party_node_answers_random_bytes_with_a_refusal_and_stays_healthy(
    nodes: InProcessFederation, method: str
) -> None:
    callers = ["coordinator", "ecommerce", "lender"]
    calls = {c: _raw(nodes.channel(c, "lender"), PARTY_RPC_PATHS[method]) for c in callers}

    sent = itertools.count()

    @fuzz_settings(f"Party/{method}")
    @given(caller=st.sampled_from(callers), payload=st.binary(max_size=1024))
    def fuzz(caller: str, payload: bytes) -> None:
        next(sent)
        _check_fuzz_answer(lambda: calls[caller](payload, timeout=30))

    fuzz()
    assert next(sent) == fuzz_budget(f"Party/{method}")
    assert _health(nodes.channel("ecommerce", "lender")).status == SERVING
    assert put_partial(nodes, valid_partial(nodes)).env.job_id == nodes.job_id


@pytest.mark.parametrize("method", COORDINATOR_METHODS)
def test_coordinator_answers_random_bytes_with_a_refusal_and_stays_healthy(
    nodes: InProcessFederation, method: str
) -> None:
    # StartJob from the driver may legitimately make a new key: fuzz it from data parties only.
    callers = ["lender", "ecommerce"] + ([] if method == "StartJob" else ["coordinator"])
    calls = {
        c: _raw(nodes.channel(c, "coordinator"), f"/fedcredit.v1.Coordinator/{method}")
        for c in callers
    }

    sent = itertools.count()

    @fuzz_settings(f"Coordinator/{method}")
    @given(caller=st.sampled_from(callers), payload=st.binary(max_size=1024))
    def fuzz(caller: str, payload: bytes) -> None:
        next(sent)
        _check_fuzz_answer(lambda: calls[caller](payload, timeout=30))

    fuzz()
    assert next(sent) == fuzz_budget(f"Coordinator/{method}")
    assert _health(nodes.channel("lender", "coordinator")).status == SERVING
    assert decrypt(nodes, valid_packed(nodes)).count == 4


# -- 3. exactly once under retries (a dropped reply replays the same sequence number) ---------
def test_a_retried_gradient_step_updates_the_weights_exactly_once(tmp_path: Path) -> None:
    nodes = start_federation(tmp_path / "fed")
    try:
        driver = nodes.driver
        driver.register_schedule({}, nodes.aligned, {})  # what the coordinator may decrypt
        before = saved_weights(nodes, "ecommerce", "before")
        for host in ("ecommerce", "payments"):
            step = job_pb2.StepRequest(env=driver.env(0, 0), phase="train")
            nodes.party("coordinator", host).ComputePartial(step, timeout=60)
        residual = job_pb2.StepRequest(env=driver.env(0, 0), phase="train")
        nodes.party("coordinator", "lender").ComputeResidual(residual, timeout=60)
        gradient = job_pb2.StepRequest(env=driver.env(0, 0), phase="train")
        stub = nodes.party("coordinator", "ecommerce")
        replies = [stub.ComputeGradient(gradient, timeout=60)]
        after = saved_weights(nodes, "ecommerce", "after")
        # Two retries of the same message, as after two connections dropped before the reply.
        replies += [stub.ComputeGradient(gradient, timeout=60) for _ in range(2)]
        again = saved_weights(nodes, "ecommerce", "again")
    finally:
        nodes.close()
    assert before == [0.0] * len(before)
    assert after != before
    assert again == after
    assert replies[1] == replies[2] == replies[0]


# -- 4. the driver never chooses where on a party's machine a node writes ----------------------
@pytest.mark.parametrize("where", ["outside", "../escape", "link"])
def test_a_model_folder_outside_the_node_home_is_refused_and_nothing_is_written(
    nodes: InProcessFederation, tmp_path: Path, where: str
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    link = nodes.folder / f"link-{tmp_path.name}"
    link.symlink_to(outside, target_is_directory=True)
    requested = {"outside": str(outside), "../escape": "../escape", "link": link.name}[where]
    request = job_pb2.SaveRequest(env=nodes.driver.env(), model_dir=requested)

    with pytest.raises(grpc.RpcError) as info:
        nodes.party("coordinator", "payments").SaveModel(request, timeout=30)

    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert "outside the node's folder" in info.value.details()  # type: ignore[attr-defined]
    assert not list(outside.iterdir())
    assert not (nodes.folder.parent / "escape").exists()


def test_a_setup_naming_a_state_folder_outside_the_home_is_refused_and_the_job_goes_on(
    nodes: InProcessFederation, tmp_path: Path
) -> None:
    request = job_pb2.SetupRequest(
        env=nodes.driver.env(),
        public_key_json=nodes.key.to_json(),
        peers=nodes.addresses,
        state_dir=str(tmp_path / "state"),
    )

    with pytest.raises(grpc.RpcError) as info:
        nodes.party("coordinator", "ecommerce").Setup(request, timeout=30)

    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert "state folder" in info.value.details()  # type: ignore[attr-defined]
    assert not (tmp_path / "state").exists()
    # Still on its job, under the job's key: it saves its model part, one weight per column.
    weights = saved_weights(nodes, "ecommerce", "after-refused-setup")
    part = json.loads((nodes.folder / "after-refused-setup" / "ecommerce.json").read_text())
    assert part["public_key_fingerprint"] == nodes.key.fingerprint
    assert len(weights) == len(part["feature_names"]) > 0
