"""Every receiver enforces the key policy on a peer's Paillier key (security review F12).

Real nodes over mutual TLS on 127.0.0.1: a party node started without the test-only small-key
switch, a coordinator whose key holder deviates (it hands out a key it chose), and an in-process
loan-stacking consortium. The attackers send a 512-bit job key, a job key with ``hs = 1`` (under
which every "encryption" is ``1 + n m``: anyone reads it), a scoring key of 1024 bits, a binning
label key with ``hs = 1``, and a 160-bit loan-stacking key, which made every later query fail
with a division by zero. Each is refused with one error that names the party.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gmpy2
import grpc
import numpy as np
import pytest

from fedcredit.cli.demo import write_demo_federation
from fedcredit.config import Federation, load_federation
from fedcredit.crypto import EncryptedVector, PrivateKey, PublicKey, generate_keypair
from fedcredit.crypto.keys import check_peer_key
from fedcredit.data.synthetic import write_institutions
from fedcredit.debt import DebtLender
from fedcredit.driver.debt import COORDINATOR, LocalConsortium
from fedcredit.errors import FedCreditError, ProtocolError
from fedcredit.node.runtime import NodeOptions, build_node
from fedcredit.node.services.coordinator import CoordinatorServicer
from fedcredit.node.transport.client import open_channel
from fedcredit.node.transport.peers import Peers, PeerStubs
from fedcredit.node.transport.server import NodeServer, build_server
from fedcredit.node.transport.tls import load_channel_credentials, load_server_credentials
from fedcredit.proto.v1 import (
    common_pb2,
    coordinator_pb2_grpc,
    job_pb2,
)
from fedcredit.protocol.binning import PartnerBinning, train_raw
from fedcredit.protocol.binning.settings import BinningSettings
from fedcredit.protocol.keyholder import KeyHolder
from fedcredit.protocol.logistic.partner import FeatureParty
from fedcredit.protocol.logistic.settings import TrainSettings

try:
    from fedcredit.node.transport.certs import init_certs
except ImportError:  # the certificate tools lived in tls.py before
    from fedcredit.node.transport.tls import init_certs  # type: ignore[attr-defined,no-redef]


@dataclass
class Nodes:
    fed: Federation
    certs: Any
    party: str
    addresses: dict[str, str]
    keys: KeyHolder

    def credentials(self, name: str) -> grpc.ChannelCredentials:
        return load_channel_credentials(self.certs.ca, self.certs.cert(name), self.certs.key(name))

    @contextmanager
    def party_stub(self, caller: str) -> Iterator[PeerStubs]:
        channel = open_channel(
            self.addresses[self.party],
            party_name=self.party,
            credentials=self.credentials(caller),
            self_name=caller,
        )
        try:
            yield PeerStubs(channel)
        finally:
            channel.close()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    """The ecommerce party node (strict key policy: its federation file was read without the
    small-key switch) and a coordinator whose key holder serves whatever key it was given."""
    home = tmp_path_factory.mktemp("keys")
    data = write_institutions(home / "data", 120, seed=5)
    fed = load_federation(write_demo_federation(home, data, key_bits=2048, epochs=1))
    certs = init_certs(home / "certs", list(fed.all_names))
    servers: list[NodeServer] = []
    addresses: dict[str, str] = {}
    keys = KeyHolder()
    try:
        options = NodeOptions(
            name="ecommerce", listen="127.0.0.1:0", cert_dir=home / "certs", state_dir=home
        )
        servers.append(build_node(fed, options))
        addresses["ecommerce"] = f"127.0.0.1:{servers[-1].start()}"
        server = build_server(
            "127.0.0.1:0",
            credentials=load_server_credentials(
                certs.ca, certs.cert(COORDINATOR), certs.key(COORDINATOR)
            ),
            allowed_parties=set(fed.all_names),
        )
        server.add(
            coordinator_pb2_grpc.add_CoordinatorServicer_to_server, CoordinatorServicer(keys)
        )
        servers.append(server)
        addresses[COORDINATOR] = f"127.0.0.1:{server.start()}"
        yield Nodes(fed, certs, "ecommerce", addresses, keys)
    finally:
        for running in servers:
            running.stop(0)


def setup_with(nodes: Nodes, key: PublicKey) -> job_pb2.SetupReply:
    """The coordinator's driver sets a job up at the party with ``key`` as the job key."""
    request = job_pb2.SetupRequest(
        env=common_pb2.Envelope(job_id="keys-job", seq=1),
        public_key_json=key.to_json(),
        peers=nodes.addresses,
    )
    with nodes.party_stub(COORDINATOR) as stub:
        reply: job_pb2.SetupReply = stub.Setup(request, timeout=60)
    return reply


