"""The ``processes`` executor: encryption on spawned worker processes, the same bits as the
threads (public-key comb and the key owner's CRT path), small calls kept on the threads."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from fedcredit.crypto import generate_keypair
from fedcredit.crypto.executors import set_executor, use_executor
from fedcredit.crypto.executors.processes import ProcessExecutor
from fedcredit.crypto.owner import encrypt_ints_as_owner
from fedcredit.crypto.vector import decrypt_ints, encrypt_ints


@pytest.fixture(scope="module")
def executor() -> Iterator[ProcessExecutor]:
    ex = ProcessExecutor(2, min_block=8)
    yield ex
    ex.close()


def test_processes_encrypt_the_same_bits_as_threads(executor: ProcessExecutor) -> None:
    pub, priv = generate_keypair(1024, allow_small=True)
    ints = [random.Random(1).getrandbits(60) - 2**59 for _ in range(64)]
    use_executor("threads")
    public = encrypt_ints(pub, ints, 0, rng=random.Random(5)).ciphertexts
    owned = encrypt_ints_as_owner(priv, ints, 0, rng=random.Random(5)).ciphertexts
    old = set_executor(executor)
    try:
        assert encrypt_ints(pub, ints, 0, rng=random.Random(5)).ciphertexts == public
        by_workers = encrypt_ints_as_owner(priv, ints, 0, rng=random.Random(5))
        assert by_workers.ciphertexts == owned == public
        assert decrypt_ints(priv, by_workers) == ints
        # Fresh randomness differs between calls: the workers draw nothing themselves.
        assert encrypt_ints_as_owner(priv, ints, 0).ciphertexts != owned
    finally:
        set_executor(old)


def test_a_small_call_stays_on_the_threads(executor: ProcessExecutor) -> None:
    _, priv = generate_keypair(1024, allow_small=True)
    assert executor.encrypt_owned(priv, 6, [1, 2, 3], [5, 6, 7]) is None
    old = set_executor(executor)
    try:
        small = encrypt_ints_as_owner(priv, [1, 2, 3], 0, rng=random.Random(2))
        assert decrypt_ints(priv, small) == [1, 2, 3]
    finally:
        set_executor(old)


def test_the_federation_file_accepts_processes() -> None:
    ex = use_executor("processes")
    try:
        assert ex.name == "processes"
    finally:
        use_executor("threads")
