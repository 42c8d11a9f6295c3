"""The PSI's hashing and blinding on every executor: threads, worker processes, a Ray cluster.

The same points to the bit on all three (lists of a few thousand ids, split into blocks that are
not all the same size), the same error naming the same index in the whole list, a Ray worker
killed in the middle of a block replaced without a wrong result, and a real federation whose
party runs ``executor = "processes"`` aligning the same customers as the thread pool does.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fedcredit.config import load_federation
from fedcredit.crypto.executors import ThreadExecutor, set_executor, use_executor
from fedcredit.crypto.executors.processes import ProcessExecutor
from fedcredit.errors import CryptoError, DataError
from fedcredit.node.state import PartyNode
from fedcredit.psi.group import PSIKey, blind, hash_and_blind, hash_points
from fedcredit.psi.points import PointBuffer
from tests.support.federation import demo_federation, start_nodes

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")

from fedcredit.crypto.executors.ray_executor import (  # noqa: E402
    BlockSizes,
    RayExecutor,
    noop_task,
)
from tests.support.ray_cluster import kill_a_worker_during, local_cluster  # noqa: E402

T = TypeVar("T")
JOB = "job-psi-executors"
#: Not a multiple of any block: 5,001 ids are four process blocks of 1,251 and 1,250 and two
#: Ray blocks of 2,501 and 2,500.
IDS = [f"customer-{i:06d}" for i in range(5001)]
#: A u-coordinate of order 8 (libsodium's blocklist): X25519 of it is the identity.
SMALL_ORDER = (
    325606250916557431795983626356110631294008115727848805560023387167927233504
).to_bytes(32, "little")
BAD_AT = 4000


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayExecutor]:
    yield from local_cluster()


@pytest.fixture(scope="module")
def processes() -> Iterator[ProcessExecutor]:
    executor = ProcessExecutor(2)
    yield executor
    executor.close()


@pytest.fixture(scope="module")
def key() -> PSIKey:
    return PSIKey.generate()


def on(executor: Any, fn: Callable[[], T]) -> T:
    """``fn()`` with ``executor`` as the process's executor (then the thread pool again)."""
    set_executor(executor)
    try:
        return fn()
    finally:
        set_executor(None)


def every(processes: ProcessExecutor, cluster: RayExecutor, fn: Callable[[], T]) -> list[T]:
    return [on(ex, fn) for ex in (ThreadExecutor(), processes, cluster)]


def blocks_of(executor: Any, count: int) -> int:
    """How many blocks ``executor`` cuts ``count`` items into (0: it leaves them local)."""
    seen = executor.map_blocks(noop_task, count, lambda a, b: (b"",))
    return 0 if seen is None else len(seen)


def test_the_test_lists_really_go_to_the_workers_in_blocks(
    processes: ProcessExecutor, cluster: RayExecutor
) -> None:
    assert blocks_of(ThreadExecutor(), len(IDS)) == 0
    assert blocks_of(processes, len(IDS)) == 4
    assert blocks_of(processes, 1000) == 0  # under two blocks' worth: the local threads


def test_hashing_gives_the_same_points_on_every_executor(
    processes: ProcessExecutor, cluster: RayExecutor
) -> None:
    threads, by_processes, on_ray = every(processes, cluster, lambda: hash_points(IDS, JOB))
    assert len(threads) == len(IDS)
    assert by_processes.tobytes() == threads.tobytes()
    assert on_ray.tobytes() == threads.tobytes()
    assert hash_points(IDS, "another-job").tobytes() != threads.tobytes()


def test_blinding_gives_the_same_points_on_every_executor(
    processes: ProcessExecutor, cluster: RayExecutor, key: PSIKey
) -> None:
    points = hash_points(IDS, JOB)
    threads, by_processes, on_ray = every(processes, cluster, lambda: blind(points, key))
    assert by_processes.tobytes() == threads.tobytes()
    assert on_ray.tobytes() == threads.tobytes()
    assert threads.tobytes() != points.tobytes()


def test_hash_and_blind_gives_the_same_points_on_every_executor(
    processes: ProcessExecutor, cluster: RayExecutor, key: PSIKey
) -> None:
    expected = blind(hash_points(IDS, JOB), key)
    results = every(processes, cluster, lambda: hash_and_blind(IDS, JOB, key))
    assert [r.tobytes() for r in results] == [expected.tobytes()] * 3


