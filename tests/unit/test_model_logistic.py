"""The plaintext Taylor logistic regression the federation must reproduce."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from fedcredit.errors import ConfigError, DataError
from fedcredit.model.logistic import (
    batch_indices,
    fit_plain,
    sigmoid,
    taylor_gradient,
    taylor_loss,
    taylor_loss_from_sums,
    taylor_residual,
    validation_split,
)
from fedcredit.model.metrics import auc
from fedcredit.model.optim import l2_gradient
from fedcredit.protocol.logistic.settings import reference_settings
from fedcredit.protocol.split import batch_rows, split_rows


def synthetic(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    z = x @ np.array([1.0, -0.8, 0.5, 0.0, 0.3, -0.2]) - 1.0
    y = (rng.random(n) < sigmoid(z)).astype(np.int64)
    return x, y


def test_sigmoid_is_exact_and_does_not_overflow() -> None:
    z = np.array([-1000.0, -3.0, 0.0, 2.0, 1000.0])
    with np.errstate(over="raise"):
        s = sigmoid(z)
    np.testing.assert_allclose(s[1:4], 1.0 / (1.0 + np.exp(-z[1:4])))
    assert s[0] == 0.0 and s[-1] == 1.0


def test_taylor_residual_is_a_quarter_z_plus_half_minus_y() -> None:
    np.testing.assert_allclose(taylor_residual(np.array([2.0, -1.0]), [1, 0]), [0.0, 0.25])


def test_taylor_gradient_is_x_transpose_d_over_batch_size() -> None:
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(taylor_gradient(x, np.array([0.5, -1.0])), [-1.25, -1.5])


def test_taylor_loss_follows_the_formula_and_the_sums_version() -> None:
    z, y = np.array([0.4, -1.2, 2.0]), np.array([1, 0, 0])
    expected = np.mean(math.log(2) - 0.5 * (2 * y - 1) * z + z**2 / 8)
    assert taylor_loss(z, y) == pytest.approx(expected)
    assert taylor_loss_from_sums(3, float((2 * y - 1) @ z), float(z @ z)) == pytest.approx(expected)


def test_taylor_loss_is_close_to_the_logistic_loss_near_zero() -> None:
    z, y = np.linspace(-0.5, 0.5, 11), np.tile([0, 1], 6)[:11]
    exact = np.mean(np.log1p(np.exp(-(2 * y - 1) * z)))
    assert taylor_loss(z, y) == pytest.approx(exact, abs=1e-3)


def test_batch_indices_are_pinned_so_every_party_agrees() -> None:
    # Pinned values: a change here breaks federations of mixed fedcredit versions.
    batches = batch_indices(10, 4, seed=7, epoch=0)
    assert [b.tolist() for b in batches] == [[2, 6, 7, 9], [0, 1, 3, 4, 5, 8]]


def test_batch_indices_agree_with_the_protocols_batch_rows() -> None:
    split = split_rows(1000, test_fraction=0.2, validation_fraction=0.1, seed=7)
    for epoch in range(3):
        ours = batch_indices(split.train.size, 64, seed=7, epoch=epoch)
        for b, positions in enumerate(ours):
            expected = batch_rows(split.train, 64, 7, epoch, b)
            np.testing.assert_array_equal(split.train[positions], expected)


def test_validation_split_agrees_with_the_protocols_split_without_test_rows() -> None:
    split = split_rows(1000, test_fraction=0.0, validation_fraction=0.15, seed=3)
    train, val = validation_split(1000, 0.15, seed=3)
    np.testing.assert_array_equal(train, split.train)
    np.testing.assert_array_equal(val, split.validation)


def test_batch_indices_cover_every_position_once_and_the_remainder_joins_the_last() -> None:
    batches = batch_indices(1003, 100, seed=7, epoch=3)
    assert [b.size for b in batches] == [100] * 9 + [103]
    assert sorted(np.concatenate(batches).tolist()) == list(range(1003))


def test_batch_indices_change_with_the_epoch_and_repeat_with_the_same_arguments() -> None:
    first = np.concatenate(batch_indices(500, 64, seed=1, epoch=0))
    again = np.concatenate(batch_indices(500, 64, seed=1, epoch=0))
    other = np.concatenate(batch_indices(500, 64, seed=1, epoch=1))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("batch_size", [0, -1, 10, 19, 50])
def test_batch_size_zero_or_above_half_of_n_gives_one_full_batch(batch_size: int) -> None:
    batches = batch_indices(10, batch_size, seed=7, epoch=0)
    assert len(batches) == 1 and batches[0].tolist() == list(range(10))


def test_validation_split_is_disjoint_sorted_and_sized() -> None:
    train, val = validation_split(1000, 0.2, seed=7)
    assert val.size == 200 and train.size == 800
    assert not set(train.tolist()) & set(val.tolist())
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)


def test_one_full_batch_sgd_epoch_matches_a_hand_computed_step() -> None:
    x, y = synthetic(200)
    result = fit_plain(x, y, reference_settings(epochs=1, batch_size=0, optimizer="sgd", l2=0.1))
    # From zero weights: z = 0, d = 0.5 - y; L2 of zero weights is zero.
    d = 0.5 - y
    expected = -0.15 * np.r_[x.T @ d / 200, d.mean()]
    np.testing.assert_allclose(result.weights, expected, atol=1e-15)


def test_per_party_optimizers_reproduce_fit_plain_exactly() -> None:
    x, y = synthetic(1000)
    cfg = reference_settings(epochs=3, batch_size=128, l2=0.05, decay=0.2)
    reference = fit_plain(x, y, cfg)
    # The federation: the lender holds columns 0-2 and the intercept, a host columns 3-5.
    lender_w, host_w = np.zeros(4), np.zeros(3)
    lender_opt, host_opt = cfg.make_optimizer(), cfg.make_optimizer()
    for epoch in range(cfg.epochs):
        lender_opt.set_epoch(epoch)
        host_opt.set_epoch(epoch)
        for batch in batch_indices(1000, cfg.batch_size, cfg.seed, epoch):
            xl, xh, yb = x[batch, :3], x[batch, 3:], y[batch]
            z = xl @ lender_w[:3] + lender_w[3] + xh @ host_w
            d = taylor_residual(z, yb)
            g_lender = np.r_[taylor_gradient(xl, d), d.mean()]
            g_lender += l2_gradient(lender_w, cfg.l2, mask_intercept=True)
            g_host = taylor_gradient(xh, d) + l2_gradient(host_w, cfg.l2)
            lender_w = lender_opt.step(lender_w, g_lender)
            host_w = host_opt.step(host_w, g_host)
    np.testing.assert_allclose(reference.coef, np.r_[lender_w[:3], host_w], rtol=0, atol=1e-12)
    assert reference.intercept == pytest.approx(lender_w[3], abs=1e-12)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fit_plain_ranks_as_well_as_sklearn(optimizer: str) -> None:
    x, y = synthetic(4000)
    result = fit_plain(
        x, y, reference_settings(epochs=20, batch_size=512, optimizer=optimizer, tol=0)
    )
    reference = LogisticRegression().fit(x, y).decision_function(x)
    assert auc(y, result.decision_function(x)) == pytest.approx(auc(y, reference), abs=0.005)


def test_training_stops_when_the_loss_changes_less_than_tol() -> None:
    x, y = synthetic(500)
    result = fit_plain(x, y, reference_settings(epochs=50, tol=10.0))
    assert result.converged and result.epochs_run == 2


def test_early_stopping_stops_after_rounds_without_a_better_validation_loss() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2000, 5))
    y = (rng.random(2000) < 0.3).astype(np.int64)  # no signal: validation AUC wanders
    cfg = reference_settings(
        epochs=60,
        batch_size=64,
        optimizer="sgd",
        learning_rate=0.5,
        tol=0,
        validation_fraction=0.3,
        early_stopping_rounds=2,
    )
    result = fit_plain(x, y, cfg)
    _, val = validation_split(2000, 0.3, cfg.seed)
    assert result.stopped_early
    assert result.best_epoch == int(np.argmin(result.validation_loss))
    assert result.epochs_run == result.best_epoch + 3
    # As in the federation, the weights are those of the last epoch run.
    last = taylor_loss(result.decision_function(x[val]), y[val])
    assert last == pytest.approx(result.validation_loss[-1])


def test_explicit_rows_reproduce_a_split_with_a_test_part() -> None:
    x, y = synthetic(1200)
    split = split_rows(1200, test_fraction=0.25, validation_fraction=0.1, seed=7)
    cfg = reference_settings(epochs=4, batch_size=200, validation_fraction=0.1, tol=0)
    result = fit_plain(x, y, cfg, train_rows=split.train, validation_rows=split.validation)
    assert len(result.validation_loss) == 4
    only_train = fit_plain(
        x[split.train], y[split.train], reference_settings(epochs=4, batch_size=200)
    )
    np.testing.assert_allclose(result.weights, only_train.weights, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epochs": 0},
        {"optimizer": "lbfgs"},
        {"validation_fraction": 1.0},
        {"learning_rate": 0.0},
        {"l2": -0.1},
        {"momentum": 1.5, "optimizer": "sgd"},
        {"early_stopping_rounds": -1},
    ],
)
def test_train_config_refuses_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        reference_settings(**kwargs)  # type: ignore[arg-type]


def test_fit_plain_refuses_missing_values() -> None:
    x, y = synthetic(50)
    x[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fit_plain(x, y)


def test_fit_plain_refuses_labels_of_another_length() -> None:
    x, y = synthetic(50)
    with pytest.raises(DataError, match="one label per row"):
        fit_plain(x, y[:-1])


LENDING = ["LIMIT_BAL", "PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6"]


@pytest.mark.data
def test_lender_alone_on_uci_data_matches_sklearn_auc(shared_data: Path) -> None:
    path = shared_data / "uci_default_credit" / "UCI_Credit_Card.csv"
    header = path.read_text().splitlines()[0].replace('"', "").split(",")
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    x = table[:, [header.index(c) for c in LENDING]]
    y = table[:, header.index("default.payment.next.month")].astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y, random_state=7)
    scaler = StandardScaler().fit(x_tr)
    result = fit_plain(scaler.transform(x_tr), y_tr, reference_settings())
    reference = LogisticRegression(max_iter=1000).fit(scaler.transform(x_tr), y_tr)
    ours = auc(y_te, result.decision_function(scaler.transform(x_te)))
    theirs = auc(y_te, reference.decision_function(scaler.transform(x_te)))
    assert ours == pytest.approx(theirs, abs=0.01)
