"""fedcredit.data.synthetic: three institutions whose columns together beat the lender's alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from fedcredit.data.loader import PartyData, load_party_csv, standardize
from fedcredit.data.synthetic import (
    ECOMMERCE_COLUMNS,
    LENDER_COLUMNS,
    PAYMENTS_COLUMNS,
    write_institutions,
)
from fedcredit.errors import ConfigError

N = 20000


@pytest.fixture(scope="module")
def parties(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PartyData]:
    paths = write_institutions(tmp_path_factory.mktemp("synthetic"), N, seed=11)
    return {
        "lender": load_party_csv(paths["lender"], id_column="id", label_column="default"),
        "ecommerce": load_party_csv(paths["ecommerce"], id_column="id"),
        "payments": load_party_csv(paths["payments"], id_column="id"),
    }


def rows_for(data: PartyData, ids: list[str]) -> np.ndarray:
    position = {value: row for row, value in enumerate(data.ids)}
    return np.array([position[value] for value in ids])


def test_files_load_with_the_expected_columns(parties: dict[str, PartyData]) -> None:
    assert parties["lender"].feature_names == list(LENDER_COLUMNS)
    assert parties["ecommerce"].feature_names == list(ECOMMERCE_COLUMNS)
    assert parties["payments"].feature_names == list(PAYMENTS_COLUMNS)
    assert all(value.startswith("C") and len(value) == 8 for value in parties["lender"].ids)


def test_three_way_overlap_is_the_requested_fraction(parties: dict[str, PartyData]) -> None:
    common = set.intersection(*(set(data.ids) for data in parties.values()))

    assert len(common) == round(0.8 * N)
    for data in parties.values():
        assert 0.85 * N <= data.n_rows <= 0.95 * N


def test_each_file_has_its_own_row_order(parties: dict[str, PartyData]) -> None:
    common = sorted(set.intersection(*(set(data.ids) for data in parties.values())))
    orders = [tuple(rows_for(data, common).argsort()) for data in parties.values()]

    assert len(set(orders)) == 3


def test_default_rate_is_about_one_in_five(parties: dict[str, PartyData]) -> None:
    labels = parties["lender"].y

    assert labels is not None
    assert 0.15 <= float(labels.mean()) <= 0.25


def test_ecommerce_orders_average_about_130_a_year(parties: dict[str, PartyData]) -> None:
    orders = parties["ecommerce"].X[:, ECOMMERCE_COLUMNS.index("orders_per_year")]

    assert 115 <= float(orders.mean()) <= 145


def test_all_three_parties_score_clearly_better_than_the_lender_alone(
    parties: dict[str, PartyData],
) -> None:
    lender = parties["lender"]
    common = sorted(set.intersection(*(set(data.ids) for data in parties.values())))
    blocks = [data.X[rows_for(data, common)] for data in parties.values()]
    assert lender.y is not None
    y = lender.y[rows_for(lender, common)]

    def held_out_auc(X: np.ndarray) -> float:
        Z, _, _ = standardize(X)
        train_x, test_x, train_y, test_y = train_test_split(
            Z, y, test_size=0.25, random_state=7, stratify=y
        )
        model = LogisticRegression(max_iter=1000).fit(train_x, train_y)
        return float(roc_auc_score(test_y, model.predict_proba(test_x)[:, 1]))

    alone = held_out_auc(blocks[0])
    together = held_out_auc(np.hstack(blocks))

    assert together - alone >= 0.04
    assert alone >= 0.6


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    first = write_institutions(tmp_path / "a", 200, seed=3)
    second = write_institutions(tmp_path / "b", 200, seed=3)

    for name, path in first.items():
        assert path.read_bytes() == second[name].read_bytes()


def test_overlap_of_one_gives_every_party_every_customer(tmp_path: Path) -> None:
    paths = write_institutions(tmp_path, 300, overlap=1.0)

    for path in paths.values():
        assert len(load_party_csv(path, id_column="id").ids) == 300


@pytest.mark.parametrize(("n", "overlap"), [(5, 0.8), (100, 1.5), (100, -0.1)])
def test_bad_arguments_are_config_errors(tmp_path: Path, n: int, overlap: float) -> None:
    with pytest.raises(ConfigError):
        write_institutions(tmp_path, n, overlap=overlap)
