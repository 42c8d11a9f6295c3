"""Parquet input: the same checks and the same one-line errors as CSV, rows instead of lines."""

from __future__ import annotations

import builtins
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedcredit.data.loader import PartyData, load_party_csv
from fedcredit.errors import DataError
from tests.support.cli import fedcredit, small_federation

pa = pytest.importorskip("pyarrow", reason="Parquet input needs pyarrow (fedcredit[parquet])")
pq = pytest.importorskip("pyarrow.parquet")


def write_parquet(path: Path, columns: dict[str, list[Any]]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def load(path: Path, **kwargs: Any) -> PartyData:
    return load_party_csv(path, **{"id_column": "id", **kwargs})


GOOD: dict[str, list[Any]] = {
    "id": ["A7", "B8", "C9"],
    "x1": [1.5, -3.0, 400.0],
    "x2": [2, 0, 7],
    "city": ["Paris", "Lyon", "Paris"],
    "y": [1, 0, 0],
}


def test_a_parquet_file_loads_exactly_like_the_same_csv(tmp_path: Path) -> None:
    parquet = write_parquet(tmp_path / "party.parquet", GOOD)
    text = tmp_path / "party.csv"
    with text.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(GOOD)
        writer.writerows(zip(*GOOD.values(), strict=True))

    got = load(parquet, label_column="y", categorical=["city"])
    want = load(text, label_column="y", categorical=["city"])

    assert got.ids == want.ids == ["A7", "B8", "C9"]
    assert got.feature_names == want.feature_names == ["x1", "x2"]
    np.testing.assert_array_equal(got.X, want.X)
    assert got.y is not None and want.y is not None
    np.testing.assert_array_equal(got.y, want.y)
    assert got.categorical == want.categorical == {"city": ["Paris", "Lyon", "Paris"]}


def test_typed_columns_become_what_a_csv_cell_would_hold(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "typed.pq",
        {"id": [10, 2, 33], "x": [0.1, 0.2, 0.3], "y": [True, False, True]},
    )

    data = load(path, label_column="y")

    assert data.ids == ["10", "2", "33"]  # integer ids compare as their digits
    assert data.y is not None and data.y.tolist() == [1, 0, 1]
    assert data.X[:, 0].tolist() == [0.1, 0.2, 0.3]  # floats survive exactly


@pytest.mark.parametrize(
    ("columns", "kwargs", "message"),
    [
        ({"id": ["A", None, "C"], "x": [1.0, 2.0, 3.0]}, {}, "row 2, column 'id': missing id"),
        (
            {"id": ["A", "B", "A"], "x": [1.0, 2.0, 3.0]},
            {},
            "row 3, column 'id': duplicate id 'A' (first seen on row 1)",
        ),
        ({"id": ["A", "B"], "x": [1.0, None]}, {}, "row 2, column 'x': missing value"),
        ({"id": ["A", "B"], "x": [float("nan"), 1.0]}, {}, "row 1, column 'x': NaN"),
        ({"id": ["A", "B"], "x": [1.0, float("-inf")]}, {}, "row 2, column 'x': infinite"),
        ({"id": ["A", "B"], "x": [1.0, 1e308]}, {}, "row 2, column 'x': |value| 1e+308 exceeds"),
        ({"id": ["A", "B"], "x": ["1", "abc"]}, {}, "row 2, column 'x': not a number: 'abc'"),
        (
            {"id": ["A", "B"], "x": [1.0, 2.0], "y": [0, 2]},
            {"label_column": "y"},
            "row 2, column 'y': label must be 0 or 1, got '2'",
        ),
        (
            {"id": ["A"], "x": [1.0]},
            {"id_column": "ID"},
            "schema, column 'ID': unknown id column (header has: id, x)",
        ),
        ({"id": pa.array([], pa.string()), "x": pa.array([], pa.float64())}, {}, "no data row"),
    ],
    ids=[
        "null id",
        "duplicate id",
        "null value",
        "nan",
        "-inf",
        "1e308",
        "text",
        "label 2",
        "unknown id column",
        "no rows",
    ],
)
def test_a_bad_parquet_file_is_refused_naming_the_row_and_column(
    tmp_path: Path, columns: dict[str, Any], kwargs: dict[str, Any], message: str
) -> None:
    path = write_parquet(tmp_path / "bad.parquet", columns)

    with pytest.raises(DataError) as info:
        load(path, **kwargs)

    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_file_that_is_not_parquet_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "party.parquet"
    path.write_text("id,x\nA,1\n", encoding="utf-8")

    with pytest.raises(DataError, match="not a readable Parquet file") as info:
        load(path)
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="file not found"):
        load(tmp_path / "absent.parquet")


