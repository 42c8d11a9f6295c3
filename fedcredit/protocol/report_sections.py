"""The sections of ``report.html`` (``report_page``): each function turns the job's figures
into fragments of the page, and raises one of ``UNUSABLE`` when its figures are malformed
(they may come from a peer), which the page shows as a note.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedcredit.errors import DataError
from fedcredit.model.metrics import summarize
from fedcredit.model.report import figure, key_values, link, paragraph, table

TRAINING_PLOT = "training.png"
CALIBRATION_PLOT = "calibration.png"
DRIVER_PLOTS = (TRAINING_PLOT, CALIBRATION_PLOT)
"""The plots the report's writer draws itself, from the figures (never a peer's image)."""
MONITORING_PAGES = ("monitor.html", "monitor/monitor.html")
"""Where ``write_report`` looks for a monitoring page next to the report, when not told."""
FILES = (
    ("metrics.json", "every figure of the run (JSON)"),
    ("iv.html", "information value report"),
    ("iv.csv", "information value report (CSV)"),
    ("model/manifest.json", "model manifest (file names and digests of each part)"),
)

# Metrics shown in their own sections, left out of the table of every other figure.
SHOWN_ELSEWHERE = frozenset(
    {
        "confusion",
        "gains",
        "calibration",
        "grades",
        "decisions",
        "iv",
        "train_taylor_loss",
        "validation_log_loss",
        "parties",
        "seconds_per_phase",
        "features_per_party",
        "binned_features",
    }
)
#: The decisions of ``fedcredit.decision``, in the order the mix table shows them.
DECISION_KINDS = ("approve", "refer", "decline")
NO_POLICY = (
    "No decision policy was given for this report: add a [policy] table to the lender's "
    "federation file (an empty one takes the defaults; parties/README.md) and run the job "
    "again to see how many held-out customers of each grade it would approve, refer and "
    "decline."
)
UNUSABLE = (
    KeyError,
    IndexError,
    TypeError,
    ValueError,
    AttributeError,
    OverflowError,
    DataError,
)


def number(value: Any) -> float:
    """A finite number from a peer's JSON, or ValueError (``True`` is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return float(value)


def table_rows(
    metrics: Mapping[str, Any], key: str, numeric: Sequence[str]
) -> list[Mapping[str, Any]]:
    """``metrics[key]`` as a list of mappings whose ``numeric`` fields are finite numbers."""
    rows = metrics[key]
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{key} is not a list of rows")
    for row in rows:
        if not isinstance(row, Mapping):
            raise ValueError(f"a row of {key} is not a mapping")
        for name in numeric:
            number(row[name])
    return rows


def _fixed(value: Any, digits: int) -> str | None:
    """A number with ``digits`` decimals, None for a missing one."""
    return None if value is None else f"{number(value):.{digits}f}"


def percent(value: Any) -> str:
    return f"{100 * number(value):.1f} %"


def interval(interval: Any) -> str | None:
    if interval is None:
        return None
    lo, hi = (number(v) for v in interval)
    return f"{lo:.3f} to {hi:.3f}"


