"""Optimizers: update rules, learning-rate schedules, JSON state round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedcredit.errors import ConfigError
from fedcredit.model.optim import (
    SGD,
    Adam,
    l2_gradient,
    make_optimizer,
    optimizer_from_state,
)


def test_sgd_without_momentum_takes_a_plain_gradient_step() -> None:
    w = SGD(lr=0.5).step(np.array([1.0, 2.0]), np.array([0.2, -0.4]))
    np.testing.assert_allclose(w, [0.9, 2.2])


def test_sgd_momentum_accumulates_velocity() -> None:
    optimizer = SGD(lr=1.0, momentum=0.5)
    w = optimizer.step(np.zeros(1), np.ones(1))
    w = optimizer.step(w, np.ones(1))
    # v1 = 1, v2 = 0.5 * 1 + 1 = 1.5; w = -1 - 1.5
    np.testing.assert_allclose(w, [-2.5])


def test_adam_first_step_moves_each_weight_by_the_learning_rate() -> None:
    w = Adam(lr=0.1).step(np.zeros(3), np.array([5.0, -0.01, 2.0]))
    np.testing.assert_allclose(w, [-0.1, 0.1, -0.1], rtol=1e-6)


def test_adam_matches_a_hand_computation_over_two_steps() -> None:
    optimizer = Adam(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
    g1, g2 = np.array([0.5]), np.array([-0.2])
    w = optimizer.step(np.array([1.0]), g1)
    w = optimizer.step(w, g2)
    m = 0.9 * (0.1 * 0.5) + 0.1 * -0.2
    v = 0.999 * (0.001 * 0.25) + 0.001 * 0.04
    m_hat, v_hat = m / (1 - 0.9**2), v / (1 - 0.999**2)
    first = 1.0 - 0.01 * 1.0  # first step: m_hat / sqrt(v_hat) = sign(g1)
    np.testing.assert_allclose(w, [first - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8)], rtol=1e-9)


def test_inverse_decay_divides_the_learning_rate_by_one_plus_decay_times_epoch() -> None:
    optimizer = SGD(lr=0.2, decay=0.5)
    optimizer.set_epoch(4)
    assert optimizer.current_lr == pytest.approx(0.2 / 3.0)


def test_step_schedule_multiplies_by_gamma_every_step_size_epochs() -> None:
    optimizer = Adam(lr=1.0, step_size=3, gamma=0.1)
    lrs = []
    for epoch in range(7):
        optimizer.set_epoch(epoch)
        lrs.append(optimizer.current_lr)
    np.testing.assert_allclose(lrs, [1, 1, 1, 0.1, 0.1, 0.1, 0.01])


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_state_round_trips_through_json_and_continues_identically(name: str) -> None:
    rng = np.random.default_rng(1)
    grads = rng.normal(size=(6, 4))
    original = make_optimizer(name, lr=0.05, decay=0.1)
    w = np.zeros(4)
    for g in grads[:3]:
        w = original.step(w, g)
    restored = optimizer_from_state(json.loads(json.dumps(original.state_dict())))
    w_original, w_restored = w.copy(), w.copy()
    for epoch, g in enumerate(grads[3:], start=1):
        original.set_epoch(epoch)
        restored.set_epoch(epoch)
        w_original = original.step(w_original, g)
        w_restored = restored.step(w_restored, g)
    np.testing.assert_array_equal(w_original, w_restored)


def test_loading_another_optimizers_state_is_refused() -> None:
    with pytest.raises(ConfigError, match="not 'adam'"):
        Adam().load_state_dict(SGD().state_dict())


def test_loading_an_incomplete_state_is_refused() -> None:
    with pytest.raises(ConfigError, match="incomplete"):
        SGD().load_state_dict({"name": "sgd", "lr": 0.1})


def test_make_optimizer_refuses_an_unknown_name() -> None:
    with pytest.raises(ConfigError, match="unknown optimizer"):
        make_optimizer("rmsprop")


def test_make_optimizer_refuses_an_unknown_argument() -> None:
    with pytest.raises(ConfigError, match="bad arguments"):
        make_optimizer("sgd", beta1=0.9)


@pytest.mark.parametrize("kwargs", [{"lr": 0.0}, {"lr": -1.0}, {"momentum": 1.0}, {"decay": -1}])
def test_bad_hyper_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        make_optimizer("sgd", **kwargs)


def test_a_step_refuses_a_gradient_of_another_shape() -> None:
    with pytest.raises(ConfigError, match="same length"):
        SGD().step(np.zeros(3), np.zeros(2))


def test_l2_gradient_spares_the_intercept_when_asked() -> None:
    np.testing.assert_allclose(l2_gradient(np.array([1.0, -2.0, 3.0]), 0.1, True), [0.1, -0.2, 0])
    np.testing.assert_allclose(l2_gradient(np.array([1.0, -2.0]), 0.1), [0.1, -0.2])
