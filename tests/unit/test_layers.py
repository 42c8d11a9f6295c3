"""The committed protobuf code matches protos/, and the package layers point one way.

The import checks read every ``import`` and ``from ... import`` of every module under
``fedcredit/`` with ``ast``, at any depth: an import inside a function or under
``if TYPE_CHECKING:`` is an edge like any other, because it hides a dependency that is still
there. Each failure names the importing file and line.
"""

from __future__ import annotations

import ast
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "fedcredit"

# A module may import only from its own layer or lower ones; the longest matching prefix wins.
# errors, files -> crypto, psi -> data, model -> protocol, debt -> decision -> config -> node (transport ->
# serde -> state -> services -> runtime) -> driver -> cli.
LAYERS = {
    "fedcredit.errors": 0, "fedcredit.files": 0,
    "fedcredit.crypto": 1, "fedcredit.psi": 1,
    "fedcredit.data": 2, "fedcredit.model": 2,
    "fedcredit.protocol": 3, "fedcredit.debt": 3, "fedcredit.decision": 3.5,
    "fedcredit.config": 4,
    "fedcredit.proto": 5, "fedcredit.node": 5,
    "fedcredit.driver": 6,
    "fedcredit.cli": 7,
}  # fmt: skip
#: Inside the node, once it is split into sub-packages (node/services/ is a package).
NODE_LAYERS = {
    # plain values and local files, below everything that talks to a peer
    "fedcredit.node.errors": 5.0, "fedcredit.node.results": 5.0,
    "fedcredit.node.secret": 5.0, "fedcredit.node.audit": 5.0,
    "fedcredit.node.batching": 5.0, "fedcredit.node.decisions": 5.0,
    "fedcredit.node.invitations": 5.0,
    "fedcredit.node.transport": 5.1, "fedcredit.node.serde": 5.2,
    # what the job state uses: a partner's policy, the debt check's client side
    "fedcredit.node.partner": 5.25, "fedcredit.node.debt_client": 5.25,
    "fedcredit.node.state": 5.3, "fedcredit.node.outbox": 5.3,
    # the work one servicer method calls, without protobuf in the domain objects
    "fedcredit.node.scoring": 5.35, "fedcredit.node.binning_job": 5.35,
    "fedcredit.node.debt_job": 5.35, "fedcredit.node.decryption": 5.35,
    "fedcredit.node.trees_state": 5.35, "fedcredit.node.trees_scoring": 5.34,
    "fedcredit.node.services": 5.4,
    "fedcredit.node.runtime": 5.5, "fedcredit.node.debt_node": 5.5,
}  # fmt: skip
if (PACKAGE / "node" / "services").is_dir():
    LAYERS |= NODE_LAYERS
#: The lowest layer that may import grpc: the node's.
GRPC_LAYER = 5
#: Where protobuf messages may be imported: the node, the driver (and the generated code itself).
PROTOBUF_HOMES = ("fedcredit/node/", "fedcredit/driver/", "fedcredit/proto/")
#: Raw Paillier primitives (a chosen ``r``, no obfuscation, no range checks): crypto's own.
RAW_PRIMITIVES = {"raw_encrypt", "raw_decrypt", "raw_encrypt_djn", "raw_decrypt_many"}
RAW_HOME = "fedcredit/crypto/"
MAX_LINES = 500


@dataclass(frozen=True)
class Import:
    """One import statement's target, as the module it loads."""

    source: str  # the importing module, e.g. fedcredit.cli.jobs
    path: str  # its file, relative to the repository, e.g. fedcredit/cli/jobs.py
    line: int
    target: str  # the module imported, e.g. fedcredit.proto.v1.party_pb2
    names: tuple[str, ...]  # for ``from x import a, b``: a, b

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES.get(module, Path()).name == "__init__.py"


def _resolve(source: str, node: ast.ImportFrom) -> str:
    """The absolute module of ``from <node.module> import ...`` written in module ``source``."""
    if node.level == 0:
        return node.module or ""
    base = source.split(".")
    # In a package's __init__ the package itself is level 1; in a module, its package is.
    drop = node.level - 1 if _is_package(source) else node.level
    base = base[: len(base) - drop]
    return ".".join([*base, node.module] if node.module else base)


def imports() -> Iterator[Import]:
    """Every import of every module of the package, at any depth of its syntax tree."""
    for source, path in MODULES.items():
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(source, rel, node.lineno, alias.name, ())
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(source, node)
                names = tuple(a.name for a in node.names)
                yield Import(source, rel, node.lineno, target, names)


