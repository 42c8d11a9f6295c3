"""Shared fixtures: the shared credit data, and the one family of Paillier key pairs.

Key pairs come from ``keypairs(bits, seed)``: made once per session from a seeded generator,
so a test that asks for the same pair twice gets the same one and runs are repeatable. Unit
tests use 1024-bit keys (``allow_small``); ``strong_keypair`` is the policy's 2048 bits.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcredit.crypto import PublicKey
from tests.support.data import shared_data_dir
from tests.support.keys import KeyPair, KeyPairs


@pytest.fixture(scope="session")
def keypairs() -> KeyPairs:
    """Every key pair of the session, by (bits, seed)."""
    return KeyPairs()


@pytest.fixture(scope="session")
def keypair(keypairs: KeyPairs) -> KeyPair:
    """The 1024-bit key pair of the unit tests."""
    return keypairs(1024, 1)


@pytest.fixture(scope="session")
def public_key(keypair: KeyPair) -> PublicKey:
    """The public half of ``keypair``."""
    return keypair[0]


@pytest.fixture(scope="session")
def other_key(keypairs: KeyPairs) -> PublicKey:
    """A second 1024-bit public key: another job's, whose ciphertexts must not mix with ours."""
    return keypairs(1024, 2)[0]


@pytest.fixture(scope="session")
def strong_keypair(keypairs: KeyPairs) -> KeyPair:
    """A 2048-bit key pair: the size the key policy wants."""
    return keypairs(2048, 12)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; the test is skipped with a reason when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared credit data not found: set FEDCREDIT_DATA or place ../shared/data")
    return path
