"""scripts/gen_protos.sh, run on placeholder protos in a copy of the repository layout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

COMMON = """syntax = "proto3";
package fedcredit.v1;
message Header { string job_id = 1; }
"""
PING = """syntax = "proto3";
package fedcredit.v1;
import "fedcredit/v1/common.proto";
service Pinger { rpc Ping(PingRequest) returns (Header); }
message PingRequest { Header header = 1; }
"""


@pytest.fixture()
def sandbox(tmp_path: Path) -> Path:
    """A minimal repository: the script, two protos (one importing the other), a package."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "gen_protos.sh", tmp_path / "scripts" / "gen_protos.sh")
    protos = tmp_path / "protos" / "fedcredit" / "v1"
    protos.mkdir(parents=True)
    (protos / "common.proto").write_text(COMMON)
    (protos / "ping.proto").write_text(PING)
    (tmp_path / "fedcredit").mkdir()
    (tmp_path / "fedcredit" / "__init__.py").write_text("")
    return tmp_path


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(root / "scripts" / "gen_protos.sh"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_generates_messages_stubs_and_type_stubs(sandbox: Path) -> None:
    assert run(sandbox).returncode == 0
    names = {p.name for p in (sandbox / "fedcredit" / "proto" / "v1").iterdir()}
    expected = {f"ping_pb2{suffix}" for suffix in (".py", ".pyi", "_grpc.py", "_grpc.pyi")}
    assert expected | {"__init__.py", "common_pb2.py"} <= names


def test_generated_code_imports_under_fedcredit_proto(sandbox: Path) -> None:
    run(sandbox)
    code = (
        "from fedcredit.proto.v1 import ping_pb2, ping_pb2_grpc\n"
        "print(ping_pb2.PingRequest.DESCRIPTOR.full_name, ping_pb2.PingRequest.__module__)\n"
        "assert ping_pb2_grpc.PingerStub\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=sandbox, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["fedcredit.v1.PingRequest", "fedcredit.proto.v1.ping_pb2"]


def test_method_paths_keep_the_proto_package(sandbox: Path) -> None:
    run(sandbox)
    stub = (sandbox / "fedcredit" / "proto" / "v1" / "ping_pb2_grpc.py").read_text()
    assert "'/fedcredit.v1.Pinger/Ping'" in stub
    assert "from fedcredit.proto.v1 import common_pb2" in stub


def test_check_passes_when_committed_copy_is_current(sandbox: Path) -> None:
    run(sandbox)
    result = run(sandbox, "--check")
    assert (result.returncode, "up to date" in result.stdout) == (0, True)


def test_check_fails_when_a_proto_changed(sandbox: Path) -> None:
    run(sandbox)
    common = sandbox / "protos" / "fedcredit" / "v1" / "common.proto"
    common.write_text(COMMON.replace("}", "  uint32 epoch = 2; }"))
    result = run(sandbox, "--check")
    assert (result.returncode, "differs from protos" in result.stderr) == (1, True)


def test_check_fails_when_a_generated_file_is_stale(sandbox: Path) -> None:
    run(sandbox)
    (sandbox / "fedcredit" / "proto" / "v1" / "old_pb2.py").write_text("")
    assert run(sandbox, "--check").returncode == 1


def test_regenerating_removes_stale_files(sandbox: Path) -> None:
    run(sandbox)
    stale = sandbox / "fedcredit" / "proto" / "v1" / "old_pb2.py"
    stale.write_text("")
    run(sandbox)
    assert not stale.exists()


def test_unknown_option_is_a_usage_error(sandbox: Path) -> None:
    assert run(sandbox, "--chek").returncode == 2
