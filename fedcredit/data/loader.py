"""Load one party's CSV (or Parquet) file, refusing anything the protocol could not use.

Every problem is a :class:`~fedcredit.errors.DataError` whose message is one line
naming the file, the line (1-based, as an editor shows it) and the column; in a
Parquet file, which has no lines, the data row (1-based) and the column. The
checks run before any number reaches the fixed-point encoding: NaN, infinities
and magnitudes above ``MAX_ABS_VALUE`` are refused here, because a value such as
1e308 would overflow the Paillier encoding much later and much less clearly.

Text columns are categories without being declared. A feature column is numeric
when every filled cell is a number; it is a text (categorical) column when more
than half of its filled cells are not numbers; in between (at least half numbers,
some not) it is refused, naming the first cell that is not a number: a numeric
column with a few stray words is far more often a data error than a set of
categories, and turning it into categories would silently lump its thousands of
values into one rare-category level. The ``categorical`` argument still forces a
column to be categories (numeric-coded ones such as 1/2/3, or a mixed column).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedcredit.data.table import Table as _Table
from fedcredit.data.table import parquet_cell as _parquet_cell
from fedcredit.data.table import read_csv_body
from fedcredit.data.table import reader as _reader
from fedcredit.data.table import where_line as _where
from fedcredit.errors import DataError

MAX_ABS_VALUE = 1e300
"""Largest magnitude accepted in a feature cell; larger values break fixed-point encoding."""


@dataclass(frozen=True)
class PartyData:
    """One party's validated table.

    ``ids`` keeps the file's row order and the id text exactly (surrounding spaces
    removed). ``X`` is float64 of shape ``(rows, len(feature_names))``. ``y`` is
    int8 0/1 when a label column was named, else ``None``. ``categorical`` maps each
    categorical column to its cells as strings (stripped, ``""`` when missing), in row
    order: the requested ones first, then the text columns found among the features.
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


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_header(path: Path, header: list[str]) -> None:
    if all(_is_number(name) for name in header):
        raise DataError(f"{_where(path, 1)}: missing header (line 1 holds only numbers)")
    _check_names(header, lambda column: _where(path, 1, column), "header")


def _check_names(header: list[str], where: Callable[[str | None], str], part: str) -> None:
    """Every column named, and named once (``part``: "header" in CSV, "schema" in Parquet)."""
    for index, name in enumerate(header):
        if not name:
            raise DataError(f"{where(None)}: {part} cell {index + 1} is empty")
        if header.index(name) != index:
            raise DataError(f"{where(name)}: column named twice in the {part}")


PARQUET_SUFFIXES = (".parquet", ".pq")


