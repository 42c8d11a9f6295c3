"""A short, self-contained HTML report of a model: figures, metrics and tables.

Images are embedded as base64 data URIs so the single file can be mailed or archived.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedcredit.errors import DataError

Table = Sequence[Mapping[str, Any]]

_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:60em}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:0.2em 0.6em;text-align:right}"
    "th{background:#eee}img{max-width:100%;margin:0.5em 0}"
)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping | list | tuple):
        return html.escape(json.dumps(value, default=str))
    return html.escape(str(value))


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{_cell(value)}</td></tr>"
        for key, value in metrics.items()
    )
    return f"<table>{rows}</table>"


def _table(title: str, rows: Table) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(str(key) for key in row if str(key) not in columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(c, ''))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>"


def _image(path: str) -> str:
    source = Path(path)
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read report image {source}: {exc.strerror}") from exc
    kind = "svg+xml" if source.suffix.lower() == ".svg" else source.suffix.lower().lstrip(".")
    encoded = base64.b64encode(data).decode("ascii")
    alt = html.escape(source.stem)
    return f'<img alt="{alt}" src="data:image/{kind or "png"};base64,{encoded}">'


def write_html_report(
    out_dir: str | Path,
    metrics: Mapping[str, Any],
    images: Sequence[str],
    tables: Mapping[str, Table] | None = None,
    title: str = "fedcredit model report",
    filename: str = "report.html",
) -> Path:
    """Write ``out_dir/filename`` and return its path.

    ``metrics`` is shown as a two-column table (for example ``evaluate``'s output),
    ``images`` are PNG (or SVG) files embedded inline, ``tables`` maps a title to rows
    (each a mapping of column to value; for example a points table).
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Metrics</h2>",
        _metrics_table(metrics),
        *(_image(path) for path in images),
        *(_table(name, rows) for name, rows in (tables or {}).items()),
        "</body></html>",
    ]
    target = directory / filename
    target.write_text("\n".join(parts), encoding="utf-8")
    return target