def job(metrics: Mapping[str, Any]) -> list[str]:
    parties: Mapping[str, Any] = metrics["parties"]
    columns = metrics.get("features_per_party") or {}
    binned = metrics.get("binned_features") or {}
    rows = [
        {
            "party": name,
            "role": "lender (labels)" if part.get("has_label") else "partner",
            "columns": columns.get(name),
            "model features": binned.get(name, part.get("features")),
        }
        for name, part in parties.items()
    ]
    counts = {
        "job": metrics.get("job_id"),
        "rows aligned (common customers)": metrics["rows_aligned"],
        "rows for training": metrics.get("rows_train"),
        "rows for validation": metrics.get("rows_validation"),
        "rows held out for evaluation": metrics.get("rows_test"),
        "Paillier key size (bits)": str(metrics["key_bits"]) if "key_bits" in metrics else None,
        **(
            {"trees grown": metrics["trees_grown"], "trees kept": metrics.get("trees_kept")}
            if "trees_grown" in metrics
            else {"epochs run": metrics.get("epochs"), "epoch kept": metrics.get("kept_epoch")}
        ),
        "stopped by": metrics.get("stopped"),
        "seconds, whole job": round(number(metrics.get("seconds", math.nan)), 1)
        if "seconds" in metrics
        else None,
    }
    phases = [
        {"phase": name, "seconds": round(number(seconds), 2)}
        for name, seconds in dict(metrics.get("seconds_per_phase") or {}).items()
    ]
    body = [table(rows, caption="Parties"), key_values(counts, caption="Rows, key and time")]
    if phases:
        body.append(table(phases, caption="Seconds per phase"))
    return body


def discrimination(metrics: Mapping[str, Any], images: Mapping[str, Path]) -> list[str]:
    auc_ci = metrics.get("auc_ci95")
    ks_ci = metrics.get("ks_ci95")
    rows = [
        {
            "figure": "AUC",
            "value": f"{number(metrics['auc']):.3f}",
            "95% interval": interval(auc_ci),
            "method": "DeLong",
        },
        {
            "figure": "KS",
            "value": f"{number(metrics['ks']):.3f}",
            "95% interval": interval(ks_ci),
            "method": f"stratified bootstrap, {metrics.get('ks_resamples')} resamples",
        },
        {"figure": "log-loss", "value": _fixed(metrics.get("log_loss"), 4), "95% interval": None},
    ]
    note = (
        f"On {int(number(metrics['rows'])):,} held-out rows with "
        f"{int(number(metrics['positives'])):,} defaults."
    )
    plots = [("roc.png", "ROC curve"), ("ks.png", "KS: cumulative defaults and goods")]
    figures = [figure(images[name], caption) for name, caption in plots if name in images]
    return [table(rows, caption=note), *figures]


def gains(metrics: Mapping[str, Any], images: Mapping[str, Path]) -> list[str]:
    numeric = ("band", "score_min", "score_max", "rows", "defaults", "bad_rate")
    rows = table_rows(metrics, "gains", (*numeric, "cum_rows_share", "cum_defaults_share"))
    shown = [
        {
            **{k: row[k] for k in numeric if k != "bad_rate"},
            "bad rate": percent(row["bad_rate"]),
            "rows, cumulative": percent(row["cum_rows_share"]),
            "defaults caught, cumulative": percent(row["cum_defaults_share"]),
        }
        for row in rows
    ]
    columns = [
        ("band", "band (1 = riskiest)"),
        ("score_min", "lowest score"),
        ("score_max", "highest score"),
        ("rows", "rows"),
        ("defaults", "defaults"),
        ("bad rate", "bad rate"),
        ("rows, cumulative", "share of rows, cumulative"),
        ("defaults caught, cumulative", "share of defaults caught, cumulative"),
    ]
    caption = (
        "Held-out rows in bands of about a tenth each, lowest scores first: declining a band "
        "and every band above it catches the cumulative share of defaults."
    )
    body = [table(shown, columns, caption=caption)]
    if "scores.png" in images:
        body.append(figure(images["scores.png"], "Score distribution, goods and defaults"))
    return body


def calibration(metrics: Mapping[str, Any], images: Mapping[str, Path]) -> list[str]:
    rows = table_rows(metrics, "calibration", ("band", "rows", "defaults", "predicted", "observed"))
    shown = [
        {
            "band": row["band"],
            "rows": row["rows"],
            "defaults": row["defaults"],
            "predicted": percent(row["predicted"]),
            "observed": percent(row["observed"]),
        }
        for row in rows
    ]
    columns = [
        ("band", "band (1 = riskiest)"),
        ("rows", "rows"),
        ("defaults", "defaults"),
        ("predicted", "predicted default rate"),
        ("observed", "observed default rate"),
    ]
    body = [table(shown, columns, caption="By band of predicted risk, about a tenth each")]
    if CALIBRATION_PLOT in images:
        body.append(figure(images[CALIBRATION_PLOT], "Predicted against observed default rate"))
    return body


