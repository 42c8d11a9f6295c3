"""``fedcredit demo``: three synthetic institutions, real nodes on 127.0.0.1, the whole story."""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from pathlib import Path

from fedcredit.cli.decisions import NodeRun, decide_batch
from fedcredit.cli.demo_compare import compare_with_own_columns
from fedcredit.cli.demo_trees import run_trees
from fedcredit.cli.jobs import run_job, score_batch
from fedcredit.cli.progress import say
from fedcredit.config import Federation, load_federation
from fedcredit.data.synthetic import write_institutions
from fedcredit.decision import Decision
from fedcredit.errors import ConfigError

#: The demo's [policy]: every other key takes its default (docs/DECISIONS.md).
APPROVE_SCORE = 560
REFER_SCORE = 540
BEST_OFFER_SCORE = 600


#: What ``fedcredit demo`` adds to its federation file. The default cut-off (approve at 600,
#: about 2 % risk) approves nobody in this synthetic population (its best scores are near
#: 595); a lender sets its own from its gains table.
DEMO_POLICY = f"""
[policy]
approve_score = {APPROVE_SCORE}
refer_score = {REFER_SCORE}
best_offer_score = {BEST_OFFER_SCORE}
"""


def write_demo_federation(
    folder: Path, data: dict[str, Path], *, key_bits: int, epochs: int
) -> Path:
    """A federation file for the three synthetic institutions (ports are placeholders: the
    demo's nodes listen on ephemeral ports and are told each other's real addresses); no
    ``[policy]`` (the demo adds ``DEMO_POLICY``)."""
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
    fed_path.write_text(fed_path.read_text(encoding="utf-8") + DEMO_POLICY, encoding="utf-8")
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
    comparison = _compare(fed, folder / "run", metrics, quiet=quiet)
    trees = run_trees(
        fed_path, folder / "run-trees", metrics, quiet=quiet, allow_small_keys=allow_small_keys
    )
    say("4. scoring five applicants through the lender's online scoring RPC", quiet=quiet)
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
    result: dict[str, object] = {
        "folder": str(folder),
        "metrics": metrics,
        "comparison": comparison,
        "trees": trees,
        "scores": scored,
    }
    debt = _debt_demo(folder, quiet=quiet)
    if debt is not None:
        result["debt"] = debt
    decisions = _decide(fed, folder, sample, quiet=quiet, allow_small_keys=allow_small_keys)
    result["decisions"] = [d.to_dict() for d in decisions]
    if as_json:
        print(json.dumps(result, default=str))
    if out is None and not as_json:
        say(f"(files kept in {folder}; remove with: rm -r {folder})", quiet=quiet)
    shutil.rmtree(folder / "run" / "state", ignore_errors=True)
    shutil.rmtree(folder / "run-trees" / "state", ignore_errors=True)
    return result


def _debt_demo(folder: Path, *, quiet: bool) -> object:
    try:
        from fedcredit.cli.debt import run_debt_demo
    except ImportError:
        return None
    say("5. multi-lender debt detection across five lenders", quiet=quiet)
    return run_debt_demo(folder / "debt", quiet=quiet)


def _compare(
    fed: Federation, run_dir: Path, metrics: dict[str, object], *, quiet: bool
) -> dict[str, object]:
    """Step 3: the federated model next to the lender's own-columns model (before the run's
    state folder, which holds the lender's evaluation rows, is removed)."""
    say("3. why join: the same lender trained on its own columns alone", quiet=quiet)
    if fed.policy is None:
        raise ConfigError(f"{fed.path.name}: the demo needs its [policy] table")
    c = compare_with_own_columns(fed, run_dir, dict(metrics), fed.policy)
    own, joined = c["lender_alone"], c["federated"]
    say(
        "   lender alone: trained in plaintext in this run on its own columns only, the way the\n"
        "   federation trains (same customers and split, same bins and WOE, same [train] settings\n"
        "   and optimizer, same kept-epoch rule)",
        quiet=quiet,
    )
    say(f"   on the same {c['held_out']:,} held-out customers:", quiet=quiet)
    say(f"     {'':<14}{'AUC':>8}{'KS':>8}{'approved':>10}", quiet=quiet)
    for label, row in (("federated", joined), ("lender alone", own)):
        say(
            f"     {label:<14}{row['auc']:>8.4f}{row['ks']:>8.4f}{row['approval_rate']:>10.1%}",
            quiet=quiet,
        )
    say(
        f"   approved: the most customers each model can approve, best first, with at most "
        f"{c['default_rate']:.1%} of them\n"
        f"   defaulting (the federated model's rate at [policy] approve_score "
        f"{c['approve_score']:g}, where it approves {joined['approval_rate_at_policy']:.1%})",
        quiet=quiet,
    )
    return c


def _decide(
    fed: Federation, folder: Path, ids: list[str], *, quiet: bool, allow_small_keys: bool
) -> list[Decision]:
    """The last step: the five applicants through ``fedcredit decide``'s path."""
    say("6. decisions for the five applicants (fedcredit decide: score, debt check, [policy])",
        quiet=quiet)  # fmt: skip
    out = folder / "decisions.csv"
    decisions = decide_batch(
        fed, folder / "run" / "model", ids, out, NodeRun(True, allow_small_keys=allow_small_keys)
    )
    for d in decisions:
        offer = (
            f" limit {d.limit:,} at {d.apr:.1%} APR, {'/'.join(map(str, d.instalments))} "
            "instalments"
            if d.offer is not None
            else ""
        )
        reasons = f" ({'; '.join(d.reasons)})" if d.reasons else ""
        say(f"   {d.applicant_id}: {d.decision}{offer}{reasons}", quiet=quiet)
    say(f"   written to {out}", quiet=quiet)
    return decisions