def refused(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


# -- the job key at Setup ------------------------------------------------------------------------
def test_a_party_refuses_a_512_bit_job_key_naming_the_coordinator(nodes: Nodes) -> None:
    # Arrange: the coordinator made its key with the small-key switch on (or patched it out).
    small, _ = generate_keypair(512, allow_small=True)

    # Act
    error = refused(lambda: setup_with(nodes, small))

    # Assert
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "coordinator" in error.details() and "512 bits" in error.details()


def test_a_party_refuses_a_job_key_whose_base_is_one(
    nodes: Nodes, strong_keypair: tuple[PublicKey, PrivateKey]
) -> None:
    # Arrange: hs = 1 makes every DJN "encryption" 1 + n m, readable by anyone.
    trivial = PublicKey(strong_keypair[0].n, 1)

    # Act
    error = refused(lambda: setup_with(nodes, trivial))

    # Assert
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "coordinator" in error.details() and "hs" in error.details()


def test_a_party_accepts_a_sound_2048_bit_job_key(
    nodes: Nodes, strong_keypair: tuple[PublicKey, PrivateKey]
) -> None:
    reply = setup_with(nodes, strong_keypair[0])

    assert reply.rows > 0


# -- the scoring key from GetPublicKey -------------------------------------------------------------
def test_a_party_refuses_a_1024_bit_scoring_key_naming_the_coordinator(nodes: Nodes) -> None:
    # Arrange: the coordinator's key holder serves a 1024-bit key for scoring.
    public, private = generate_keypair(1024, allow_small=True)
    nodes.keys.use_keypair("scoring-1", public, private)
    peers = Peers(
        nodes.addresses, "lender", credentials=nodes.credentials("lender"), own_name="lender"
    )

    # Act
    try:
        with pytest.raises(FedCreditError) as caught:
            peers.coordinator_key()
    finally:
        peers.close()

    # Assert
    assert "coordinator" in str(caught.value) and "1024 bits" in str(caught.value)


# -- the lender's binning key at a partner ---------------------------------------------------------
def test_a_partner_refuses_binning_labels_under_a_key_whose_base_is_one(
    strong_keypair: tuple[PublicKey, PrivateKey],
) -> None:
    # Arrange: a partner aligned under a sound 2048-bit job key; the lender's own label key
    # has the same size but hs = 1.
    ids = [f"C{i:03d}" for i in range(60)]
    host = FeatureParty(
        "host", ids, np.random.default_rng(1).normal(size=(60, 2)), ["a", "b"], TrainSettings()
    )
    host.public_key = strong_keypair[0]
    host.align(ids)
    trivial = PublicKey(strong_keypair[0].n, 1)
    rows = len(train_raw(host))
    labels = EncryptedVector(trivial, [1 + trivial.n * (i % 2) for i in range(rows)], 0)
    partner = PartnerBinning(host, BinningSettings())

    # Act / Assert
    with pytest.raises(FedCreditError, match="lender") as caught:
        partner.receive_labels(labels)
    assert "hs" in str(caught.value)
    assert partner.labels is None


# -- a loan-stacking lender's upload ---------------------------------------------------------------
def tiny_lender() -> DebtLender:
    """A lender with a 160-bit key (two 80-bit primes), which no policy should take."""
    rng = random.Random(4)
    p = gmpy2.next_prime(rng.getrandbits(80) | (1 << 79))
    q = gmpy2.next_prime(rng.getrandbits(80) | (1 << 79))
    public = PublicKey(p * q)
    return DebtLender(public, PrivateKey(public, p, q))


def test_the_coordinator_refuses_a_160_bit_debt_key_naming_the_lender(tmp_path: Path) -> None:
    # Arrange: three lenders over real mTLS; 'tiny' uploads under a 160-bit key.
    names = ["bank", "fintech", "tiny"]
    certs = init_certs(tmp_path / "certs", [*names, COORDINATOR])
    with LocalConsortium(names, certs, key_bits=1024, min_count_floor=1) as consortium:
        consortium.upload("bank", {"P1": 1_00})
        consortium.upload("fintech", {"P1": 2_00})
        consortium.lenders["tiny"] = tiny = tiny_lender()
        bits = tiny.public_key.bits

        # Act
        with pytest.raises(ProtocolError) as caught:
            consortium.upload("tiny", {"P1": 3_00})

        # Assert: one clear line naming the lender, and nothing stored for it.
        assert bits <= 160
        assert "tiny" in str(caught.value) and f"{bits} bits" in str(caught.value)
        assert "tiny" not in consortium.coordinator.lenders


# -- the policy itself -----------------------------------------------------------------------------
def _odd(bits: int, rng: random.Random) -> int:
    return rng.getrandbits(bits) | (1 << (bits - 1)) | 1


def _prime(bits: int, rng: random.Random) -> int:
    return int(gmpy2.next_prime(_odd(bits, rng)))


@pytest.fixture(scope="module")
def degenerate_keys(strong_keypair: tuple[PublicKey, PrivateKey]) -> dict[str, PublicKey]:
    """Keys a peer may send, each with one defect ``check_peer_key`` must see."""
    rng = random.Random(21)
    n = int(strong_keypair[0].n)
    nsq = n * n
    half = _prime(1024, rng)
    return {
        "hs = 1": PublicKey(n, 1),
        "hs = n**2 - 1": PublicKey(n, nsq - 1),
        "hs = n - 1": PublicKey(n, n - 1),
        "hs = 1 + n": PublicKey(n, 1 + n),
        "hs = -(1 + n)**5": PublicKey(n, nsq - pow(1 + n, 5, nsq)),
        "hs below n": PublicKey(n, 4),
        "n with a factor below 2**16": PublicKey(65_521 * _prime(2032, rng), 3 << 4000),
        "n a perfect square": PublicKey(half * half, 3 << 4000),
        "n a prime": PublicKey(_prime(2048, rng), 3 << 4000),
        "n above 8192 bits": PublicKey(_odd(8200, rng), 3),
    }


DEFECTS = [
    "hs = 1",
    "hs = n**2 - 1",
    "hs = n - 1",
    "hs = 1 + n",
    "hs = -(1 + n)**5",
    "hs below n",
    "n with a factor below 2**16",
    "n a perfect square",
    "n a prime",
    "n above 8192 bits",
]


@pytest.mark.parametrize("defect", DEFECTS, ids=DEFECTS)
def test_check_peer_key_refuses_a_degenerate_key_naming_the_party(
    defect: str, degenerate_keys: dict[str, PublicKey]
) -> None:
    key = degenerate_keys[defect]

    with pytest.raises(FedCreditError, match="from party 'ecommerce' is refused"):
        check_peer_key(key, allow_small=True, party="party 'ecommerce'")


def test_check_peer_key_takes_a_sound_key_and_small_ones_only_with_the_test_switch(
    strong_keypair: tuple[PublicKey, PrivateKey],
) -> None:
    small, _ = generate_keypair(1024, allow_small=True)

    assert check_peer_key(strong_keypair[0]) is strong_keypair[0]
    assert check_peer_key(small, allow_small=True) is small
    with pytest.raises(FedCreditError, match="1024 bits, below the 2048 required outside tests"):
        check_peer_key(small)
    with pytest.raises(FedCreditError, match="below the 512 required even in tests"):
        check_peer_key(tiny_lender().public_key, allow_small=True)
