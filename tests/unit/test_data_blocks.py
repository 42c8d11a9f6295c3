"""The CSV loader by blocks of rows (issue 16): numbers parsed block by block, the same table
and the same messages as one block, a text column's cells as the file holds them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedcredit.data import table
from fedcredit.data.loader import PartyData, load_party_csv
from fedcredit.errors import DataError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "party.csv"
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path, **kwargs: object) -> PartyData:
    options: dict[str, object] = {"id_column": "id", **kwargs}
    return load_party_csv(path, **options)  # type: ignore[arg-type]


# Blocks of 2 rows: the first words of 'kind' come in its second block, after a block of numbers.
MIXED = "id,x,kind,y\nA,1.50,1,0\nB,2,02,1\nC,3,cat,0\nD,4e1,dog,1\nE,5,eel,0\nF,6,fox,1\nG,7,1,0\n"


def test_blocks_give_the_table_one_block_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, MIXED)
    whole = load(path, label_column="y")
    monkeypatch.setattr(table, "BLOCK_ROWS", 2)

    blocks = load(path, label_column="y")

    assert blocks.ids == whole.ids == ["A", "B", "C", "D", "E", "F", "G"]
    assert blocks.feature_names == whole.feature_names == ["x"]
    np.testing.assert_array_equal(blocks.X, whole.X)
    np.testing.assert_array_equal(blocks.X[:, 0], [1.5, 2, 3, 40, 5, 6, 7])
    assert blocks.y is not None and whole.y is not None
    np.testing.assert_array_equal(blocks.y, whole.y)
    # The text column's number-like cells as the file holds them, not as parsed numbers.
    assert blocks.categorical == whole.categorical
    assert blocks.categorical["kind"] == ["1", "02", "cat", "dog", "eel", "fox", "1"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,x\nA,1\nB,2\nC,3\nD,4\nE,1e400\n", "line 6, column 'x': infinite value '1e400'"),
        ("id,x\nA,1\nB,2\nC,3\nD,4\nE,1e301\n", "line 6, column 'x': |value| 1e301 exceeds"),
        ("id,x\nA,1\nB,2\nC,3\nD,4\nE,\n", "line 6, column 'x': missing value"),
        ("id,x\nA,1\nB,2\nC,3\nD,4\nE,1,2\n", "line 6: row has 3 cells, the header has 2"),
        (
            "id,x,y\nA,1,0\nB,2,1\nC,3,0\nD,4,1\nE,5,2\n",
            "line 6, column 'y': label must be 0 or 1, got '2'",
        ),
        (
            "id,x\nA,1\nB,2\nC,3\nD,4\nB,5\n",
            "line 6, column 'id': duplicate id 'B' (first seen on line 3)",
        ),
    ],
)
def test_a_bad_cell_in_a_later_block_is_named_as_in_one_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    label = "y" if text.startswith("id,x,y") else None
    with pytest.raises(DataError) as whole:
        load(path, label_column=label)
    monkeypatch.setattr(table, "BLOCK_ROWS", 2)

    with pytest.raises(DataError) as blocks:
        load(path, label_column=label)

    assert str(blocks.value) == str(whole.value)
    assert str(blocks.value).startswith(f"{path}: {message}")


def test_a_numeric_column_is_held_as_numbers_not_text(tmp_path: Path) -> None:
    path = write(tmp_path, "id,x\nA,1\nB,2\n")

    held = table.read_csv_body(path, ["id", "x"], iter([(2, ["A", "1"]), (3, ["B", "2"])]), {"id"})

    assert held.columns[0] == ("A", "B")
    assert isinstance(held.columns[1], np.ndarray)
    np.testing.assert_array_equal(held.columns[1], [1.0, 2.0])
