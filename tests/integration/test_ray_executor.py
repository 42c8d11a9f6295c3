"""The Ray executor on a real local Ray cluster (two CPUs, started once for this module).

Every kernel gives the same bits as the thread pool for the same inputs and randomness; a Ray
worker killed in the middle of a task is replaced and the task rerun, with neither a wrong nor a
doubled result; the federation file's ``executor`` and ``ray_address`` keys are parsed, and
refused with a message naming the key.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedcredit.config import load_federation
from fedcredit.crypto import (
    decrypt_packed,
    encrypt_vector,
    mask_and_pack,
    matvec_t,
    weighted_sum,
)
from fedcredit.crypto.executors import ThreadExecutor, set_executor, use_executor
from fedcredit.errors import ConfigError
from tests.support.keys import KeyPair

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")

from fedcredit.crypto.executors.ray_executor import BlockSizes, RayExecutor  # noqa: E402
from tests.support.ray_cluster import kill_a_worker_during, local_cluster  # noqa: E402

ROWS = 96


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayExecutor]:
    yield from local_cluster()


def on(executor: Any, fn: Any) -> Any:
    """``fn()`` with ``executor`` as the process's executor (then threads again)."""
    set_executor(executor)
    try:
        return fn()
    finally:
        set_executor(None)


def both(cluster: RayExecutor, fn: Any) -> tuple[Any, Any]:
    return on(ThreadExecutor(), fn), on(cluster, fn)


def values() -> np.ndarray:
    return np.linspace(-5.0, 5.0, ROWS)


def test_encryption_on_ray_is_bit_identical_to_threads(
    cluster: RayExecutor, keypair: KeyPair
) -> None:
    pk, _ = keypair
    threads, on_ray = both(cluster, lambda: encrypt_vector(pk, values(), 20, rng=random.Random(3)))
    assert on_ray.ciphertexts == threads.ciphertexts


def test_rerandomization_on_ray_is_bit_identical_to_threads(
    cluster: RayExecutor, keypair: KeyPair
) -> None:
    pk, _ = keypair
    ev = encrypt_vector(pk, values(), 20, rng=random.Random(13))
    threads, on_ray = both(cluster, lambda: ev.rerandomize(rng=random.Random(14)))
    assert on_ray.ciphertexts == threads.ciphertexts
    assert on_ray.ciphertexts != ev.ciphertexts


def test_matvec_t_on_ray_is_bit_identical_to_threads(
    cluster: RayExecutor, keypair: KeyPair
) -> None:
    pk, _ = keypair
    ev = encrypt_vector(pk, values(), 20, rng=random.Random(4))
    x = np.random.default_rng(5).integers(-300, 300, size=(ROWS, 7))
    x[:, 3] = 0  # a column with neither sign
    x[:, 4] = np.abs(x[:, 4])  # one with no negative part
    threads, on_ray = both(cluster, lambda: matvec_t(x, 8, ev))
    assert on_ray.ciphertexts == threads.ciphertexts
    assert on_ray.scale_bits == threads.scale_bits


def test_weighted_sum_on_ray_is_bit_identical_to_threads(
    cluster: RayExecutor, keypair: KeyPair
) -> None:
    pk, _ = keypair
    ev = encrypt_vector(pk, values(), 20, rng=random.Random(6))
    source = random.Random(7)
    weights = [source.randrange(-(2**90), 2**90) for _ in range(ROWS)]
    threads, on_ray = both(cluster, lambda: weighted_sum(ev, weights))
    assert on_ray.ciphertexts == threads.ciphertexts


def test_mask_and_pack_on_ray_is_bit_identical_to_threads(
    cluster: RayExecutor, keypair: KeyPair
) -> None:
    pk, _ = keypair
    ev = encrypt_vector(pk, values(), 20, rng=random.Random(8))
    threads, on_ray = both(cluster, lambda: mask_and_pack(ev, 30, rng=random.Random(9)))
    assert len(on_ray[0].ciphertexts) > 1  # several groups, so several Ray tasks
    assert on_ray[0] == threads[0]
    assert on_ray[1] == threads[1]


def test_decryption_on_ray_is_bit_identical_to_threads(
    cluster: RayExecutor, keypair: KeyPair
) -> None:
    pk, sk = keypair
    ev = encrypt_vector(pk, values(), 20, rng=random.Random(10))
    packed, _ = mask_and_pack(ev, 30, rng=random.Random(11))
    threads, on_ray = both(cluster, lambda: sk.raw_decrypt_many(ev.ciphertexts))
    assert on_ray == threads
    assert on(cluster, lambda: decrypt_packed(sk, packed)) == decrypt_packed(sk, packed)


def test_a_worker_killed_mid_task_is_retried_without_a_wrong_or_doubled_result(
    cluster: RayExecutor, keypair: KeyPair
) -> None:
    pk, _ = keypair
    count = 6000  # four blocks of 1,500 encryptions: each long enough to be caught running
    plain = np.linspace(-1.0, 1.0, count)
    expected = on(ThreadExecutor(), lambda: encrypt_vector(pk, plain, 20, rng=random.Random(12)))
    slow = RayExecutor("local", blocks=BlockSizes(encrypt=1500, per_worker=2))
    killed, got, hung = kill_a_worker_during(
        "encrypt_task",
        lambda: on(slow, lambda: encrypt_vector(pk, plain, 20, rng=random.Random(12))),
    )
    assert killed is not None, "no Ray worker was seen running an encryption block"
    assert not hung
    assert len(got) == 1
    assert len(got[0]) == count
    assert got[0].ciphertexts == expected.ciphertexts


FEDERATION = """
[federation]
name = "demo"

[coordinator]
address = "127.0.0.1:50050"

[[party]]
name = "lender"
role = "lending"
address = "127.0.0.1:50051"
data = "lender.csv"
id_column = "ID"
label_column = "y"
{lender}

[[party]]
name = "ecommerce"
role = "ecommerce"
address = "127.0.0.1:50052"
data = "ecommerce.csv"
id_column = "ID"
"""


def load(tmp_path: Path, lender: str) -> Any:
    path = tmp_path / "fed.toml"
    path.write_text(FEDERATION.format(lender=lender))
    return load_federation(path)


def test_the_executor_keys_are_read_from_a_party_table(tmp_path: Path) -> None:
    fed = load(tmp_path, 'executor = "ray"\nray_address = "ray://head:10001"')
    assert fed.party("lender").executor == "ray"
    assert fed.party("lender").ray_address == "ray://head:10001"
    assert fed.party("ecommerce").executor == "threads"
    assert fed.party("ecommerce").ray_address is None


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('executor = "spark"', "'lender' executor: must be one of threads, processes, ray"),
        ('executor = "ray"', "'lender' ray_address: is required with executor = 'ray'"),
        ('ray_address = "local"', "'lender' ray_address: is only read with executor = 'ray'"),
        ('executor = "ray"\nray_address = "head"', "'lender' ray_address: must be 'local'"),
        ('executor = "ray"\nray_address = 6379', "'lender' ray_address: must be a non-empty"),
    ],
)
def test_a_bad_executor_key_is_refused_naming_the_key(
    tmp_path: Path, lines: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load(tmp_path, lines)


def test_a_ray_executor_without_an_address_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="ray_address"):
        use_executor("ray", None)
