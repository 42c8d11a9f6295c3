"""Private alignment at scale: every party in its own process, its peak memory measured.

    python benchmarks/align_scale.py --json OUT.json [--customers 1000000 2000000] [--parquet]

For each size: ``fedcredit.data.synthetic`` writes the three institutions' CSV files (80 %
overlap); each party runs in a process of its own (``multiprocessing``, spawn): it loads its
file with the nodes' loader (``load_party_csv``), then runs its side of the real three-party
ring PSI (``PSIParty``: hash, blind with the mask, relay its peers' lists, unmask, resolve).
With ``--parquet`` every file is first rewritten as Parquet in row groups of 65,536 rows
(pyarrow), so the load measures the row-group reader. This process plays the driver: it carries the lists (one bytes blob each, as the chunked
messages do) and intersects the F-sets. gRPC and TLS are left out: the nodes add the message
copies (``benchmarks/scale.py`` and the alignment timings of a run include them).

Per size and party: ``load_s``, ``rss_after_load_mib``, ``psi_cpu_s`` (that party's CPU
seconds in the PSI), ``load_peak_rss_mib`` (VmHWM, the process's peak, at the end of the load),
``psi_peak_rss_mib`` (the peak from the end of the load on: VmHWM reset through
``/proc/self/clear_refs``), ``peak_rss_mib`` (the larger of the two) and ``ru_maxrss_mib``
(which a spawned child inherits from the driver's RSS at the fork: not the party's own);
overall ``align_s`` (wall, all parties sharing this machine's cores), ``us_per_id`` (wall over all ids), and
``psi_cpu_us_per_id`` (CPU of every party over all ids: what one party costs per id where it
has its own cores). The three parties share the machine's cores here; deployed, each party
has its own, so ``psi_cpu_us_per_id`` x own ids / cores is a party's alignment time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

PARTIES = ["ecommerce", "lender", "payments"]  # the ring order: sorted names


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _hwm_mib() -> float:
    """The process's peak resident memory since the last :func:`_reset_hwm` (VmHWM)."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover - not Linux


def _reset_hwm() -> bool:
    """Start VmHWM again from the current RSS (Linux >= 4.0: ``5 > clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def party_process(name: str, path: str, conn: Connection) -> None:
    """One party: load, then answer the driver's PSI steps over ``conn`` until 'resolve'."""
    from fedcredit.data.loader import load_party_csv
    from fedcredit.psi import PointBuffer, PSIParty

    started = time.perf_counter()
    data = load_party_csv(
        Path(path), id_column="id", label_column="default" if name == "lender" else None
    )
    report: dict[str, Any] = {
        "rows": data.n_rows,
        "load_s": round(time.perf_counter() - started, 1),
        "rss_after_load_mib": round(_rss_mib(), 0),
        "load_peak_rss_mib": round(_hwm_mib(), 0),
    }
    reset = _reset_hwm()  # from here VmHWM is the PSI's own peak
    cpu = time.process_time()
    psi = PSIParty(data.ids, "align-scale", len(PARTIES))
    conn.send_bytes(psi.start().data)
    while True:
        step = conn.recv()
        blob = conn.recv_bytes()
        if step == "relay":
            conn.send_bytes(psi.relay(PointBuffer(blob)).data)
        elif step == "finish":
            conn.send_bytes(psi.finish(PointBuffer(blob)).data)
        else:
            common = psi.resolve(PointBuffer(blob)).ids
            report.update(
                common=len(common),
                psi_cpu_s=round(time.process_time() - cpu, 1),
                psi_peak_rss_mib=round(_hwm_mib(), 0) if reset else None,
                # ru_maxrss, not VmHWM: a spawned child's includes the driver's RSS at the fork
                # (this process's, with the synthetic files written): compare the two above.
                ru_maxrss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
            )
            report["peak_rss_mib"] = max(
                report["load_peak_rss_mib"], report["psi_peak_rss_mib"] or 0
            )
            conn.send(report)
            return


def to_parquet(paths: dict[str, Path]) -> dict[str, Path]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out = {}
    for name, path in paths.items():
        # The id column stays text, as the CSV loader reads it.
        options = pacsv.ConvertOptions(column_types={"id": "string"})
        table = pacsv.read_csv(path, convert_options=options)
        out[name] = path.with_suffix(".parquet")
        pq.write_table(table, out[name], row_group_size=65_536)
        path.unlink()
    return out


def run_size(customers: int, folder: Path, parquet: bool) -> dict[str, Any]:
    from fedcredit.data.synthetic import write_institutions
    from fedcredit.psi import PointBuffer, intersect

    started = time.perf_counter()
    paths = write_institutions(folder, customers, seed=3)
    if parquet:
        paths = to_parquet(paths)
    out: dict[str, Any] = {
        "customers": customers,
        "format": "parquet" if parquet else "csv",
        "write_s": round(time.perf_counter() - started, 1),
    }
    context = mp.get_context("spawn")
    conns: dict[str, Connection] = {}
    procs = []
    for name in PARTIES:
        ours, theirs = context.Pipe()
        proc = context.Process(target=party_process, args=(name, str(paths[name]), theirs))
        proc.start()
        conns[name], _ = ours, theirs.close()
        procs.append(proc)
    lists = {name: conns[name].recv_bytes() for name in PARTIES}  # every party loaded, blinded
    started = time.perf_counter()  # PSI from here: the blindings overlap the loads otherwise
    n = len(PARTIES)
    for hop in range(1, n):
        for index, owner in enumerate(PARTIES):
            holder = PARTIES[(index + hop) % n]
            conns[holder].send("relay")
            conns[holder].send_bytes(lists[owner])
        for index, owner in enumerate(PARTIES):
            lists[owner] = conns[PARTIES[(index + hop) % n]].recv_bytes()
    for owner in PARTIES:
        conns[owner].send("finish")
        conns[owner].send_bytes(lists[owner])
    f_sets = [PointBuffer(conns[owner].recv_bytes()) for owner in PARTIES]  # as the driver
    common = PointBuffer.of(intersect(f_sets)).tobytes()
    for owner in PARTIES:
        conns[owner].send("resolve")
        conns[owner].send_bytes(common)
    parties = {owner: conns[owner].recv() for owner in PARTIES}
    ring_s = time.perf_counter() - started
    for proc in procs:
        proc.join()
    ids = sum(p["rows"] for p in parties.values())
    out.update(
        ids=ids,
        common=parties["lender"]["common"],
        ring_after_blind_s=round(ring_s, 1),
        psi_cpu_s=round(sum(p["psi_cpu_s"] for p in parties.values()), 1),
        psi_cpu_us_per_id=round(sum(p["psi_cpu_s"] for p in parties.values()) / ids * 1e6, 1),
        parties=parties,
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--customers", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--parquet", action="store_true", help="load Parquet files, not CSV")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    results: dict[str, Any] = {
        "cores": len(os.sched_getaffinity(0)),
        "load_average_at_start": round(load, 2),
        "sizes": [],
    }
    for customers in args.customers:
        log(f"align_scale: {customers:,} customers ...")
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="fedcredit-align-") as tmp:
            size = run_size(customers, Path(tmp), args.parquet)
        size["total_s"] = round(time.perf_counter() - started, 1)
        results["sizes"].append(size)
        log(json.dumps(size))
    text = json.dumps(results, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