def test_a_point_of_small_order_is_named_by_its_index_in_the_whole_list_on_every_executor(
    processes: ProcessExecutor, cluster: RayExecutor, key: PSIKey
) -> None:
    points = bytearray(hash_points(IDS, JOB).data)
    points[BAD_AT * 32 : (BAD_AT + 1) * 32] = SMALL_ORDER
    bad = PointBuffer(bytes(points))
    messages = []
    for executor in (ThreadExecutor(), processes, cluster):
        # checked=True: no check up front, so the X25519 kernel itself meets the point.
        with pytest.raises(CryptoError) as info:
            on(executor, lambda: blind(bad, key, checked=True))
        messages.append(str(info.value))
    expected = f"invalid curve25519 point at index {BAD_AT}: a point of small order"
    assert messages == [expected] * 3


def test_an_id_that_is_not_a_string_is_named_by_its_index_on_every_executor(
    processes: ProcessExecutor, cluster: RayExecutor
) -> None:
    ids: list[Any] = list(IDS)
    ids[BAD_AT] = 12345
    messages = []
    for executor in (ThreadExecutor(), processes, cluster):
        with pytest.raises(DataError) as info:
            on(executor, lambda: hash_points(ids, JOB))
        messages.append(str(info.value))
    assert messages == [f"PSI id at index {BAD_AT} is not a string"] * 3


def test_a_ray_worker_killed_mid_blind_is_retried_and_the_points_are_the_same(
    cluster: RayExecutor, key: PSIKey
) -> None:
    ids = [f"k{i}" for i in range(20000)]
    points = hash_points(ids, JOB)
    expected = blind(points, key)
    # Four blocks of 5,000 points, about a quarter of a second each: long enough to be caught.
    slow = RayExecutor("local", blocks=BlockSizes(psi=5000, per_worker=2))
    killed, got, hung = kill_a_worker_during(
        "blind_block", lambda: on(slow, lambda: blind(points, key))
    )
    assert killed is not None, "no Ray worker was seen running a blinding block"
    assert not hung
    assert len(got) == 1
    assert got[0].tobytes() == expected.tobytes()


def _cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds the processes ``pids`` have used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def _aligned_ids(home: Path) -> dict[str, list[str]]:
    """Each party's aligned ids, read from its node (the nodes run in this process)."""
    nodes = [o for o in gc.get_objects() if isinstance(o, PartyNode) and o.home == home]
    out = {}
    for node in nodes:
        party: Any = node.job.party
        out[node.name] = [party.ids[i] for i in party.aligned_rows.tolist()]
    return out


def _federation(folder: Path, executor: str) -> tuple[dict[str, int], dict[str, list[str]], float]:
    """Align a 3,000-customer demo federation whose lender runs ``executor``; the counts, the
    aligned ids of every party, and the CPU seconds this process's children spent aligning."""
    path = demo_federation(folder, customers=3000)
    head, sep, tail = path.read_text().partition('name = "lender"\n')
    path.write_text(f'{head}{sep}executor = "{executor}"\n{tail}')
    fed = load_federation(path, allow_small_keys=True)
    assert fed.party("lender").executor == executor
    # The lender starts last, so its executor is the one of this whole process: every node of
    # the in-process federation aligns on it, as a separate node process would on its own.
    nodes = start_nodes(fed, folder)
    driver = nodes.new_driver()
    try:
        children = [p.pid for p in multiprocessing.active_children() if p.pid is not None]
        before = _cpu_seconds(children)
        driver.setup(driver.start_job(), False)
        aligned = driver.align()
        spent = _cpu_seconds(children) - before
        return aligned, _aligned_ids(folder), spent
    finally:
        driver.peers.close()
        nodes.close()
        use_executor("threads")


def test_a_party_on_worker_processes_aligns_the_same_customers_as_on_threads(
    tmp_path: Path,
) -> None:
    threads, threads_ids, _ = _federation(tmp_path / "threads", "threads")
    processes, processes_ids, worker_seconds = _federation(tmp_path / "processes", "processes")
    assert processes == threads
    assert 0 < threads["common"] < 3000
    assert sorted(threads_ids) == ["ecommerce", "lender", "payments"]
    assert processes_ids == threads_ids
    assert {len(ids) for ids in threads_ids.values()} == {threads["common"]}
    # Positive control: the hashing and blinding really ran on the worker processes.
    assert worker_seconds > 0.3
