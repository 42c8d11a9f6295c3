"""``fedcredit demo``: three synthetic institutions, real nodes on 127.0.0.1, the whole story."""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from pathlib import Path

from fedcredit.cli.jobs import run_job, score_batch
from fedcredit.cli.progress import say
from fedcredit.config import load_federation
from fedcredit.data.synthetic import write_institutions


def write_demo_federation(
    folder: Path, data: dict[str, Path], *, key_bits: int, epochs: int
) -> Path:
    """A federation file for the three synthetic institutions (ports are placeholders: the
    demo's nodes listen on ephemeral ports and are told each other's real addresses)."""
    text = f"""[federation]
name = "demo"
key_bits = {key_bits}

[coordinator]
address = "127.0.0.1:50050"

[[party]]
name = "lender"
role = "lending"
address = "127.0.0.1:50051"
data = "{data["lender"]}"
id_column = "id"
label_column = "default"

[[party]]
name = "ecommerce"
role = "ecommerce"
address = "127.0.0.1:50052"
data = "{data["ecommerce"]}"
id_column = "id"

[[party]]
name = "payments"
role = "payments"
address = "127.0.0.1:50053"
data = "{data["payments"]}"
id_column = "id"

[train]
epochs = {epochs}
batch_size = 4096
l2 = 0.01
test_fraction = 0.25
validation_fraction = 0.1
early_stopping_rounds = 3
seed = 7

[binning]
"""
    path = folder / "federation.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run_demo(
    *,
    customers: int,
    epochs: int,
    key_bits: int,
    out: Path | None,
    as_json: bool,
    allow_small_keys: bool = False,
) -> dict[str, object]:
    quiet = as_json
    folder = out if out is not None else Path(tempfile.mkdtemp(prefix="fedcredit-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    say(f"fedcredit demo in {folder}", quiet=quiet)
    say(
        f"1. three institutions' data: {customers:,} synthetic customers (lender, e-commerce, payments)",
        quiet=quiet,
    )
    data = write_institutions(folder / "data", customers, seed=7)
    fed_path = write_demo_federation(folder, data, key_bits=key_bits, epochs=epochs)
    fed = load_federation(fed_path, allow_small_keys=allow_small_keys)
    say("2. certificates, a coordinator and three party nodes as separate processes", quiet=quiet)
    metrics = run_job(
        fed, folder / "run", resume=False, quiet=quiet, allow_small_keys=allow_small_keys
    )
    say(
        f"   federated model: AUC {metrics['auc']:.4f}, KS {metrics['ks']:.4f} on "
        f"{metrics['rows_test']:,} held-out customers; report in {folder / 'run' / 'report.html'}",
        quiet=quiet,
    )
    say("3. scoring five applicants through the lender's online scoring RPC", quiet=quiet)
    ids_path = folder / "applicants.csv"
    with open(data["lender"], newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        sample = [row["id"] for _, row in zip(range(5), reader, strict=False)]
    ids_path.write_text("id\n" + "\n".join(sample) + "\n", encoding="utf-8")
    scores_path = folder / "scores.csv"
    score_batch(
        fed,
        folder / "run" / "model",
        sample,
        scores_path,
        quiet=True,
        allow_small_keys=allow_small_keys,
    )
    with open(scores_path, newline="", encoding="utf-8") as handle:
        scored = list(csv.DictReader(handle))
    for row in scored:
        say(
            f"   {row['id']}: score {row['score']} grade {row['grade']} (p={row['probability']}) reasons {row['reasons']}",
            quiet=quiet,
        )
    result: dict[str, object] = {"folder": str(folder), "metrics": metrics, "scores": scored}
    debt = _debt_demo(folder, quiet=quiet)
    if debt is not None:
        result["debt"] = debt
    if as_json:
        print(json.dumps(result, default=str))
    if out is None and not as_json:
        say(f"(files kept in {folder}; remove with: rm -r {folder})", quiet=quiet)
    shutil.rmtree(folder / "run" / "state", ignore_errors=True)
    return result


def _debt_demo(folder: Path, *, quiet: bool) -> object:
    try:
        from fedcredit.cli.debt import run_debt_demo
    except ImportError:
        return None
    say("4. multi-lender debt detection across five lenders", quiet=quiet)
    return run_debt_demo(folder / "debt", quiet=quiet)
