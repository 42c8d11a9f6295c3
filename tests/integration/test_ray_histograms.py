"""The encrypted bin sums (``fedcredit.crypto.bin_sums``) on every executor, on the real local
Ray cluster of ``test_ray_executor`` (two CPUs).

Threads, worker processes and Ray give the same bits, empty bins included; a Ray worker killed
in the middle of a bin-sums block is replaced and the block rerun, with neither a wrong nor a
doubled product; a whole trees job in process on the Ray executor grows the same model as on
the threads.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from fedcredit.crypto import EncryptedVector, bin_sums, decrypt_vector, encrypt_vector
from fedcredit.crypto.executors import ThreadExecutor
from fedcredit.crypto.executors.processes import ProcessExecutor
from fedcredit.crypto.executors.ray_executor import BlockSizes, RayExecutor
from fedcredit.protocol.trees.settings import TreeSettings

# Without Ray this import skips the module (``pytest.importorskip`` in test_ray_executor).
from tests.integration.test_ray_executor import cluster, on
from tests.integration.test_trees_local import _federation
from tests.support.keys import KeyPair
from tests.support.ray_cluster import kill_a_worker_during

__all__ = ["cluster"]  # the module-scoped local Ray cluster, shared with test_ray_executor

ROWS = 3000
#: Bins per column; the codes below leave some of them empty.
N_BINS = [6, 17, 3, 40]


@pytest.fixture(scope="module")
def processes() -> Iterator[ProcessExecutor]:
    executor = ProcessExecutor(2, min_block=8)
    yield executor
    executor.close()


def _codes(rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = np.column_stack([rng.integers(0, n, size=rows) for n in N_BINS])
    codes[codes[:, 1] == 7, 1] = 8  # bin 7 of column 1 is empty
    codes[:, 3] = np.minimum(codes[:, 3], 29)  # bins 30..39 of column 3 are empty
    return codes


def _sums_each(values: EncryptedVector, rows: np.ndarray, codes: np.ndarray) -> list[list[Any]]:
    return [v.ciphertexts for v in bin_sums(values, rows, codes, N_BINS)]


def test_bin_sums_are_the_same_bits_on_threads_processes_and_ray(
    cluster: RayExecutor, processes: ProcessExecutor, keypair: KeyPair
) -> None:
    pk, sk = keypair
    plain = np.random.default_rng(1).integers(-50, 50, size=ROWS).astype(np.float64)
    values = encrypt_vector(pk, plain, 0, rng=random.Random(2))
    codes = _codes(ROWS, 3)
    rows = np.flatnonzero(np.random.default_rng(4).random(ROWS) < 0.8)  # the rows of one node
    assert cluster._counts(len(rows), cluster.blocks.bins) is not None  # Ray gets row blocks

    threads = on(ThreadExecutor(), lambda: _sums_each(values, rows, codes))
    assert on(processes, lambda: _sums_each(values, rows, codes)) == threads
    assert on(cluster, lambda: _sums_each(values, rows, codes)) == threads
    # Today's semantics: a bin's sum is EncryptedVector.sum() of its rows, 1 when it is empty.
    for j, size in enumerate(N_BINS):
        expected = [
            values.take(rows[codes[rows, j] == b]).sum().ciphertexts[0] for b in range(size)
        ]
        assert threads[j] == expected
    assert threads[1][7] == 1 and threads[3][30:] == [1] * 10
    sums = bin_sums(values, rows, codes, N_BINS)[1]
    assert decrypt_vector(sk, sums).tolist() == [
        float(plain[rows][codes[rows, 1] == b].sum()) for b in range(N_BINS[1])
    ]


def test_a_worker_killed_mid_bin_sums_block_is_retried_without_a_wrong_or_doubled_result(
    cluster: RayExecutor, keypair: KeyPair
) -> None:
    pk, _ = keypair
    base = encrypt_vector(pk, np.arange(500, dtype=np.float64), 0, rng=random.Random(6))
    rows = 6000  # two blocks of 3,000 rows and 48 columns: each long enough to be caught running
    values = base.take(np.arange(rows) % 500)
    n_bins = [33] * 48
    codes = np.random.default_rng(7).integers(0, 33, size=(rows, 48))
    expected = on(ThreadExecutor(), lambda: bin_sums(values, None, codes, n_bins))
    slow = RayExecutor("local", blocks=BlockSizes(bins=3000, per_worker=1))
    killed, got, hung = kill_a_worker_during(
        "bin_sums_task", lambda: on(slow, lambda: bin_sums(values, None, codes, n_bins))
    )
    assert killed is not None, "no Ray worker was seen running a bin-sums block"
    assert not hung
    assert len(got) == 1
    assert [v.ciphertexts for v in got[0]] == [v.ciphertexts for v in expected]


@pytest.mark.parametrize("mode", ["mix", "joint"])
def test_a_trees_job_on_the_ray_executor_grows_the_same_model_as_on_threads(
    cluster: RayExecutor, mode: str
) -> None:
    settings = TreeSettings(trees=3, bins=8, min_rows=5, mode=mode)
    # Blocks small enough that the 180 training rows' histograms and g, h go to the workers.
    small = RayExecutor("local", blocks=BlockSizes(encrypt=16, pack=1, decrypt=8, bins=32))
    runs = []
    for executor in (ThreadExecutor(), small):
        local, lender, partners = _federation(settings)
        assert lender.split is not None
        on(executor, local.train)
        runs.append((lender, partners))
    assert small._counts(len(runs[0][0].split.train), small.blocks.bins) is not None
    (lender, partners), (on_ray, ray_partners) = runs
    assert np.array_equal(on_ray.margin, lender.margin)
    for mine, theirs in zip(on_ray.model, lender.model, strict=True):
        assert np.array_equal(mine.own.exists, theirs.own.exists)
        assert np.array_equal(mine.own.value, theirs.own.value)
        assert list(mine.split_by) == list(theirs.split_by)
    for mine_p, theirs_p in zip(ray_partners, partners, strict=True):
        assert mine_p.model_part()["trees"] == theirs_p.model_part()["trees"]
    assert len(lender.model) == 3
