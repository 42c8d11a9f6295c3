"""One training epoch on the UCI three-institution split: fedcredit against plain phe.

    python benchmarks/train.py --json OUT.json [--key-bits 2048] [--phe-batches 1] [--scaling] [--network]

fedcredit: the protocol's own domain objects in one process, one party after another, timed
per phase (encrypt, matvec, decrypt). With --network, also the train phase of a one-epoch
`fedcredit run` on the same split (node processes, mutual TLS, parties computing at the same
time on the machine's cores): ``run_epoch_s``; ``network`` is its excess over the in-process
epoch (0 when running the parties in parallel saves more than the network costs).
phe: the same protocol written with plain phe objects, one `encrypt`, one `*` and one `+` per
element, on the same key size; it is timed on ``--phe-batches`` mini-batches and scaled to the
epoch (phe_extrapolated = true), because a full phe epoch takes the better part of an hour.
--scaling times one fedcredit epoch on 10k and 100k synthetic customers and extrapolates 1M.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from phe import paillier

from fedcredit.crypto import generate_keypair, get_workers
from fedcredit.protocol.keyholder import KeyHolder
from fedcredit.protocol.logistic.lender import LabelParty
from fedcredit.protocol.logistic.partner import FeatureParty
from fedcredit.protocol.logistic.settings import TrainSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_data import UCI_LABEL, UCI_SPLIT, data_dir, read_table


def uci_parties(settings: TrainSettings) -> tuple[LabelParty, list[FeatureParty]]:
    header, rows = read_table(data_dir() / "uci_default_credit" / "UCI_Credit_Card.csv")
    table = {name: [row[j].strip() for row in rows] for j, name in enumerate(header)}
    ids = table["ID"]

    def matrix(cols: list[str]) -> np.ndarray:
        return np.array([[float(table[c][i]) for c in cols] for i in range(len(ids))])

    y = np.array([int(float(v)) for v in table[UCI_LABEL]])
    lender = LabelParty(
        "lender", ids, matrix(UCI_SPLIT["lender"]), UCI_SPLIT["lender"], y, settings
    )
    hosts = [
        FeatureParty(n, ids, matrix(UCI_SPLIT[n]), UCI_SPLIT[n], settings)
        for n in ("ecommerce", "payments")
    ]
    common = sorted(ids)
    for party in (lender, *hosts):
        party.align(common)
    return lender, hosts


def synthetic_parties(
    customers: int, settings: TrainSettings, folder: Path
) -> tuple[LabelParty, list[FeatureParty]]:
    from fedcredit.data.loader import load_party_csv
    from fedcredit.data.synthetic import write_institutions

    paths = write_institutions(folder, customers, seed=3)
    lender_data = load_party_csv(paths["lender"], id_column="id", label_column="default")
    lender = LabelParty(
        "lender", lender_data.ids, lender_data.X, lender_data.feature_names, lender_data.y, settings
    )
    hosts = []
    for name in ("ecommerce", "payments"):
        data = load_party_csv(paths[name], id_column="id")
        hosts.append(FeatureParty(name, data.ids, data.X, data.feature_names, settings))
    common = sorted(set(lender.ids).intersection(*(set(h.ids) for h in hosts)))
    for party in (lender, *hosts):
        party.align(common)
    return lender, hosts


def fedcredit_epoch(
    lender: LabelParty, hosts: list[FeatureParty], keys: KeyHolder
) -> dict[str, Any]:
    """One epoch, in process, with seconds per phase."""
    phases: dict[str, float] = defaultdict(float)
    started = time.perf_counter()
    batches = lender.batches_per_epoch()
    for batch in range(batches):
        t = time.perf_counter()
        partials = {h.name: h.partial("train", 0, batch) for h in hosts}
        z = lender.encrypted_scores("train", 0, batch, partials)
        residual = lender.residual(z, "train", 0, batch)
        phases["encrypt"] += time.perf_counter() - t
        for party in (lender, *hosts):
            t = time.perf_counter()
            packed, masks = party.gradient_request(residual, 0, batch)
            phases["matvec"] += time.perf_counter() - t
            t = time.perf_counter()
            slots = keys.decrypt_masked(packed)
            phases["decrypt"] += time.perf_counter() - t
            party.apply_gradient(slots, masks, 0)
    return {
        "seconds": time.perf_counter() - started,
        "batches": batches,
        "phases": {k: round(v, 2) for k, v in phases.items()},
    }


def phe_batches(
    lender: LabelParty, hosts: list[FeatureParty], key_bits: int, count: int
) -> tuple[float, int]:
    """The same protocol with plain phe objects on ``count`` batches; seconds and rows."""
    public, private = paillier.generate_paillier_keypair(n_length=key_bits)
    parties = [lender, *hosts]
    seconds, rows_done = 0.0, 0
    for batch in range(count):
        rows = lender.rows_of("train", 0, batch)
        xs = [p._x_int[rows].astype(np.float64) / float(1 << p.x_scale_bits) for p in parties]
        y = lender.labels(rows)
        started = time.perf_counter()
        encrypted = [
            [public.encrypt(float(v)) for v in x @ p.weights]
            for x, p in zip(xs, parties, strict=True)
        ]
        z = [sum(parts[1:], parts[0]) for parts in zip(*encrypted, strict=True)]
        d = [zi * 0.25 + (0.5 - float(yi)) for zi, yi in zip(z, y, strict=True)]
        for x in xs:
            gradient = [
                sum((e * float(v) for v, e in zip(col, d, strict=True)), public.encrypt(0.0))
                for col in x.T
            ]
            [private.decrypt(g) for g in gradient]
        seconds += time.perf_counter() - started
        rows_done += len(rows)
    return seconds, rows_done


def network_epoch(key_bits: int, settings: TrainSettings) -> float:
    """Seconds of the train phase of a one-epoch ``fedcredit run`` on the same UCI split (the
    quality benchmark's files: every customer, [train] defaults but one epoch)."""
    import numpy as np
    from quality_data import load_uci, write_case_files

    from fedcredit.cli.jobs import run_job
    from fedcredit.config import load_federation

    data = load_uci(data_dir())
    with tempfile.TemporaryDirectory(prefix="fedcredit-train-") as tmp:
        folder = Path(tmp)
        path, _ = write_case_files(data, folder, key_bits, False, {}, np.arange(len(data.ids)))
        text = path.read_text(encoding="utf-8").replace("[train]", "[train]\nepochs = 1", 1)
        path.write_text(text, encoding="utf-8")
        fed = load_federation(path, allow_small_keys=key_bits < 2048)
        metrics = run_job(
            fed, folder / "run", resume=False, quiet=True, allow_small_keys=key_bits < 2048
        )
    return float(metrics["seconds_per_phase"]["train"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--phe-batches", type=int, default=1)
    parser.add_argument("--scaling", action="store_true")
    parser.add_argument("--network", action="store_true")
    args = parser.parse_args()
    if not (data_dir() / "uci_default_credit" / "UCI_Credit_Card.csv").exists():
        print("skipped: shared data not found (set FEDCREDIT_DATA)", file=sys.stderr)
        return 0
    settings = TrainSettings(batch_size=4096, test_fraction=0.25, seed=7)
    keys = KeyHolder(allow_small_keys=args.key_bits < 2048)
    public, private = generate_keypair(args.key_bits, allow_small=args.key_bits < 2048)
    keys.use_keypair("bench", public, private)
    lender, hosts = uci_parties(settings)
    for party in (lender, *hosts):
        party.public_key = public
        party.weights = np.random.default_rng(1).normal(scale=0.1, size=party.n_weights)
    print(f"fedcredit epoch on {len(lender.split.train):,} training rows ...", file=sys.stderr)
    ours = fedcredit_epoch(lender, hosts, keys)
    print(f"phe reference on {args.phe_batches} batch(es) ...", file=sys.stderr)
    phe_s, phe_rows = phe_batches(lender, hosts, args.key_bits, args.phe_batches)
    phe_epoch = phe_s * len(lender.split.train) / phe_rows
    report: dict[str, Any] = {
        "benchmark": "train_epoch",
        "dataset": "uci_three_institutions",
        "key_bits": args.key_bits,
        "rows_train": len(lender.split.train),
        "batch_size": settings.batch_size,
        "cores": os.cpu_count(),
        "workers": get_workers(),
        "fedcredit_epoch_s": round(ours["seconds"], 2),
        "seconds_per_phase": ours["phases"],
        "phe_epoch_s": round(phe_epoch, 1),
        "phe_extrapolated": True,
        "phe_measured_rows": phe_rows,
        "ratio": round(phe_epoch / ours["seconds"], 1),
        "x_scale_bits": settings.x_scale_bits,
    }
    if args.network:
        print(
            "one epoch of a real `fedcredit run` (node processes, mutual TLS) ...", file=sys.stderr
        )
        run_train_s = network_epoch(args.key_bits, settings)
        report["run_epoch_s"] = round(run_train_s, 2)
        report["seconds_per_phase"]["network"] = round(max(0.0, run_train_s - ours["seconds"]), 2)
    if args.scaling:
        scaling = []
        with tempfile.TemporaryDirectory() as tmp:
            for customers in (10_000, 100_000):
                l2, h2 = synthetic_parties(customers, settings, Path(tmp) / str(customers))
                for party in (l2, *h2):
                    party.public_key = public
                result = fedcredit_epoch(l2, h2, keys)
                scaling.append(
                    {
                        "customers": customers,
                        "rows_train": len(l2.split.train),
                        "epoch_s": round(result["seconds"], 1),
                    }
                )
        per_row = scaling[-1]["epoch_s"] / scaling[-1]["rows_train"]
        scaling.append(
            {
                "customers": 1_000_000,
                "rows_train": int(scaling[-1]["rows_train"] * 10),
                "epoch_s": round(per_row * scaling[-1]["rows_train"] * 10, 0),
                "extrapolated": True,
            }
        )
        report["scaling"] = scaling
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
