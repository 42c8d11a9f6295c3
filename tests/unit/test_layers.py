"""The committed protobuf code matches protos/, and the package layers point one way."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A module may import only from its own layer or lower ones.
LAYERS = {
    "errors": 0, "files": 0, "config": 0, "crypto": 1, "psi": 1, "model": 1, "data": 1, "debt": 2,
    "protocol": 2, "proto": 3, "node": 3, "cli": 4,
}  # fmt: skip


def test_generated_protobuf_code_matches_the_protos() -> None:
    env = dict(os.environ, PYTHON=sys.executable)
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "gen_protos.sh"), "--check"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "fedcredit" or len(parts) < 2:
        return None
    return LAYERS.get(parts[1])


def test_lower_layers_never_import_higher_ones() -> None:
    offenders = []
    for path in (REPO / "fedcredit").rglob("*.py"):
        rel = path.relative_to(REPO).with_suffix("")
        own = _layer(".".join(rel.parts))
        if own is None or "proto" in rel.parts[1:2]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                other = _layer(name)
                if other is not None and other > own:
                    offenders.append(f"{rel}: imports {name}")
            if (
                isinstance(node, ast.Import | ast.ImportFrom)
                and any(n == "grpc" or n.startswith("grpc.") for n in names)
                and own < 3
            ):
                offenders.append(f"{rel}: imports grpc below the node layer")
    assert offenders == []
