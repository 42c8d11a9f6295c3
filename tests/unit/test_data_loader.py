"""fedcredit.data.loader: one party's CSV, validated before any number is encoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedcredit.data.loader import PartyData, load_party_csv, standardize
from fedcredit.errors import DataError


def write(tmp_path: Path, text: str, name: str = "party.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path, **kwargs: object) -> PartyData:
    options: dict[str, object] = {"id_column": "id", **kwargs}
    return load_party_csv(path, **options)  # type: ignore[arg-type]


GOOD = "id,x1,x2,y\nA7,1.5,2,1\nB8,-3,0.25,0\nC9,4e2,7,0\n"


def test_good_file_gives_ids_features_and_int8_labels(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)

    data = load(path, label_column="y")

    assert data.ids == ["A7", "B8", "C9"]
    assert data.feature_names == ["x1", "x2"]
    assert data.X.dtype == np.float64
    np.testing.assert_array_equal(data.X, [[1.5, 2.0], [-3.0, 0.25], [400.0, 7.0]])
    assert data.y is not None and data.y.dtype == np.int8
    np.testing.assert_array_equal(data.y, [1, 0, 0])
    assert data.path == path
    assert data.n_rows == 3


def test_ids_stay_strings_with_leading_zeros(tmp_path: Path) -> None:
    path = write(tmp_path, "id,x\n007,1\n0007,2\n")

    assert load(path).ids == ["007", "0007"]


def test_features_argument_selects_and_orders_columns(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)

    data = load(path, features=["x2"])

    assert data.feature_names == ["x2"]
    assert data.y is None
    np.testing.assert_array_equal(data.X[:, 0], [2.0, 0.25, 7.0])


def test_categorical_columns_come_back_as_strings(tmp_path: Path) -> None:
    path = write(tmp_path, "id,x,region\nA,1,north\nB,2, south \n")

    data = load(path, categorical=["region"])

    assert data.feature_names == ["x"]
    assert data.categorical == {"region": ["north", "south"]}


def test_blank_lines_and_byte_order_mark_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfid,x\r\nA,1\r\n\r\nB,2\r\n\r\n")

    assert load(path).ids == ["A", "B"]


@pytest.mark.parametrize(
    ("text", "kwargs", "expected"),
    [
        ("", {}, "empty file"),
        ("\n\nid,x\nA,1\n", {}, "line 1: missing header"),
        ("1,2\n3,4\n", {}, "line 1: missing header"),
        ("id,x\n", {}, "not followed by any data row"),
        ("ident,x\nA,1\n", {}, "column 'id': unknown id column"),
        ("id,x\nA,1\n", {"label_column": "y"}, "column 'y': unknown label column"),
        ("id,x\nA,1\n", {"features": ["z"]}, "column 'z': unknown feature column"),
        ("id,y\nA,1\n", {"label_column": "y"}, "no feature columns"),
        ("id,x,x\nA,1,2\n", {}, "column 'x': column named twice"),
        ("id,x\nA,1\n,2\n", {}, "line 3, column 'id': missing id"),
        ("id,x\nA,1\nB,2,3\n", {}, "line 3: row has 3 cells, the header has 2"),
        ("id,x\nA,1\nB,abc\n", {}, "line 3, column 'x': not a number: 'abc'"),
        ("id,x\nA,1\nB,\n", {}, "line 3, column 'x': missing value"),
        ("id,x\nA,nan\n", {}, "line 2, column 'x': NaN"),
        ("id,x\nA,1\nB,2\nC,-inf\n", {}, "line 4, column 'x': infinite"),
        ("id,x\nA,1e308\n", {}, "line 2, column 'x': |value| 1e308 exceeds 1e+300"),
        (
            "id,x,y\nA,1,0\nB,2,2\n",
            {"label_column": "y"},
            "line 3, column 'y': label must be 0 or 1",
        ),
        ("id,x,y\nA,1,yes\n", {"label_column": "y"}, "line 2, column 'y': not a number"),
    ],
)
def test_bad_file_is_refused_naming_the_line_and_column(
    tmp_path: Path, text: str, kwargs: dict[str, object], expected: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(DataError) as caught:
        load(path, **kwargs)

    message = str(caught.value)
    assert expected in message
    assert str(path) in message
    assert "\n" not in message


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "id,x\nA,1\nB,2\nC,3\nB,4\n")

    with pytest.raises(
        DataError, match=r"line 5, column 'id': duplicate id 'B' \(first seen on line 3\)"
    ):
        load(path)


def test_line_numbers_count_quoted_cells_spanning_lines(tmp_path: Path) -> None:
    path = write(tmp_path, 'id,x,note\nA,1,"two\nlines"\nB,oops,z\n')

    with pytest.raises(DataError, match="line 4, column 'x'"):
        load(path, categorical=["note"])


def test_largest_accepted_magnitude_is_1e300(tmp_path: Path) -> None:
    path = write(tmp_path, "id,x\nA,1e300\nB,-1e300\n")

    np.testing.assert_array_equal(load(path).X[:, 0], [1e300, -1e300])


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load(tmp_path / "absent.csv")


def test_non_utf8_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"id,x\n\xe9,1\n")

    with pytest.raises(DataError, match="not UTF-8"):
        load(path)


def test_label_equal_to_id_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)

    with pytest.raises(DataError, match="id and label are the same"):
        load(path, label_column="id")


def test_feature_that_is_the_label_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)

    with pytest.raises(DataError, match="cannot be both a feature"):
        load(path, label_column="y", features=["x1", "y"])


def test_standardize_gives_zero_mean_unit_variance() -> None:
    X = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]])

    Z, mean, _ = standardize(X)

    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1.0)
    np.testing.assert_allclose(mean, [3.0, 30.0])


def test_standardize_maps_a_constant_column_to_zero() -> None:
    X = np.array([[2.0, 1.0], [2.0, 3.0]])

    Z, _, std = standardize(X)

    np.testing.assert_array_equal(Z[:, 0], [0.0, 0.0])
    assert std[0] == 1.0
    assert np.all(np.isfinite(Z))


def test_standardize_reuses_training_statistics() -> None:
    _, mean, std = standardize(np.array([[0.0], [2.0]]))

    Z, _, _ = standardize(np.array([[4.0]]), mean, std)

    np.testing.assert_array_equal(Z, [[3.0]])


@pytest.mark.parametrize(
    ("mean", "std"),
    [
        (np.zeros(2), None),
        (np.zeros(3), np.ones(3)),
        (np.zeros(2), np.array([1.0, 0.0])),
    ],
)
def test_standardize_refuses_inconsistent_statistics(
    mean: np.ndarray, std: np.ndarray | None
) -> None:
    with pytest.raises(DataError):
        standardize(np.ones((2, 2)), mean, std)


@pytest.mark.data
def test_uci_credit_file_loads_with_its_label(shared_data: Path) -> None:
    path = shared_data / "uci_default_credit" / "UCI_Credit_Card.csv"

    data = load_party_csv(path, id_column="ID", label_column="default.payment.next.month")

    assert data.X.shape == (30000, 23)
    assert data.y is not None
    assert 0.21 < float(data.y.mean()) < 0.23
    assert data.ids[:2] == ["1", "2"]


@pytest.mark.data
def test_fate_guest_and_host_share_every_id(shared_data: Path) -> None:
    folder = shared_data / "fate_examples"

    guest = load_party_csv(
        folder / "default_credit_hetero_guest.csv", id_column="id", label_column="y"
    )
    host = load_party_csv(folder / "default_credit_hetero_host.csv", id_column="id")

    assert guest.X.shape == (30000, 13)
    assert host.X.shape == (30000, 10)
    assert set(guest.ids) == set(host.ids)
