"""A party file's table as the loader checks it, and the CSV reader that fills it by blocks.

The CSV reader (issue 16) reads ``BLOCK_ROWS`` rows at a time and turns each block of a
column that is all numbers into a numpy array (8 bytes a cell) at once, as the Parquet reader
does with row groups, so a numeric cell never stays a Python string (about 60 bytes) for the
whole load. A column with a cell that is not a number keeps its cells as text (it is a text
column, or a data error to report); its blocks already turned into numbers are read back as
text from the file in one more pass, so every message names the cell as the file holds it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedcredit.errors import DataError

BLOCK_ROWS = 16_384
"""Rows per block of a CSV file: a block's cells are text only while it is parsed."""

Column = tuple[str, ...] | np.ndarray
"""A column's cells as text, or a numeric column as its numpy array."""


@dataclass(frozen=True)
class Table:
    """The header and the data columns; line numbers are found again only for errors."""

    path: Path
    header: list[str]
    columns: list[Column]
    """Each column's cells as text, or a numeric column as its numpy array (Parquet: typed
    columns without nulls; CSV: columns whose every cell is a number)."""
    n_rows: int
    has_lines: bool = True
    """CSV: errors name the line of the file. Parquet: the data row (1-based)."""

    def where(self, row: int | None, column: str | None = None) -> str:
        """``path: line L, column 'C'`` (or ``row R`` in Parquet); ``row=None``: the header."""
        if row is None:
            place = "line 1" if self.has_lines else "schema"
        else:
            place = f"line {self.line(row)}" if self.has_lines else f"row {row + 1}"
        where = f"{self.path}: {place}"
        return f"{where}, column {column!r}" if column is not None else where

    def cell(self, index: int, row: int) -> str:
        """Column ``index``'s cell in ``row`` as text: as the CSV file holds it (read again),
        or a Parquet value as a CSV cell would hold it."""
        cells = self.columns[index]
        if not isinstance(cells, np.ndarray):
            return cells[row]
        if self.has_lines:
            return self._row(row)[1][index]
        return parquet_cell(cells[row].item())

    def place(self, row: int) -> str:
        """``line L`` or ``row R`` for data row ``row`` (0-based)."""
        return f"line {self.line(row)}" if self.has_lines else f"row {row + 1}"

    def line(self, row: int) -> int:
        """1-based line in the file where data row ``row`` (0-based) ends."""
        return self._row(row)[0]

    def _row(self, row: int) -> tuple[int, list[str]]:
        # Rescanning costs a second read, but only when reporting an error; the fast
        # path never tracks line numbers (quoted cells may span several lines).
        seen = -1
        with reader(self.path) as rows:
            for line, cells in rows:
                if seen == row:
                    return line, cells
                seen += 1
        raise DataError(f"{self.path}: changed while being read")  # pragma: no cover


def where_line(path: Path, line: int, column: str | None = None) -> str:
    where = f"{path}: line {line}"
    return f"{where}, column {column!r}" if column is not None else where


@contextmanager
def reader(path: Path) -> Iterator[Iterator[tuple[int, list[str]]]]:
    """Yield an iterator of (line number, row) over non-blank rows, with file errors mapped."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            csv_rows = csv.reader(handle)

            def rows() -> Iterator[tuple[int, list[str]]]:
                try:
                    for row in csv_rows:
                        if row:
                            yield csv_rows.line_num, row
                except csv.Error as exc:
                    line = csv_rows.line_num
                    raise DataError(f"{where_line(path, line)}: malformed CSV: {exc}") from exc

            yield rows()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{path}: is a directory, not a CSV file") from exc
    except PermissionError as exc:
        raise DataError(f"{path}: permission denied") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def parquet_cell(value: object) -> str:
    """A Parquet value as the text a CSV cell would hold (None: a missing cell)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def read_csv_body(
    path: Path, header: list[str], rows: Iterator[tuple[int, list[str]]], text: set[str]
) -> Table:
    """The data rows after the header, block by block (see the module docstring).

    ``text`` names the columns always kept as text (the id and the categorical columns).
    """
    width = len(header)
    keep_text = [name in text for name in header]
    groups: list[list[np.ndarray | list[str]]] = [[] for _ in header]
    n_rows = 0
    while True:
        block = [cells for _, cells in _take(rows, BLOCK_ROWS)]
        if not block:
            break
        for offset, cells in enumerate(block):
            if len(cells) != width:
                row = n_rows + offset
                table = Table(path, header, [], row + 1)
                raise DataError(
                    f"{where_line(path, table.line(row))}: row has {len(cells)} cells, "
                    f"the header has {width}"
                )
        for index, column in enumerate(zip(*block, strict=True)):
            groups[index].append(_block_cells(column, keep_text[index]))
            keep_text[index] = keep_text[index] or not isinstance(groups[index][-1], np.ndarray)
        n_rows += len(block)
        del block
    mixed = [i for i, parts in enumerate(groups) if _is_mixed(parts)]
    again = _text_columns(path, mixed) if mixed else {}
    columns: list[Column] = []
    for index in range(width):
        parts = groups[index]
        groups[index] = []  # each column's blocks freed as it is joined
        if index in again:
            columns.append(again.pop(index))
        elif parts and all(isinstance(part, np.ndarray) for part in parts):
            columns.append(np.concatenate(parts))
        else:
            columns.append(tuple(cell for part in parts for cell in part))
    return Table(path=path, header=header, columns=columns, n_rows=n_rows)


def _take(rows: Iterator[tuple[int, list[str]]], count: int) -> Iterator[tuple[int, list[str]]]:
    for _, row in zip(range(count), rows, strict=False):
        yield row


def _block_cells(cells: tuple[str, ...], keep_text: bool) -> np.ndarray | list[str]:
    """A block of one column: its numbers as float64 when every cell is one, else its text."""
    if not keep_text:
        try:
            return np.fromiter(map(float, cells), dtype=np.float64, count=len(cells))
        except ValueError:
            pass
    return list(cells)


def _is_mixed(parts: list[np.ndarray | list[str]]) -> bool:
    kinds = {isinstance(part, np.ndarray) for part in parts}
    return len(kinds) > 1


def _text_columns(path: Path, indexes: list[int]) -> dict[int, Column]:
    """Columns ``indexes`` as text, read again from the file (its header skipped)."""
    cells: dict[int, list[str]] = {index: [] for index in indexes}
    with reader(path) as rows:
        next(rows, None)
        for _, row in rows:
            for index, column in cells.items():
                column.append(row[index])
    return {index: tuple(column) for index, column in cells.items()}
