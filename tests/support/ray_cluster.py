"""A real local Ray cluster of two CPUs for a test module, and the Ray workers running a task.

``local_cluster`` is what a module's ``cluster`` fixture yields from (Ray itself is imported
only when it runs, so a module without Ray can skip first); ``task_pids`` finds the workers to
kill in the fault-tolerance tests, and ``kill_a_worker_during`` kills one while a call runs.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from fedcredit.crypto.executors import set_executor
from fedcredit.crypto.executors.ray_executor import BlockSizes, RayExecutor

T = TypeVar("T")

#: Blocks small enough that the tests' short inputs really go to the Ray workers.
SMALL = BlockSizes(encrypt=16, matvec=16, weighted=16, pack=1, decrypt=8, per_worker=2, powers=4)


def local_cluster(blocks: BlockSizes = SMALL) -> Iterator[RayExecutor]:
    """A Ray cluster of two CPUs on this machine, started fresh, stopped after."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    executor = RayExecutor("local", workers=2, blocks=blocks)
    try:
        yield executor
    finally:
        set_executor(None)
        executor.close()


def task_pids(name: str) -> list[int]:
    """Processes whose title Ray set to ``ray::<name>``: workers running that task now."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title.startswith(f"ray::{name}".encode()):
            pids.append(int(entry.name))
    return pids


def kill_a_worker_during(task: str, call: Callable[[], T]) -> tuple[int | None, list[T], bool]:
    """Run ``call`` in a thread and SIGKILL the first Ray worker seen running ``task`` (within
    30 s) meanwhile: the pid killed (None if none was seen), what ``call`` returned (one item
    when it returned) and whether the thread was still running after 120 s."""
    got: list[T] = []
    worker = threading.Thread(target=lambda: got.append(call()))
    worker.start()
    killed = None
    deadline = time.monotonic() + 30
    while killed is None and time.monotonic() < deadline and worker.is_alive():
        running = task_pids(task)
        if running:
            killed = running[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.005)
    worker.join(timeout=120)
    return killed, got, worker.is_alive()
