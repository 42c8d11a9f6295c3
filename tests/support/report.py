"""Reading a written ``report.html`` as a browser would: its tags, links and images."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "nav", "ul", "li", "a",
    "section", "table", "caption", "tr", "th", "td", "figure", "img", "figcaption",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"lang", "charset", "name", "content", "href", "id", "class", "alt", "src"}


class Page(HTMLParser):
    """Every start tag of a page with its attributes, and its text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def values(self, attribute: str) -> list[str]:
        return [a[attribute] or "" for _, a in self.tags if attribute in a]


def broken_references(page: Path) -> list[str]:
    """Every ``src`` and ``href`` of ``page`` that does not resolve, as a browser opening the
    file would follow it: an ``#anchor`` needs an element with that id, a data URI must hold
    a PNG, anything else must be a file inside the page's folder. Empty when all resolve."""
    parsed = Page(page.read_text(encoding="utf-8"))
    ids = set(parsed.values("id"))
    folder = page.parent.resolve()
    broken = []
    for reference in parsed.values("src") + parsed.values("href"):
        if reference.startswith("#"):
            ok = reference[1:] in ids
        elif reference.startswith("data:image/png;base64,"):
            ok = base64.b64decode(reference.split(",", 1)[1]).startswith(PNG_MAGIC)
        else:
            target = (folder / unquote(reference)).resolve()
            ok = ":" not in reference and folder in target.parents and target.is_file()
        if not ok:
            broken.append(reference[:80])
    return broken


def unexpected_markup(page: Path) -> list[str]:
    """Tags or attributes outside what the report writer makes (a peer's markup that was not
    escaped would show here)."""
    parsed = Page(page.read_text(encoding="utf-8"))
    found = []
    for tag, attributes in parsed.tags:
        if tag not in ALLOWED_TAGS:
            found.append(tag)
        found.extend(f"{tag}[{a}]" for a in attributes if a not in ALLOWED_ATTRIBUTES)
    return found
