"""Append-only logs that show when a line was removed or edited."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
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


DAY_SECONDS = 86_400.0


class DailyQuotaLog:
    """A chained log in one file per UTC day (``<prefix><date>.jsonl`` in ``folder``) that also
    counts what each caller was granted in the last 24 hours, read back from disk when it is
    made, so a restart does not reset a quota. Callers hold their own lock around ``used`` and
    ``write``."""

    def __init__(
        self, what: str, folder: Path, prefix: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.what = what
        self.folder = folder
        self.prefix = prefix
        self.clock = clock
        self._granted: deque[tuple[float, str, int]] = deque()  # time, caller, count
        self._chain = ChainedLog(what)
        self._load()

    def used(self, caller: str, now: float) -> int:
        """What ``caller`` was granted in the 24 hours before ``now``."""
        while self._granted and self._granted[0][0] <= now - DAY_SECONDS:
            self._granted.popleft()
        return sum(count for _, who, count in self._granted if who == caller)

    def write(
        self, when: float, caller: str, count: int, refused: str | None, extra: Mapping[str, Any]
    ) -> None:
        """One line (time, caller, count, answered, the reason if refused, then ``extra``),
        synced; a granted line counts against ``caller``'s quota."""
        record: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat(),
            **{k: v for k, v in extra.items() if k != "ids"},
            "caller": caller,
            "count": count,
            "answered": refused is None,
        }
        if refused is not None:
            record["reason"] = refused
        if "ids" in extra:
            record["ids"] = extra["ids"]
        self._chain.append(self._path(when), record)  # nothing is granted without its line
        if refused is None:
            self._granted.append((when, caller, count))

    def _path(self, when: float) -> Path:
        day = datetime.datetime.fromtimestamp(when, datetime.UTC).date().isoformat()
        return self.folder / f"{self.prefix}{day}.jsonl"

    def _load(self) -> None:
        """The chain's last line and the grants of the last 24 hours, from disk."""
        pattern = f"{self.prefix}*.jsonl"
        files = sorted(self.folder.glob(pattern)) if self.folder.is_dir() else []
        now = self.clock()
        recent = {self._path(now - DAY_SECONDS).name, self._path(now).name}
        for path in files:
            if path.name not in recent and path != files[-1]:
                continue
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise StorageError(f"cannot read the {self.what} {path}: {exc}") from exc
            if path == files[-1] and lines:
                self._chain.previous = line_hash(lines[-1])
            if path.name in recent:
                self._load_granted(path, lines, now)

    def _load_granted(self, path: Path, lines: list[str], now: float) -> None:
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
                when = datetime.datetime.fromisoformat(record["time"]).timestamp()
                entry = (when, str(record["caller"]), int(record["count"]))
                answered = bool(record["answered"])
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(
                    f"{path}: line {number} is not an audit record ({exc}); the log is "
                    "append-only: restore it rather than edit it"
                ) from exc
            if answered and when > now - DAY_SECONDS:
                self._granted.append(entry)
