"""Load one party's CSV file, refusing anything the protocol could not use.

Every problem is a :class:`~fedcredit.errors.DataError` whose message is one line
naming the file, the line (1-based, as an editor shows it) and the column. The
checks run before any number reaches the fixed-point encoding: NaN, infinities
and magnitudes above ``MAX_ABS_VALUE`` are refused here, because a value such as
1e308 would overflow the Paillier encoding much later and much less clearly.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fedcredit.errors import DataError

MAX_ABS_VALUE = 1e300
"""Largest magnitude accepted in a feature cell; larger values break fixed-point encoding."""


@dataclass(frozen=True)
class PartyData:
    """One party's validated table.

    ``ids`` keeps the file's row order and the id text exactly (surrounding spaces
    removed). ``X`` is float64 of shape ``(rows, len(feature_names))``. ``y`` is
    int8 0/1 when a label column was named, else ``None``. ``categorical`` maps each
    requested categorical column to its cells as strings, in row order.
    """

    ids: list[str]
    X: np.ndarray
    feature_names: list[str]
    y: np.ndarray | None
    path: Path
    categorical: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        """Number of data rows."""
        return len(self.ids)


@dataclass(frozen=True)
class _Table:
    header: list[str]
    rows: list[list[str]]
    lines: list[int]


def _where(path: Path, line: int, column: str | None = None) -> str:
    where = f"{path}: line {line}"
    return f"{where}, column {column!r}" if column is not None else where


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            try:
                for row in reader:
                    if row:
                        yield reader.line_num, row
            except csv.Error as exc:
                raise DataError(f"{_where(path, reader.line_num)}: malformed CSV: {exc}") from exc
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_table(path: Path) -> _Table:
    rows = _rows(path)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}: empty file (no header, no rows)")
    header_line, raw_header = first
    if header_line != 1:
        raise DataError(f"{_where(path, 1)}: missing header (line 1 is blank)")
    header = [name.strip() for name in raw_header]
    if all(_is_number(name) for name in header):
        raise DataError(f"{_where(path, 1)}: missing header (line 1 holds only numbers)")
    for index, name in enumerate(header):
        if not name:
            raise DataError(f"{_where(path, header_line)}: header cell {index + 1} is empty")
        if header.index(name) != index:
            raise DataError(f"{_where(path, header_line, name)}: column named twice in the header")
    body: list[list[str]] = []
    lines: list[int] = []
    width = len(header)
    for line, row in rows:
        if len(row) != width:
            raise DataError(
                f"{_where(path, line)}: row has {len(row)} cells, the header has {width}"
            )
        body.append(row)
        lines.append(line)
    return _Table(header=header, rows=body, lines=lines)


def _column_index(table: _Table, path: Path, name: str, role: str) -> int:
    try:
        return table.header.index(name)
    except ValueError:
        known = ", ".join(table.header)
        raise DataError(
            f"{path}: line 1, column {name!r}: unknown {role} column (header has: {known})"
        ) from None


def _parse_ids(table: _Table, path: Path, index: int, name: str) -> list[str]:
    ids: list[str] = []
    first_line: dict[str, int] = {}
    for row, line in zip(table.rows, table.lines, strict=True):
        value = row[index].strip()
        if not value:
            raise DataError(f"{_where(path, line, name)}: missing id")
        previous = first_line.setdefault(value, line)
        if previous != line:
            raise DataError(
                f"{_where(path, line, name)}: duplicate id {value!r} "
                f"(first seen on line {previous})"
            )
        ids.append(value)
    return ids


def _bad_cell(path: Path, line: int, name: str, cell: str) -> DataError:
    text = cell.strip()
    if not text:
        return DataError(f"{_where(path, line, name)}: missing value")
    try:
        value = float(text)
    except ValueError:
        return DataError(f"{_where(path, line, name)}: not a number: {cell!r}")
    if math.isnan(value):
        return DataError(f"{_where(path, line, name)}: NaN is not allowed")
    if math.isinf(value):
        return DataError(f"{_where(path, line, name)}: infinite value {cell!r} is not allowed")
    return DataError(
        f"{_where(path, line, name)}: |value| {cell.strip()} exceeds {MAX_ABS_VALUE:g} "
        "(it would overflow the fixed-point encoding)"
    )


def _parse_numeric(table: _Table, path: Path, index: int, name: str) -> np.ndarray:
    cells = [row[index] for row in table.rows]
    try:
        values = np.fromiter(map(float, cells), dtype=np.float64, count=len(cells))
    except ValueError:
        for cell, line in zip(cells, table.lines, strict=True):
            try:
                float(cell)
            except ValueError:
                raise _bad_cell(path, line, name, cell) from None
        raise  # pragma: no cover - every ValueError above comes from one cell
    bad = ~(np.abs(values) <= MAX_ABS_VALUE)  # NaN compares False, so NaN is caught too
    if bad.any():
        row = int(np.argmax(bad))
        raise _bad_cell(path, table.lines[row], name, cells[row])
    return values


def _parse_label(table: _Table, path: Path, index: int, name: str) -> np.ndarray:
    values = _parse_numeric(table, path, index, name)
    bad = (values != 0.0) & (values != 1.0)
    if bad.any():
        row = int(np.argmax(bad))
        cell = table.rows[row][index]
        raise DataError(
            f"{_where(path, table.lines[row], name)}: label must be 0 or 1, got {cell!r}"
        )
    return values.astype(np.int8)


def _choose_features(
    table: _Table,
    path: Path,
    reserved: set[str],
    features: Sequence[str] | None,
) -> list[str]:
    if features is None:
        chosen = [name for name in table.header if name not in reserved]
    else:
        chosen = list(features)
        for name in chosen:
            _column_index(table, path, name, "feature")
            if name in reserved:
                raise DataError(
                    f"{path}: line 1, column {name!r}: cannot be both a feature and the id, "
                    "label or a categorical column"
                )
        if len(set(chosen)) != len(chosen):
            raise DataError(f"{path}: line 1: a feature column is listed twice")
    return chosen


def load_party_csv(
    path: str | Path,
    *,
    id_column: str,
    label_column: str | None = None,
    features: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
) -> PartyData:
    """Read and validate one party's CSV.

    ``features=None`` takes every column except the id, the label and the
    ``categorical`` columns, in header order. Categorical columns are returned as
    strings in ``PartyData.categorical`` (for binning) and are never parsed as
    numbers. Raises :class:`DataError` naming file, line and column on the first
    problem found; a table with no numeric and no categorical column is refused.
    """
    path = Path(path)
    table = _read_table(path)
    id_index = _column_index(table, path, id_column, "id")
    reserved = {id_column, *categorical}
    label_index: int | None = None
    if label_column is not None:
        if label_column == id_column:
            raise DataError(f"{path}: line 1, column {label_column!r}: id and label are the same")
        label_index = _column_index(table, path, label_column, "label")
        reserved.add(label_column)
    for name in categorical:
        _column_index(table, path, name, "categorical")
    feature_names = _choose_features(table, path, reserved, features)
    if not feature_names and not categorical:
        raise DataError(f"{path}: line 1: no feature columns besides the id and the label")
    if not table.rows:
        raise DataError(f"{path}: the header is not followed by any data row")

    ids = _parse_ids(table, path, id_index, id_column)
    y = None if label_index is None else _parse_label(table, path, label_index, label_column or "")
    X = np.empty((len(ids), len(feature_names)), dtype=np.float64)
    for column, name in enumerate(feature_names):
        X[:, column] = _parse_numeric(table, path, table.header.index(name), name)
    cats = {
        name: [row[table.header.index(name)].strip() for row in table.rows] for name in categorical
    }
    return PartyData(ids=ids, X=X, feature_names=feature_names, y=y, path=path, categorical=cats)


def standardize(
    X: np.ndarray,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(Z, mean, std)`` with ``Z = (X - mean) / std`` column by column.

    With ``mean`` and ``std`` both ``None`` they are computed from ``X`` (population
    standard deviation); a constant column gets ``std = 1`` so its ``Z`` is 0 rather
    than NaN. Pass the training ``mean`` and ``std`` to transform new rows the same way.
    """
    data = np.asarray(X, dtype=np.float64)
    if data.ndim != 2:
        raise DataError(f"standardize expects a 2-D array, got shape {data.shape}")
    if (mean is None) != (std is None):
        raise DataError("standardize needs both mean and std, or neither")
    if mean is None or std is None:
        if data.shape[0] == 0:
            raise DataError("cannot standardize an array with no rows")
        mean = data.mean(axis=0)
        std = data.std(axis=0)
        std = np.where(std > 0.0, std, 1.0)
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    columns = data.shape[1]
    if mean.shape != (columns,) or std.shape != (columns,):
        raise DataError(f"mean/std shapes {mean.shape}/{std.shape} do not match {columns} columns")
    if not (np.all(np.isfinite(std)) and np.all(std > 0.0) and np.all(np.isfinite(mean))):
        raise DataError("std must be finite and positive, mean finite")
    return (data - mean) / std, mean, std
