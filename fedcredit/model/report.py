"""Self-contained HTML pages of a model: sections of text, tables, figures and links.

Images are embedded as base64 data URIs so the single file can be mailed or archived. Every
fragment of a page is made by a function here, which escapes all text it is given; a link
must name a file that exists inside the page's folder when the page is written, so every
link of a written page resolves.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from fedcredit.errors import DataError

Table = Sequence[Mapping[str, Any]]

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:64em;padding:0 1em;"
    "color:#222;line-height:1.4}"
    "h1{margin-bottom:0.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}"
    "table{border-collapse:collapse;margin:0.8em 0}"
    "td,th{border:1px solid #ccc;padding:0.25em 0.7em;text-align:right;vertical-align:top}"
    "td{white-space:nowrap;font-variant-numeric:tabular-nums}"
    "th{background:#f0f0f0}td:first-child,th:first-child,.t{text-align:left}"
    "td.t{white-space:normal}"
    "tr.marked td{background:#fff4cc;font-weight:bold}"
    "caption{caption-side:top;text-align:left;color:#555;padding-bottom:0.3em}"
    "table.side{display:inline-table;vertical-align:top;margin-right:1.5em}"
    "figure{display:inline-block;margin:0.5em 1em 0.5em 0;vertical-align:top}"
    "figure img{max-width:100%;width:30em}figure.wide img{width:48em}"
    "figcaption{color:#555;font-size:0.9em}"
    ".note{color:#555}.summary{font-size:1.15em}nav ul{columns:2}"
)


@dataclass(frozen=True)
class Section:
    """One ``<h2>`` section: ``title``, its ``anchor`` (the id a contents link names) and its
    ``body``, fragments made by ``paragraph``, ``table``, ``figure`` and ``link``."""

    title: str
    anchor: str
    body: Sequence[str]


def cell(value: Any) -> str:
    """A table cell's text, escaped: integers with thousands separators, floats to six
    significant digits (never ``-0``), a list of numbers likewise, ``None`` as a dash."""
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value + 0.0:.6g}"  # + 0.0 turns -0.0 into 0.0
    if isinstance(value, list | tuple) and all(_is_number(v) for v in value):
        return "[" + ", ".join(cell(v) for v in value) + "]"
    if isinstance(value, Mapping | list | tuple):
        return html.escape(json.dumps(value, default=str))
    return html.escape(str(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_WORD = re.compile(r"[A-Za-z_]")


def is_text(value: Any) -> bool:
    """Whether a cell reads as words (left-aligned) rather than a figure: a string with a
    letter in it, once ``inf`` and `` to `` (of an interval or a range) are set aside."""
    if not isinstance(value, str):
        return isinstance(value, Mapping)
    return bool(_WORD.search(value.replace("inf", "").replace(" to ", "")))


def paragraph(text: str, *, css: str = "") -> str:
    """``<p>`` of ``text``, escaped; ``css`` a class name (``note``, ``summary``)."""
    attribute = f' class="{html.escape(css)}"' if css else ""
    return f"<p{attribute}>{html.escape(text)}</p>"


def table(
    rows: Table,
    columns: Sequence[tuple[str, str]] | None = None,
    *,
    caption: str = "",
    marked: Sequence[int] = (),
    css: str = "",
) -> str:
    """A table of ``rows`` (each a mapping of column to value).

    ``columns`` are ``(key, heading)`` pairs in order; by default every key of the rows under
    its own name. Rows whose index is in ``marked`` are highlighted (a kept epoch, say). A
    column of words is left-aligned, one of figures right-aligned; ``css`` is a class name
    (``side``: next to the following table).
    """
    if columns is None:
        keys: list[str] = []
        for row in rows:
            keys.extend(str(key) for key in row if str(key) not in keys)
        columns = [(key, key) for key in keys]
    # The first column is left-aligned anyway (the style sheet).
    words = {key for key, _ in columns[1:] if any(is_text(row.get(key)) for row in rows)}

    def attribute(key: str) -> str:
        return ' class="t"' if key in words else ""

    head = "".join(f"<th{attribute(key)}>{html.escape(heading)}</th>" for key, heading in columns)
    body = "".join(
        ('<tr class="marked">' if index in marked else "<tr>")
        + "".join(f"<td{attribute(key)}>{cell(row.get(key))}</td>" for key, _ in columns)
        + "</tr>"
        for index, row in enumerate(rows)
    )
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    kind = f' class="{html.escape(css)}"' if css else ""
    return f"<table{kind}>{title}<tr>{head}</tr>{body}</table>"


def key_values(values: Mapping[str, Any], *, caption: str = "") -> str:
    """A two-column table: one row per key (a heading cell) and its value."""
    words = ' class="t"'
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th>"
        f"<td{words if is_text(value) else ''}>{cell(value)}</td></tr>"
        for key, value in values.items()
    )
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{title}{rows}</table>"


def figure(path: str | Path, caption: str = "") -> str:
    """The image at ``path`` embedded as a data URI, with ``caption`` under it."""
    source = Path(path)
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read report image {source}: {exc.strerror}") from exc
    kind = "svg+xml" if source.suffix.lower() == ".svg" else source.suffix.lower().lstrip(".")
    encoded = base64.b64encode(data).decode("ascii")
    alt = html.escape(caption or source.stem)
    text = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{alt}" src="data:image/{kind or "png"};base64,{encoded}">{text}</figure>'


def link(folder: str | Path, href: str, text: str) -> str:
    """A link to the file ``href``, relative to the page's ``folder``, which must exist.

    Raises ``DataError`` for an absolute path, a scheme, ``..`` or a missing file: a written
    page never holds a link that does not resolve.
    """
    relative = PurePosixPath(href)
    if not href or relative.is_absolute() or ".." in relative.parts or ":" in href:
        raise DataError(f"a report link must be a relative path inside its folder, got {href!r}")
    if not (Path(folder) / relative).is_file():
        raise DataError(f"the report links {href!r}, which is not a file in {folder}")
    return f'<a href="{html.escape(quote(href))}">{html.escape(text)}</a>'


def write_page(
    out_dir: str | Path,
    title: str,
    sections: Sequence[Section],
    *,
    lead: Sequence[str] = (),
    filename: str = "report.html",
) -> Path:
    """Write ``out_dir/filename`` (``page``'s text). Returns the page's path."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / filename
    target.write_text(page(title, sections, lead=lead), encoding="utf-8")
    return target


def page(title: str, sections: Sequence[Section], *, lead: Sequence[str] = ()) -> str:
    """A whole page: ``title``, the ``lead`` fragments, a list of contents when there are
    several sections, then the sections."""
    contents = ""
    if len(sections) > 1:
        items = "".join(
            f'<li><a href="#{html.escape(s.anchor)}">{html.escape(s.title)}</a></li>'
            for s in sections
        )
        contents = f"<nav><ul>{items}</ul></nav>"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *lead,
        contents,
        *(
            f'<section id="{html.escape(s.anchor)}"><h2>{html.escape(s.title)}</h2>\n'
            + "\n".join(s.body)
            + "</section>"
            for s in sections
        ),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_html_report(
    out_dir: str | Path,
    metrics: Mapping[str, Any],
    images: Sequence[str],
    tables: Mapping[str, Table] | None = None,
    title: str = "fedcredit model report",
    filename: str = "report.html",
) -> Path:
    """Write ``out_dir/filename`` and return its path: one page of ``metrics`` (a two-column
    table), ``images`` (PNG or SVG files, embedded) and ``tables`` (title -> rows)."""
    body = [key_values(metrics), *(figure(path) for path in images)]
    sections = [Section("Metrics", "metrics", body)]
    sections += [
        Section(name, f"table-{number}", [table(rows)])
        for number, (name, rows) in enumerate((tables or {}).items(), start=1)
    ]
    return write_page(out_dir, title, sections, filename=filename)
