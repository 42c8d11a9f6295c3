"""A node's connections to its peers: the coordinator's key, fetched once under concurrency."""

from __future__ import annotations

import threading
import time
from typing import Any

from fedcredit.crypto import generate_keypair
from fedcredit.node.transport.peers import Peers
from fedcredit.proto.v1 import common_pb2, coordinator_pb2


def test_concurrent_first_callers_fetch_the_coordinator_key_once_and_all_see_its_job() -> None:
    # Arrange: a coordinator that answers GetPublicKey only once every caller is waiting.
    key, _ = generate_keypair(1024, allow_small=True)
    peers = Peers(
        {"coordinator": "127.0.0.1:1", "lender": "127.0.0.1:2", "ecommerce": "127.0.0.1:3"},
        "lender",
        credentials=None,
        own_name="lender",
        allow_small_keys=True,
    )
    calls: list[str] = []
    release = threading.Event()

    def fake_call(name: str, rpc: Any, request: Any, timeout_s: float, **_: Any) -> Any:
        calls.append(name)
        release.wait(10.0)
        return coordinator_pb2.PublicKeyReply(
            env=common_pb2.Envelope(job_id="scoring-1"),
            public_key_json=key.to_json(),
            fingerprint=key.fingerprint,
        )

    peers.call = fake_call  # type: ignore[method-assign]
    seen: list[tuple[str, str]] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        fingerprint = peers.coordinator_key().fingerprint
        seen.append((fingerprint, peers.coordinator_job))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # Let every caller reach coordinator_key before the answer comes.

    # Act
    release.set()
    for thread in threads:
        thread.join()

    # Assert
    assert calls == ["coordinator"]  # one GetPublicKey call, to the coordinator
    assert seen == [(key.fingerprint, "scoring-1")] * 8