def _edges(imp: Import) -> list[str]:
    """The package's modules an import loads: ``from pkg import module`` loads pkg.module."""
    targets = []
    for name in imp.names:
        if f"{imp.target}.{name}" in MODULES:
            targets.append(f"{imp.target}.{name}")
    if len(targets) < len(imp.names) or not imp.names:
        # Some name is not a submodule: it is read from the module (or package) itself.
        module = imp.target
        while module and module not in MODULES:
            module = module.rpartition(".")[0]
        if module:
            targets.append(module)
    return [t for t in targets if t != imp.source]


def _generated(path: str) -> bool:
    return path.startswith("fedcredit/proto/")


def _layer(module: str) -> float | None:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        layer = LAYERS.get(".".join(parts[:end]))
        if layer is not None:
            return layer
    return None


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


def test_lower_layers_never_import_higher_ones() -> None:
    offenders = []
    for imp in imports():
        own = _layer(imp.source)
        if own is None or _generated(imp.path):
            continue
        for target in [imp.target, *_edges(imp)]:
            other = _layer(target)
            if other is not None and other > own:
                offenders.append(f"{imp.where()}: {imp.source} imports {target}")
        if (imp.target == "grpc" or imp.target.startswith("grpc.")) and own < GRPC_LAYER:
            offenders.append(f"{imp.where()}: {imp.source} imports grpc below the node layer")
    assert offenders == [], "\n".join(sorted(set(offenders)))


def _cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], set[str]]]:
    """For each strongly connected group of modules (Tarjan): one closed path, and the group."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for group in groups:
        start = min(group)
        # The shortest path from start back to itself inside the group (breadth first).
        paths = {start: [start]}
        frontier = [start]
        cycle: list[str] | None = None
        while frontier and cycle is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & group):
                    if w == start:
                        cycle = [*paths[v], start]
                        break
                    if w not in paths:
                        paths[w] = [*paths[v], w]
                        nxt.append(w)
                if cycle:
                    break
            frontier = nxt
        assert cycle is not None
        cycles.append((cycle, group))
    return sorted(cycles, key=lambda c: c[0])


def test_no_import_cycle_among_the_package_modules() -> None:
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for imp in imports():
        if _generated(imp.path):
            continue
        for target in _edges(imp):
            graph.setdefault(imp.source, set()).add(target)
            where.setdefault((imp.source, target), imp.where())
    cycles = _cycles(graph)
    report = [
        " -> ".join(cycle)
        + f"  (all in this cycle: {', '.join(sorted(group))})\n"
        + "\n".join(f"    {where[(a, b)]}: {a} imports {b}" for a, b in itertools.pairwise(cycle))
        for cycle, group in cycles
    ]
    assert cycles == [], "import cycles (function-level and TYPE_CHECKING imports count):\n" + (
        "\n".join(report)
    )


def _protobuf(imp: Import) -> bool:
    target = imp.target
    return (
        target == "fedcredit.proto"
        or target.startswith("fedcredit.proto.")
        or target.startswith("google.protobuf")
        or target.endswith(("_pb2", "_pb2_grpc"))
        or any(name.endswith(("_pb2", "_pb2_grpc")) for name in imp.names)
    )


def test_protobuf_is_imported_only_by_the_node_and_the_driver() -> None:
    offenders = [
        f"{imp.where()}: {imp.source} imports {imp.target}"
        + (f" ({', '.join(imp.names)})" if imp.names else "")
        for imp in imports()
        if _protobuf(imp) and not imp.path.startswith(PROTOBUF_HOMES)
    ]
    assert offenders == [], "protobuf outside fedcredit/node/ and fedcredit/driver/:\n" + (
        "\n".join(offenders)
    )


def _module_of(path: Path) -> str:
    return next(name for name, p in MODULES.items() if p == path)


def _own_hazmat(module: str) -> bool:
    return module.startswith("fedcredit.") and "hazmat" in module.split(".")


def test_raw_paillier_primitives_are_used_only_inside_crypto() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(RAW_HOME):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=rel)):
            # fedcredit's own hazmat layer, not pyca/cryptography's (certificates need that).
            if isinstance(node, ast.ImportFrom):
                module = _resolve(_module_of(path), node)
                raw = sorted({a.name for a in node.names} & RAW_PRIMITIVES)
                if raw or _own_hazmat(module):
                    offenders.append(f"{rel}:{node.lineno}: imports {module} {', '.join(raw)}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if _own_hazmat(alias.name):
                        offenders.append(f"{rel}:{node.lineno}: imports {alias.name}")
            elif isinstance(node, ast.Attribute) and node.attr in RAW_PRIMITIVES:
                offenders.append(f"{rel}:{node.lineno}: uses .{node.attr}")
    assert offenders == [], "raw Paillier primitives outside fedcredit/crypto/:\n" + (
        "\n".join(offenders)
    )


def test_no_hand_written_module_is_longer_than_500_lines() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if _generated(rel):
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            offenders.append(f"{rel}: {lines} lines")
    assert offenders == [], f"modules over {MAX_LINES} lines:\n" + "\n".join(offenders)