def test_without_pyarrow_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_parquet(tmp_path / "party.parquet", GOOD)
    real_import = builtins.__import__

    def no_pyarrow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(DataError, match=r"pip install 'fedcredit\[parquet\]'"):
        load(path)


@pytest.mark.slow
def test_a_run_with_one_party_in_parquet_aligns_the_common_customers(tmp_path: Path) -> None:
    fed = small_federation(tmp_path, customers=600, epochs=1)
    data = tmp_path / "data"
    payments = data / "payments.csv"
    rows = list(csv.DictReader(payments.open(encoding="utf-8")))
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    typed = {k: v if k == "id" else [float(x) for x in v] for k, v in columns.items()}
    write_parquet(data / "payments.parquet", typed)
    payments.unlink()
    fed.write_text(fed.read_text().replace(str(payments), str(data / "payments.parquet")))

    result = fedcredit(
        "run", str(fed), "--out", str(tmp_path / "run"), "--json", "--allow-small-keys"
    )

    assert result.returncode == 0, result.stderr
    common = set(columns["id"])
    for name in ("lender", "ecommerce"):
        common &= {row["id"] for row in csv.DictReader((data / f"{name}.csv").open())}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["rows_aligned"] == len(common) > 0


def test_a_column_named_twice_in_the_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.parquet"
    table = pa.Table.from_arrays(
        [pa.array(["A"]), pa.array([1.0]), pa.array([2.0])], names=["id", "x", "x"]
    )
    pq.write_table(table, path)

    with pytest.raises(DataError, match=r"schema, column 'x': column named twice in the schema"):
        load(path)


def test_a_file_of_many_row_groups_reads_group_by_group_as_the_whole_table(
    tmp_path: Path,
) -> None:
    # Issue 16: the loader reads one row group at a time; the result is the whole file's.
    rows = 53
    columns: dict[str, list[Any]] = {
        "id": [f"C{i:03d}" for i in range(rows)],
        "x1": [i * 0.25 - 3 for i in range(rows)],
        "x2": [i % 7 for i in range(rows)],
        "city": [["Paris", "Lyon", ""][i % 3] for i in range(rows)],
        "y": [i % 2 for i in range(rows)],
    }
    grouped = tmp_path / "grouped.parquet"
    pq.write_table(pa.table(columns), grouped, row_group_size=8)
    whole = write_parquet(tmp_path / "whole.parquet", columns)
    assert pq.ParquetFile(grouped).num_row_groups == 7
    assert pq.ParquetFile(whole).num_row_groups == 1

    got = load(grouped, label_column="y", categorical=["city"])
    want = load(whole, label_column="y", categorical=["city"])

    assert got.ids == want.ids == columns["id"]
    assert got.feature_names == want.feature_names == ["x1", "x2"]
    np.testing.assert_array_equal(got.X, want.X)
    np.testing.assert_array_equal(got.X[:, 0], np.array(columns["x1"]))
    assert got.y is not None and want.y is not None
    np.testing.assert_array_equal(got.y, want.y)
    assert got.categorical == want.categorical


def test_a_bad_cell_in_a_later_row_group_names_its_row(tmp_path: Path) -> None:
    ids = [f"C{i:03d}" for i in range(30)]
    ids[25] = ids[3]
    path = tmp_path / "dup.parquet"
    pq.write_table(pa.table({"id": ids, "x1": list(range(30))}), path, row_group_size=10)

    with pytest.raises(DataError) as info:
        load(path)

    assert (
        str(info.value) == f"{path}: row 26, column 'id': duplicate id 'C003' (first seen on row 4)"
    )


def test_a_null_in_a_later_row_group_of_a_numeric_column_names_its_row(tmp_path: Path) -> None:
    # Numeric groups are kept as numbers; a group with a null turns the column back to text.
    values: list[Any] = list(range(30))
    values[24] = None
    path = tmp_path / "null.parquet"
    ids = [f"C{i:03d}" for i in range(30)]
    pq.write_table(pa.table({"id": ids, "x": values}), path, row_group_size=10)

    with pytest.raises(DataError) as info:
        load(path)

    # The same line as for the CSV of these cells (a feature column with one missing cell).
    assert str(info.value).startswith(f"{path}: row 25, column 'x': missing value (the column")


def test_a_numeric_column_named_categorical_keeps_its_text_in_every_row_group(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cats.parquet"
    table = {"id": [f"C{i}" for i in range(12)], "grade": [i % 3 for i in range(12)]}
    pq.write_table(pa.table({**table, "x": [0.5] * 12}), path, row_group_size=5)

    data = load(path, categorical=["grade"])

    assert data.categorical == {"grade": [str(i % 3) for i in range(12)]}
    assert data.feature_names == ["x"]
