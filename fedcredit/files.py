"""Append-only logs that show when a line was removed or edited."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedcredit.errors import StorageError


def line_hash(line: str) -> str:
    """What the next line of a chained log carries as ``prev``."""
    return hashlib.sha256(line.encode()).hexdigest()


def last_line_hash(path: Path, what: str) -> str:
    """The chain value after ``path``'s last line ("" for a missing or empty file)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise StorageError(f"cannot read the {what} {path}: {exc}") from exc
    return line_hash(lines[-1]) if lines else ""


class ChainedLog:
    """JSON lines, each carrying the SHA-256 of the line before it (``prev``), synced to disk
    before ``append`` returns, so nothing that depends on the line happens without it. The
    chain may run across files (one per day, say): ``previous`` is the last line written."""

    def __init__(self, what: str, previous: str = "") -> None:
        self.what = what
        self.previous = previous

    def append(self, path: Path, record: Mapping[str, Any]) -> None:
        line = json.dumps({**record, "prev": self.previous}, separators=(",", ":"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise StorageError(f"cannot append to the {self.what} {path}: {exc}") from exc
        self.previous = line_hash(line)
