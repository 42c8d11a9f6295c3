"""Faults: a partner that goes silent without closing its connection, a full disk at checkpoint
time, an output folder that cannot be written. Real node processes (``fedcredit run``) where the
fault is between machines; in-process nodes where the fault is inside one node.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fedcredit.cli.demo import write_demo_federation
from fedcredit.data.synthetic import write_institutions
from fedcredit.node.transport.tls import init_certs
from fedcredit.proto.v1 import job_pb2
from tests.support.federation import InProcessFederation, start_federation
from tests.support.proxies import FreezingProxy

DETECT_WITHIN_S = 10.0


@pytest.fixture()
def remote_ecommerce(tmp_path: Path) -> Iterator[tuple[Path, FreezingProxy]]:
    """A federation whose ecommerce node is 'remote' (127.0.0.2, not started by ``run``) and
    reached through a freezing proxy; the node itself runs as a separate process."""
    data = write_institutions(tmp_path / "data", 1500, seed=5)
    fed = write_demo_federation(tmp_path, data, key_bits=1024, epochs=30)
    proxy = FreezingProxy("127.0.0.2")
    certs = tmp_path / "certs"
    init_certs(certs, ["lender", "ecommerce", "payments", "coordinator"])
    text = (
        fed.read_text()
        .replace("batch_size = 4096", "batch_size = 400")
        .replace("early_stopping_rounds = 3", "early_stopping_rounds = 0\ntol = 0.0")
        .replace('address = "127.0.0.1:50052"', f'address = "{proxy.address}"')
    )
    fed.write_text(text + f'\n[tls]\ncert_dir = "{certs}"\n')
    port_file = tmp_path / "ecommerce.port"
    node = subprocess.Popen(
        [sys.executable, "-m", "fedcredit", "node", "--federation", str(fed),
         "--party", "ecommerce", "--listen", "127.0.0.1:0", "--port-file", str(port_file),
         "--state-dir", str(tmp_path / "ecommerce-state"), "--allow-small-keys"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proxy.target = ("127.0.0.1", int(port_file.read_text()))
        yield fed, proxy
    finally:
        node.terminate()
        node.wait(timeout=30)
        proxy.close()


@pytest.mark.slow
def test_a_partner_that_stops_answering_is_noticed_within_seconds(
    remote_ecommerce: tuple[Path, FreezingProxy], tmp_path: Path
) -> None:
    fed, proxy = remote_ecommerce
    out = tmp_path / "run"
    run = subprocess.Popen(
        [sys.executable, "-m", "fedcredit", "run", str(fed), "--out", str(out),
         "--allow-small-keys"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "progress.json").exists() and run.poll() is None:
        assert time.monotonic() < deadline, "the first epoch never finished"
        time.sleep(0.02)
    assert run.poll() is None, run.communicate()
    proxy.frozen.set()
    frozen_at = time.monotonic()
    _, stderr = run.communicate(timeout=120)
    detected_after = time.monotonic() - frozen_at
    print(f"silent partner noticed after {detected_after:.1f} s")
    assert run.returncode == 2
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert "'ecommerce'" in last and "unavailable" in last
    assert detected_after < DETECT_WITHIN_S


# -- a full disk at checkpoint time ---------------------------------------------------------
@pytest.fixture()
def nodes(tmp_path: Path) -> Iterator[InProcessFederation]:
    federation = start_federation(tmp_path / "fed")
    yield federation
    federation.close()


def _end_epoch(nodes: InProcessFederation, epoch: int) -> job_pb2.EpochReply:
    request = job_pb2.StepRequest(env=nodes.driver.env(epoch, 5))
    return nodes.party("coordinator", "ecommerce").EndEpoch(request, timeout=30)


def test_a_full_disk_at_checkpoint_gives_a_clear_error_and_keeps_the_previous_checkpoint(
    nodes: InProcessFederation,
) -> None:
    state = nodes.folder / "state" / "ecommerce"
    _end_epoch(nodes, 0)
    previous = (state / "checkpoint-0.json").read_bytes()
    # The checkpoint's temporary file leads to /dev/full: every write fails with ENOSPC.
    (state / f".checkpoint-1.json.{os.getpid()}.tmp").symlink_to("/dev/full")
    with pytest.raises(grpc.RpcError) as info:
        _end_epoch(nodes, 1)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    details = info.value.details()  # type: ignore[attr-defined]
    assert "checkpoint-1.json" in details and os.strerror(errno.ENOSPC) in details
    assert (state / "checkpoint-0.json").read_bytes() == previous
    assert not (state / "checkpoint-1.json").exists()
    assert sorted(p.name for p in state.iterdir()) == ["checkpoint-0.json"]
    # Space is back: the node writes the next checkpoint.
    assert _end_epoch(nodes, 1).env.job_id == nodes.job_id
    assert (state / "checkpoint-1.json").exists()


def _fedcredit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedcredit", *args], capture_output=True, text=True, timeout=120
    )


def test_an_output_folder_that_cannot_be_created_gives_one_clear_line(tmp_path: Path) -> None:
    data = write_institutions(tmp_path / "data", 300, seed=5)
    fed = write_demo_federation(tmp_path, data, key_bits=1024, epochs=1)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _fedcredit("run", str(fed), "--out", str(blocker / "run"), "--allow-small-keys")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"fedcredit: error: cannot create output folder {blocker / 'run'}: Not a directory"
    ]