def _read_table(path: Path, text: set[str]) -> _Table:
    """The file's table; ``text`` names the columns always kept as text (id, categorical)."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _read_parquet(path, text)
    with _reader(path) as rows:
        first = next(rows, None)
        if first is None:
            raise DataError(f"{path}: empty file (no header, no rows)")
        header_line, raw_header = first
        if header_line != 1:
            raise DataError(f"{_where(path, 1)}: missing header (line 1 is blank)")
        header = [name.strip() for name in raw_header]
        _check_header(path, header)
        return read_csv_body(path, header, rows, text)


def _group_cells(values: Any, typed: bool) -> np.ndarray | list[str]:
    """One row group's column: a numpy array for a numeric column without nulls (8 bytes a
    cell, not a string), else its cells as text."""
    if typed and values.null_count == 0:
        return np.asarray(values.to_numpy(zero_copy_only=False))
    return list(map(_parquet_cell, values.to_pylist()))


def _join_groups(groups: list[np.ndarray | list[str]]) -> tuple[str, ...] | np.ndarray:
    if groups and all(isinstance(g, np.ndarray) for g in groups):
        return np.concatenate(groups)
    cells: list[str] = []
    for group in groups:  # a null in some group: the whole column as text, as CSV reads it
        cells.extend(map(_parquet_cell, group.tolist()) if isinstance(group, np.ndarray) else group)
    return tuple(cells)


def _read_parquet(path: Path, text: set[str]) -> _Table:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow: pip install 'fedcredit[parquet]'"
        ) from None
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a Parquet file")
    # Row group by row group (issue 16): only one group is ever held as Arrow data and as
    # Python values, beside the cells' text the columns keep.
    groups: list[list[np.ndarray | list[str]]] = []
    try:
        with pq.ParquetFile(path) as parquet:
            schema = parquet.schema_arrow
            names = schema.names
            typed = [
                str(name).strip() not in text
                and (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                     or pa.types.is_boolean(kind))
                for name, kind in zip(names, schema.types, strict=True)
            ]  # fmt: skip
            groups = [[] for _ in names]
            for group in range(parquet.num_row_groups):
                data = parquet.read_row_group(group)
                for column, values, numeric in zip(groups, data.columns, typed, strict=True):
                    column.append(_group_cells(values, numeric))
                del data
    except PermissionError as exc:
        raise DataError(f"{path}: permission denied") from exc
    except (OSError, pa.ArrowException) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a readable Parquet file ({reason})") from exc
    header = [str(name).strip() for name in names]
    if not header:
        raise DataError(f"{path}: empty file (no columns)")
    _check_names(
        header,
        lambda column: f"{path}: schema" + ("" if column is None else f", column {column!r}"),
        "schema",
    )
    columns = [_join_groups(groups.pop(0)) for _ in range(len(groups))]  # each freed as it goes
    rows = len(columns[0]) if columns else 0
    return _Table(path=path, header=header, columns=columns, n_rows=rows, has_lines=False)


def _column_index(table: _Table, name: str, role: str) -> int:
    try:
        return table.header.index(name)
    except ValueError:
        known = ", ".join(table.header)
        raise DataError(
            f"{table.where(None, name)}: unknown {role} column (header has: {known})"
        ) from None


def _parse_ids(table: _Table, index: int, name: str) -> list[str]:
    ids = [value.strip() for value in table.columns[index]]
    if "" in ids:
        raise DataError(f"{table.where(ids.index(''), name)}: missing id")
    if len(set(ids)) != len(ids):
        first_row: dict[str, int] = {}
        for row, value in enumerate(ids):
            previous = first_row.setdefault(value, row)
            if previous != row:
                raise DataError(
                    f"{table.where(row, name)}: duplicate id {value!r} "
                    f"(first seen on {table.place(previous)})"
                )
    return ids


def _bad_cell(table: _Table, row: int, name: str, cell: str) -> DataError:
    where = table.where(row, name)
    text = cell.strip()
    if not text:
        return DataError(f"{where}: missing value")
    try:
        value = float(text)
    except ValueError:
        return DataError(f"{where}: not a number: {cell!r}")
    if math.isnan(value):
        return DataError(f"{where}: NaN is not allowed")
    if math.isinf(value):
        return DataError(f"{where}: infinite value {cell!r} is not allowed")
    return DataError(
        f"{where}: |value| {text} exceeds {MAX_ABS_VALUE:g} "
        "(it would overflow the fixed-point encoding)"
    )


def _parse_numeric(table: _Table, index: int, name: str) -> np.ndarray:
    cells = table.columns[index]
    if isinstance(cells, np.ndarray):
        return _in_range(table, index, name, cells.astype(np.float64))
    try:
        values = np.fromiter(map(float, cells), dtype=np.float64, count=len(cells))
    except ValueError:
        row = next(i for i, cell in enumerate(cells) if not _is_number(cell))
        raise _bad_cell(table, row, name, cells[row]) from None
    return _in_range(table, index, name, values)


def _in_range(table: _Table, index: int, name: str, values: np.ndarray) -> np.ndarray:
    bad = ~(np.abs(values) <= MAX_ABS_VALUE)  # NaN compares False, so NaN is caught too
    if bad.any():
        row = int(np.argmax(bad))
        raise _bad_cell(table, row, name, table.cell(index, row))
    return values


def _parse_feature(table: _Table, index: int, name: str) -> np.ndarray | None:
    """The column's numbers, or ``None`` for a text column (see the module docstring).

    Refuses a numeric column with a missing cell, and a column of mostly numbers with some
    cells that are not, naming the cell and the fix.
    """
    cells = table.columns[index]
    if isinstance(cells, np.ndarray):
        return _in_range(table, index, name, cells.astype(np.float64))
    try:
        values = np.fromiter(map(float, cells), dtype=np.float64, count=len(cells))
    except ValueError:
        pass  # an empty or non-number cell: decide below whether it is a text column
    else:
        return _in_range(table, index, name, values)
    filled = [row for row, cell in enumerate(cells) if cell.strip()]
    words = [row for row in filled if not _is_number(cells[row])]
    if 2 * len(words) > len(filled):
        return None
    if not words:
        row = next(row for row, cell in enumerate(cells) if not cell.strip())
        raise DataError(
            f"{table.where(row, name)}: missing value (the column's other cells are numbers, "
            "and a numeric column needs one in every row)"
        )
    row = words[0]
    numbers = len(filled) - len(words)
    raise DataError(
        f"{table.where(row, name)}: not a number: {cells[row]!r} ({numbers} of the column's "
        f"{len(filled)} filled cells are numbers: correct this cell, or list the column in the "
        "party's 'categorical' key of the federation file to use its values as categories)"
    )


def _parse_label(table: _Table, index: int, name: str) -> np.ndarray:
    values = _parse_numeric(table, index, name)
    bad = (values != 0.0) & (values != 1.0)
    if bad.any():
        row = int(np.argmax(bad))
        cell = table.cell(index, row)
        raise DataError(f"{table.where(row, name)}: label must be 0 or 1, got {cell!r}")
    return values.astype(np.int8)


def _choose_features(
    table: _Table,
    reserved: set[str],
    features: Sequence[str] | None,
) -> list[str]:
    if features is None:
        return [name for name in table.header if name not in reserved]
    chosen = list(features)
    for name in chosen:
        _column_index(table, name, "feature")
        if name in reserved:
            raise DataError(
                f"{table.where(None, name)}: cannot be both a feature and the id, "
                "the label or a categorical column"
            )
    if len(set(chosen)) != len(chosen):
        raise DataError(f"{table.where(None)}: a feature column is listed twice")
    return chosen


def load_party_csv(
    path: str | Path,
    *,
    id_column: str,
    label_column: str | None = None,
    features: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
) -> PartyData:
    """Read and validate one party's CSV, or Parquet file (``.parquet``, ``.pq``).

    ``features=None`` takes every column except the id, the label and the
    ``categorical`` columns, in header order. Categorical columns are returned as
    strings in ``PartyData.categorical`` and are never parsed as numbers; so are the
    text columns among the features (more than half of their filled cells are not
    numbers: see the module docstring), which are then not in ``feature_names``.
    Raises :class:`DataError` naming file, line and column on the first problem
    found; a table with no numeric and no categorical column is refused.
    Blank lines are skipped. Parquet needs pyarrow (``pip install 'fedcredit[parquet]'``);
    its cells go through the same checks as CSV text: a null is a missing value, a
    boolean is 1 or 0, an integer id becomes its decimal digits.
    """
    table = _read_table(Path(path), {id_column, *categorical})
    id_index = _column_index(table, id_column, "id")
    reserved = {id_column, *categorical}
    label_index: int | None = None
    if label_column is not None:
        if label_column == id_column:
            raise DataError(f"{table.where(None, label_column)}: id and label are the same")
        label_index = _column_index(table, label_column, "label")
        reserved.add(label_column)
    for name in categorical:
        _column_index(table, name, "categorical")
    feature_names = _choose_features(table, reserved, features)
    if not feature_names and not categorical:
        raise DataError(f"{table.where(None)}: no feature columns besides the id and the label")
    if table.n_rows == 0:
        empty = "the header is not followed by any data row" if table.has_lines else "no data row"
        raise DataError(f"{table.path}: {empty}")

    ids = _parse_ids(table, id_index, id_column)
    y = None
    if label_index is not None:
        y = _parse_label(table, label_index, table.header[label_index])
    numeric: list[str] = []
    values: list[np.ndarray] = []
    text: list[str] = []
    for name in feature_names:
        column = _parse_feature(table, table.header.index(name), name)
        if column is None:
            text.append(name)
        else:
            numeric.append(name)
            values.append(column)
    X = np.column_stack(values) if values else np.empty((table.n_rows, 0), dtype=np.float64)
    cats = {
        name: [cell.strip() for cell in table.columns[table.header.index(name)]]
        for name in [*categorical, *text]
    }
    return PartyData(ids=ids, X=X, feature_names=numeric, y=y, path=table.path, categorical=cats)


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