def confusion(metrics: Mapping[str, Any]) -> list[str]:
    counts = metrics["confusion"]
    tp, fp, tn, fn = (int(number(counts[k])) for k in ("tp", "fp", "tn", "fn"))
    rows = [
        {"": "actual default", "predicted default": tp, "predicted good": fn, "total": tp + fn},
        {"": "actual good", "predicted default": fp, "predicted good": tn, "total": fp + tn},
        {
            "": "total",
            "predicted default": tp + fp,
            "predicted good": fn + tn,
            "total": tp + fp + tn + fn,
        },
    ]
    threshold = number(metrics["threshold"])
    caption = f"Predicted default when the probability of default is at least {threshold:g}"
    accuracy = f"Accuracy at that threshold: {percent(metrics['accuracy'])}."
    return [table(rows, caption=caption), paragraph(accuracy)]


def grades(metrics: Mapping[str, Any]) -> list[str]:
    rows = [
        {**row, "bad_rate": None if row.get("bad_rate") is None else percent(row["bad_rate"])}
        for row in table_rows(metrics, "grades", ("rows", "defaults"))
    ]
    columns = [
        ("grade", "grade"),
        ("score_from", "lowest score"),
        ("rows", "rows"),
        ("defaults", "defaults"),
        ("bad_rate", "bad rate"),
    ]
    return [table(rows, columns, caption="Held-out rows per grade")]


def decision_mix(decisions: Any) -> list[str]:
    """Grade -> decision -> count, as a table with each decision's share, the approval rate
    and a total row; a note saying how to get it when there is none."""
    if decisions is None:
        return [paragraph(NO_POLICY, css="note")]
    if not isinstance(decisions, Mapping) or not decisions:
        raise ValueError("decisions is not a mapping of grades")
    kinds = list(DECISION_KINDS)
    for mix in decisions.values():
        kinds.extend(str(k) for k in mix if str(k) not in kinds)
    counted = [
        (str(grade), {kind: int(number(mix.get(kind, 0))) for kind in kinds})
        for grade, mix in decisions.items()
    ]
    totals = {kind: sum(mix[kind] for _, mix in counted) for kind in kinds}
    rows = [_mix_row(grade, mix) for grade, mix in [*counted, ("all grades", totals)]]
    columns = [
        ("grade", "grade"),
        ("applicants", "held-out rows"),
        *((kind, kind) for kind in kinds),
        ("approval rate", "approval rate"),
    ]
    caption = (
        "Held-out rows per grade as the lender's [policy] would decide them on the score alone "
        "(fedcredit decide's rules; no loans-book check on held-out rows)"
    )
    return [table(rows, columns, caption=caption, marked=[len(rows) - 1])]


def _mix_row(grade: str, mix: Mapping[str, int]) -> dict[str, Any]:
    total = sum(mix.values())
    row: dict[str, Any] = {"grade": grade, "applicants": f"{total:,}"}
    for kind, count in mix.items():
        row[kind] = f"{count:,} ({100 * count / total:.1f} %)" if total else "0"
    row["approval rate"] = f"{100 * mix.get('approve', 0) / total:.1f} %" if total else None
    return row


