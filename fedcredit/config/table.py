"""One TOML table being read: typed getters whose errors name the file, the table and the key."""

from __future__ import annotations

import difflib
from typing import Any, Final

from fedcredit.errors import ConfigError

#: The default of a required key: reading it when the key is absent is an error.
MISSING: Final[Any] = object()


class Table:
    """The keys of one table (``where``: ``"[train]"``, ``"[[party]] #2 'ecommerce'"``).

    Unknown keys are refused at once, with the closest known key as a hint.
    """

    def __init__(self, file: str, where: str, data: Any, known: tuple[str, ...]) -> None:
        self.file = file
        self.where = where
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: {where} must be a table")
        self.data: dict[str, Any] = data
        for key in data:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ConfigError(f"{file}: {where}: unknown key {key!r}{suffix}")

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.where} {key}: {problem}")

    def _get(self, key: str, default: Any) -> Any:
        if key in self.data:
            return self.data[key]
        if default is MISSING:
            raise ConfigError(f"{self.file}: {self.where}: missing required key {key!r}")
        return default

    def text(self, key: str, default: Any = MISSING) -> Any:
        """The string at ``key``, or ``default`` (which may be None) when the key is absent."""
        if key not in self.data:
            return self._get(key, default)
        value = self.data[key]
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = MISSING) -> str:
        value = self.text(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return str(value)

    def integer(
        self, key: str, default: Any, low: int | None = None, high: int | None = None
    ) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise self.error(key, f"must be {bounds}, got {value}")
        return value

    def number(self, key: str, default: float, low: float, high: float | None = None,
               *, low_open: bool = False, high_open: bool = False) -> float:  # fmt: skip
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, got {value!r}")
        value = float(value)
        too_low = value <= low if low_open else value < low
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high or value != value:
            lo = f"{'(' if low_open else '['}{low:g}"
            hi = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
            raise self.error(key, f"must be in {lo}, {hi}, got {value:g}")
        return value

    def names(self, key: str) -> tuple[str, ...] | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, list) or not value:
            raise self.error(key, "must be a non-empty list of column names")
        for item in value:
            if not isinstance(item, str) or not item:
                raise self.error(key, f"must list non-empty strings, got {item!r}")
        duplicates = sorted({v for v in value if value.count(v) > 1})
        if duplicates:
            raise self.error(key, f"lists {duplicates[0]!r} twice")
        return tuple(value)
