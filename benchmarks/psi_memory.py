"""One party's PSI memory per id, step by step, measured with tracemalloc (issue 16).

    python benchmarks/psi_memory.py --ids 20000 [--json OUT.json]

Three parties of a ring run in this process; only the first one's steps are measured, each
given its input as the node hands it over (the assembled list of a message or of chunks:
one ``PointBuffer`` where ``fedcredit.psi`` has it, else a list of 32-byte ``bytes`` as
``points_of`` made): ``start`` (hash, shuffle, blind), ``relay`` of each peer's list,
``finish`` and ``resolve``. Per step, in bytes per id of the party: ``input`` (the list it
is given), ``peak`` (the most allocated during the step above what was held before it,
input included) and ``output`` (the list it returns). The ids' own strings are left out
(they are held before and after). tracemalloc counts Python's allocations, so the figures
do not depend on the machine's load or on the allocator's arenas, unlike RSS.
"""

from __future__ import annotations

import argparse
import json
import tracemalloc
from pathlib import Path
from typing import Any

import fedcredit.psi as psi_module
from fedcredit.psi import PSIParty, intersect


def as_received(blob: bytes) -> Any:
    """A list as the node hands it to a step (see the module docstring)."""
    buffer = getattr(psi_module, "PointBuffer", None)
    if buffer is not None:
        return buffer(blob)
    return [blob[i : i + 32] for i in range(0, len(blob), 32)]


def blob_of(points: Any) -> bytes:
    data = getattr(points, "data", None)
    return bytes(data) if data is not None else b"".join(points)


def measure(ids: int) -> dict[str, Any]:
    sets = [[f"p{p}-{i}" if i % 5 == 4 else f"c-{i}" for i in range(ids)] for p in range(3)]
    parties = [PSIParty(s, "psi-memory", 3, workers=1) for s in sets]
    steps: dict[str, Any] = {}

    def step(name: str, run: Any, received: bytes | None = None) -> bytes:
        given = None if received is None else as_received(received)
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = run() if given is None else run(given)
        current, peak = tracemalloc.get_traced_memory()
        steps[name] = {
            "peak_bytes_per_id": round((peak - before) / ids, 1),
            "held_after_bytes_per_id": round((current - before) / ids, 1),
        }
        blob = blob_of(out) if name != "resolve" else b""
        del out, given
        return blob

    tracemalloc.start()
    lists = [step("start", parties[0].start)] + [blob_of(p.start()) for p in parties[1:]]
    # Hop 1: party 0 relays party 2's list; hop 2: party 0 relays party 1's.
    lists[1] = blob_of(parties[2].relay(as_received(lists[1])))
    lists[2] = step("relay", parties[0].relay, lists[2])
    lists[0] = blob_of(
        parties[2].relay(as_received(blob_of(parties[1].relay(as_received(lists[0])))))
    )
    lists[1] = blob_of(parties[0].relay(as_received(lists[1])))
    lists[2] = blob_of(parties[1].relay(as_received(lists[2])))
    f_sets = [step("finish", parties[0].finish, lists[0])]
    f_sets += [blob_of(p.finish(as_received(lists[i]))) for i, p in enumerate(parties) if i]
    common = blob_of(intersect([as_received(f) for f in f_sets]))
    step("resolve", parties[0].resolve, common)
    tracemalloc.stop()
    return {"ids": ids, "common": len(common) // 32, "steps": steps}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ids", type=int, default=20_000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = measure(args.ids)
    text = json.dumps(result, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