def training(metrics: Mapping[str, Any], images: Mapping[str, Path]) -> list[str]:
    train = [number(v) for v in metrics.get("train_taylor_loss") or []]
    validation = [number(v) for v in metrics.get("validation_log_loss") or []]
    if not train and not validation:
        raise ValueError("no losses")
    kept = metrics.get("kept_epoch")
    rows = [
        {
            "epoch": epoch,
            "taylor": _fixed(train[epoch - 1], 4) if epoch <= len(train) else None,
            "validation": _fixed(validation[epoch - 1], 4) if epoch <= len(validation) else None,
            "kept": "kept" if epoch == kept else "",
        }
        for epoch in range(1, max(len(train), len(validation)) + 1)
    ]
    columns = [
        ("epoch", "epoch"),
        ("taylor", "Taylor loss (train, last batch)"),
        ("validation", "log-loss (validation)"),
        ("kept", "model kept"),
    ]
    marked = [epoch - 1 for epoch in range(1, len(rows) + 1) if epoch == kept]
    body = [
        paragraph(
            "The Taylor loss is the secure approximation the lender can compute; it grows with "
            "the size of the scores even while the true log-loss falls, so the validation "
            f"log-loss picks the model kept ({metrics.get('kept_by', 'rule not given')}).",
            css="note",
        ),
        table(rows, columns, marked=marked),
    ]
    if TRAINING_PLOT in images:
        body.insert(0, figure(images[TRAINING_PLOT], "Loss per epoch, the kept epoch dotted"))
    return body


def binning(
    metrics: Mapping[str, Any], points: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[str]:
    rows = table_rows(metrics, "iv", ("iv",))
    columns = [
        ("party", "party"),
        ("column", "column"),
        ("iv", "information value"),
        ("fine_bins", "fine bins"),
        ("bins", "bins"),
        ("kept", "kept"),
    ]
    ordered = [
        {**row, "iv": f"{number(row['iv']):.3f}"}
        for row in sorted(rows, key=lambda r: -number(r["iv"]))
    ]
    body = [table(ordered, columns, caption="Information value per column, strongest first")]
    for party, party_points in points.items():
        # A column's name on its first bin only, so each column reads as one block.
        columns_seen = [None, *(row["column"] for row in party_points)]
        shown = [
            {**row, "column": "" if row["column"] == before else row["column"]}
            for row, before in zip(party_points, columns_seen, strict=False)
        ]
        body.append(
            table(
                shown,
                [("column", "column"), ("label", "bin"), ("points", "points")],
                caption=f"Points per bin: {party}",
                css="side",
            )
        )
    if not points:
        body.append(paragraph("Each party's points table stays in its own model part.", css="note"))
    return body


def monitoring(folder: Path, page: str | None) -> list[str]:
    pages = [page] if page else [p for p in MONITORING_PAGES if (folder / p).is_file()]
    if not pages:
        return [
            paragraph("No monitoring page yet: run fedcredit monitor and link it here.", css="note")
        ]
    body = [
        paragraph("Population stability of the scored customers against training:"),
        link(folder, pages[0], f"monitoring page ({pages[0]})"),
    ]
    with contextlib.suppress(OSError, *UNUSABLE):
        figures = json.loads((folder / pages[0]).with_name("monitor.json").read_text("utf-8"))
        unstable = [f for f in figures["csi"] if f["status"] != "stable"]
        body.insert(
            1,
            paragraph(
                f"Overall {figures['status']}: score PSI {number(figures['score_psi']):.4f} "
                f"({figures['score_status']}) on {int(number(figures['scored'])):,} applicants; "
                f"{len(unstable)} of {len(figures['csi'])} columns not stable."
            ),
        )
    return body


def files(folder: Path) -> list[str]:
    present = [(href, text) for href, text in FILES if (folder / href).is_file()]
    if not present:
        raise ValueError("no files")
    return ["<ul>" + "".join(f"<li>{link(folder, h, t)}</li>" for h, t in present) + "</ul>"]


def other(metrics: Mapping[str, Any]) -> list[str]:
    shown: dict[str, Any] = {}
    with contextlib.suppress(*UNUSABLE):
        shown["summary"] = summarize(metrics)
    shown.update((k, v) for k, v in metrics.items() if k not in SHOWN_ELSEWHERE)
    return [key_values(shown)]
