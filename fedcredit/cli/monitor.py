"""``fedcredit monitor``: does the population being scored still look like the training one?

It checks the model folder first: a model saved before monitoring existed has no reference and
is refused in one line before any node starts. Then it starts the federation's local nodes
loaded with the model, as ``fedcredit score`` does, scores the ids through the lender's node
(the score's PSI against the deciles stored with the lender's model part) and asks every party
for the CSI of each of its own columns (``fedcredit.driver.monitor``). It writes
``OUT/monitor.json``, the score distributions' PNG and an HTML page; when ``OUT`` lies inside
the run folder of the model, that run's ``report.html`` is rendered again linking the page.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedcredit.cli.decisions import NodeRun
from fedcredit.cli.progress import Progress
from fedcredit.config import Federation
from fedcredit.decision.monitoring import MONITOR_HTML, MONITOR_JSON, Population, write_monitor
from fedcredit.decision.stability import ScoreBaseline, StabilityReport, score_stability
from fedcredit.driver.monitor import column_stability, population_scores
from fedcredit.driver.scoring import scoring_session
from fedcredit.errors import ConfigError, DataError, FedCreditError
from fedcredit.protocol.report import REPORT
from fedcredit.protocol.report_files import rewrite_report

NO_REFERENCE = (
    "was saved without a stability reference (trained before fedcredit monitor existed): "
    "train it again with fedcredit run to monitor it"
)


def read_baseline(fed: Federation, model_dir: Path) -> ScoreBaseline:
    """The score deciles stored with the lender's model part; ``ConfigError`` in one line for
    a missing model or one saved without a reference (any party's part found here too)."""
    lender = fed.lender.name
    path = model_dir / f"{lender}.json"
    if not path.is_file():
        raise ConfigError(f"--model {model_dir}: no model of the lender {lender!r} there")
    parts: dict[str, dict[str, Any]] = {}
    for party in fed.parties:
        part_path = model_dir / f"{party.name}.json"
        if part_path.is_file():
            try:
                parts[party.name] = json.loads(part_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"--model {model_dir}: cannot read {part_path.name}") from exc
    baseline = parts[lender].get("score_baseline")
    missing = [n for n, part in parts.items() if "stability_reference" not in part]
    if not isinstance(baseline, dict) or missing:
        raise ConfigError(f"--model {model_dir}: the model {NO_REFERENCE}")
    try:
        return ScoreBaseline.from_dict(baseline)
    except DataError as exc:
        raise ConfigError(f"--model {model_dir}: the lender's score baseline: {exc}") from exc


def monitor_batch(
    fed: Federation, model_dir: Path, ids: Sequence[str], out: Path, run: NodeRun
) -> dict[str, Any]:
    """Score ``ids``, ask every party for its columns' CSI, write the files; what
    ``monitor.json`` holds."""
    baseline = read_baseline(fed, model_dir)
    progress = Progress(quiet=run.quiet)
    run_dir = out / ".monitor-nodes"
    parties = [fed.lender.name, *(p.name for p in fed.hosts)]
    with scoring_session(
        fed,
        model_dir,
        run_dir,
        insecure=run.insecure,
        allow_small_keys=run.allow_small_keys,
    ) as session:
        progress("phase", {"message": f"  scoring {len(ids):,} applicants"})
        scores, _ = population_scores(session, ids)
        if scores.size == 0:
            raise DataError("none of the applicants could be scored: no population to compare")
        progress("phase", {"message": f"  asking {', '.join(parties)} for their columns' CSI"})
        try:
            features = column_stability(session, parties, ids)
        except FedCreditError as exc:
            raise _explained(exc) from exc
    report = StabilityReport(score_stability(baseline, scores), tuple(features))
    content = write_monitor(out, report, Population(len(ids), int(scores.size)))
    shutil.rmtree(run_dir, ignore_errors=True)
    progress("phase", {"message": f"  wrote {out / MONITOR_JSON}"})
    linked = link_from_report(model_dir, out)
    if linked is not None:
        progress("phase", {"message": f"  linked it from {linked}"})
    return content


def link_from_report(model_dir: Path, out: Path) -> Path | None:
    """When ``--out`` lies inside the run folder that holds ``--model`` and its report, render
    that ``report.html`` again linking the new page (``rewrite_report``: no party is asked);
    returns the report's path, or None when there is no such report."""
    run = model_dir.resolve().parent
    if not (run / REPORT).is_file() or not (run / "metrics.json").is_file():
        return None
    try:
        page = (out / MONITOR_HTML).resolve().relative_to(run)
    except ValueError:
        return None
    rewrite_report(run, monitoring=page.as_posix())
    return run / REPORT


def _explained(exc: FedCreditError) -> FedCreditError:
    """A party's refusal for want of a reference, in the command's own words."""
    if "no stability reference" in str(exc):
        return ConfigError(f"a party's model part {NO_REFERENCE} ({exc})")
    return exc


__all__ = ["link_from_report", "monitor_batch", "read_baseline"]
