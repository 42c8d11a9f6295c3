"""What the driver (the coordinator's side) learns of a party's data (security review F17).

A party node built by ``build_node`` (mutual TLS, 1024-bit key) answers ``Setup`` and
``SaveModel`` from the driver, called with the coordinator's certificate. The driver is
semi-honest: it keeps what the replies hand it. It used to get an unsalted SHA-256 of the
party's whole dataset (``data_hash``): the same in every job (which links jobs run on the same
data) and checkable against any guess of the file (a copy from last month, a public dataset).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fedcredit.cli.demo import write_demo_federation
from fedcredit.config import Federation, load_federation
from fedcredit.crypto import generate_keypair
from fedcredit.data.loader import load_party_csv
from fedcredit.data.synthetic import write_institutions
from fedcredit.node.runtime import NodeOptions, build_node
from fedcredit.node.transport.client import open_channel
from fedcredit.node.transport.peers import COORDINATOR, PeerStubs
from fedcredit.node.transport.tls import init_certs, load_channel_credentials
from fedcredit.proto.v1 import common_pb2, job_pb2

PARTY = "ecommerce"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Federation, PeerStubs]]:
    data = write_institutions(tmp_path / "data", 200, seed=2)
    fed = load_federation(
        write_demo_federation(tmp_path, data, key_bits=1024, epochs=1), allow_small_keys=True
    )
    certs = init_certs(tmp_path / "certs", list(fed.all_names))
    options = NodeOptions(
        name=PARTY,
        listen="127.0.0.1:0",
        cert_dir=tmp_path / "certs",
        allow_small_keys=True,
        state_dir=tmp_path / "home",
    )
    server = build_node(fed, options)
    address = f"127.0.0.1:{server.start()}"
    credentials = load_channel_credentials(
        certs.ca, certs.cert(COORDINATOR), certs.key(COORDINATOR)
    )
    channel = open_channel(
        address, party_name=PARTY, credentials=credentials, self_name=COORDINATOR
    )
    try:
        yield fed, PeerStubs(channel)
    finally:
        channel.close()
        server.stop(0)


def plain_hash(fed: Federation) -> str:
    """What ``data_hash`` was: SHA-256 of the ids and values, which anyone holding (or
    guessing) the party's file can compute."""
    config = fed.party(PARTY)
    data = load_party_csv(config.data, id_column=config.id_column)
    digest = hashlib.sha256()
    digest.update("\n".join(data.ids).encode())
    digest.update(np.ascontiguousarray(np.asarray(data.X, dtype=np.float64)).tobytes())
    return digest.hexdigest()[:32]


def set_up(stub: PeerStubs, job: str) -> job_pb2.SetupReply:
    public, _ = generate_keypair(1024, allow_small=True)
    request = job_pb2.SetupRequest(
        env=common_pb2.Envelope(job_id=job, seq=1), public_key_json=public.to_json()
    )
    reply: job_pb2.SetupReply = stub.Setup(request, timeout=60)
    return reply


def test_the_driver_cannot_check_a_guess_of_a_partys_data_or_link_its_jobs(
    node: tuple[Federation, PeerStubs],
) -> None:
    fed, stub = node
    guess = plain_hash(fed)

    first = set_up(stub, "job-one")
    saved = stub.SaveModel(
        job_pb2.SaveRequest(env=common_pb2.Envelope(job_id="job-one", seq=2)), timeout=60
    )
    second = set_up(stub, "job-two")

    assert first.data_hash != guess and second.data_hash != guess
    assert first.data_hash != second.data_hash
    # The model manifest carries the job's fingerprint, which only the party can recompute.
    assert json.loads(saved.manifest_json)["data_hash"] == first.data_hash
