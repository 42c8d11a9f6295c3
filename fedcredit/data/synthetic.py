"""Synthetic data for three institutions that share customers: a lender, a shop, a payments firm.

Each customer has three hidden traits (financial stress, impulsiveness, affluence)
that shape every party's columns. Defaults follow a hidden logistic model over
columns of all three parties, so the lender's columns alone score clearly worse
than the three parties' together: that gap is what a vertical federation buys.

Each party holds a subset of the customer universe. A fraction ``overlap`` of the
customers is held by all three; every other customer is held by one or two parties
(each of the six patterns equally likely), so a party holds about
``overlap + (1 - overlap) / 2`` of the universe and the three-way intersection is
exactly ``round(overlap * n_customers)`` customers. Each file lists its rows in its
own random order. Everything is vectorized: a million customers take seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedcredit.errors import ConfigError

LENDER_COLUMNS = ("prior_loans", "delinquencies_2y", "credit_limit", "tenure_months")
ECOMMERCE_COLUMNS = (
    "orders_per_year",
    "avg_basket",
    "return_rate",
    "share_electronics",
    "share_groceries",
    "share_luxury",
    "account_age_months",
    "late_night_share",
)
PAYMENTS_COLUMNS = (
    "monthly_outflow",
    "avg_balance",
    "utility_on_time_rate",
    "card_repayment_ratio",
    "linked_cards",
)
LABEL_COLUMN = "default"
ID_COLUMN = "id"
TARGET_DEFAULT_RATE = 0.2

# Weights of the hidden model on standardized (log for amounts) columns. The
# partners' columns carry most of the signal the lender's columns do not.
_WEIGHTS: dict[str, float] = {
    "delinquencies_2y": 0.5,
    "prior_loans": 0.15,
    "credit_limit": -0.2,
    "tenure_months": -0.15,
    "return_rate": 0.15,
    "share_luxury": 0.2,
    "share_groceries": -0.15,
    "late_night_share": 0.3,
    "orders_per_year": 0.1,
    "utility_on_time_rate": -0.35,
    "card_repayment_ratio": -0.3,
    "avg_balance": -0.25,
    "linked_cards": 0.15,
}
_FORMATS = {
    "avg_basket": "%.2f",
    "monthly_outflow": "%.2f",
    "avg_balance": "%.2f",
    "return_rate": "%.4f",
    "share_electronics": "%.4f",
    "share_groceries": "%.4f",
    "share_luxury": "%.4f",
    "late_night_share": "%.4f",
    "utility_on_time_rate": "%.4f",
    "card_repayment_ratio": "%.4f",
}
"""printf formats of the float columns; every other column is written as an integer."""
_LOG_COLUMNS = frozenset({"credit_limit", "avg_balance", "avg_basket", "monthly_outflow"})


def _beta(rng: np.random.Generator, mean: np.ndarray, concentration: float) -> np.ndarray:
    return rng.beta(mean * concentration, (1.0 - mean) * concentration)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    result: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return result


def _columns(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    stress, impulse, wealth = rng.standard_normal((3, n))
    noise = rng.standard_normal
    cols: dict[str, np.ndarray] = {}
    cols["prior_loans"] = rng.poisson(np.exp(0.6 + 0.3 * stress)).astype(np.float64)
    cols["delinquencies_2y"] = rng.poisson(np.exp(-1.6 + 0.6 * stress)).astype(np.float64)
    limit = np.exp(8.5 + 0.5 * wealth - 0.15 * stress + 0.3 * noise(n))
    cols["credit_limit"] = np.round(limit, -2) + 100.0
    cols["tenure_months"] = rng.integers(1, 241, n).astype(np.float64)

    cols["orders_per_year"] = rng.poisson(rng.gamma(4.0, 130.0 / 4.0, n) * np.exp(0.1 * impulse))
    cols["orders_per_year"] = cols["orders_per_year"].astype(np.float64)
    cols["avg_basket"] = np.round(np.exp(3.6 + 0.3 * wealth + 0.25 * noise(n)), 2)
    cols["return_rate"] = _beta(rng, _sigmoid(-2.0 + 0.4 * impulse), 20.0)
    shares = np.stack(
        [
            rng.gamma(2.0 * np.exp(0.3 * impulse)),
            rng.gamma(4.0 * np.exp(-0.2 * impulse)),
            rng.gamma(0.7 * np.exp(0.4 * impulse + 0.2 * wealth)),
            rng.gamma(3.0, 1.0, n),
        ]
    )
    shares /= shares.sum(axis=0)
    cols["share_electronics"], cols["share_groceries"], cols["share_luxury"] = shares[:3]
    cols["account_age_months"] = rng.integers(1, 181, n).astype(np.float64)
    cols["late_night_share"] = _beta(rng, _sigmoid(-1.8 + 0.5 * impulse + 0.3 * stress), 15.0)

    cols["monthly_outflow"] = np.round(np.exp(7.3 + 0.5 * wealth + 0.2 * noise(n)), 2)
    balance = np.exp(7.5 + 0.8 * wealth - 0.5 * stress + 0.4 * noise(n))
    cols["avg_balance"] = np.round(balance, 2)
    cols["utility_on_time_rate"] = _beta(rng, _sigmoid(2.5 - 0.7 * stress), 25.0)
    cols["card_repayment_ratio"] = _beta(rng, _sigmoid(1.0 - 0.6 * stress + 0.3 * wealth), 10.0)
    cols["linked_cards"] = 1.0 + rng.poisson(np.exp(0.3 + 0.2 * stress + 0.2 * wealth))
    return cols


def _labels(rng: np.random.Generator, cols: dict[str, np.ndarray]) -> np.ndarray:
    score = np.zeros(len(cols["tenure_months"]))
    for name, weight in _WEIGHTS.items():
        values = cols[name]
        if name in _LOG_COLUMNS:
            values = np.log(np.maximum(values, 0.01))
        score += weight * (values - values.mean()) / values.std()
    # Find the intercept that gives the target default rate (bisection: the mean
    # probability rises monotonically with the intercept).
    low, high = -10.0, 10.0
    for _ in range(60):
        middle = (low + high) / 2.0
        if _sigmoid(score + middle).mean() < TARGET_DEFAULT_RATE:
            low = middle
        else:
            high = middle
    return (rng.random(score.shape) < _sigmoid(score + low)).astype(np.int8)


def _membership(rng: np.random.Generator, n: int, overlap: float) -> np.ndarray:
    """Boolean (3, n): which party holds which customer."""
    held = np.ones((3, n), dtype=bool)
    shared = round(overlap * n)
    outside = rng.permutation(n)[shared:]
    # The six patterns of one or two holders among three parties.
    patterns = np.array(
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=bool
    )
    held[:, outside] = patterns[rng.integers(0, 6, outside.size)].T
    return held


def _text(values: np.ndarray, fmt: str) -> list[str]:
    if fmt == "%d":
        return list(map(str, values.astype(np.int64).tolist()))
    return list(map(fmt.__mod__, values.tolist()))


def _write(
    path: Path,
    rng: np.random.Generator,
    rows: np.ndarray,
    columns: dict[str, tuple[np.ndarray, str]],
    id_width: int,
) -> None:
    """Write the given customers (rows of the universe) in a fresh random order."""
    order = rng.permutation(rows)
    texts = [list(map(f"C%0{id_width}d".__mod__, order.tolist()))]
    texts += [_text(values[order], fmt) for values, fmt in columns.values()]
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(",".join([ID_COLUMN, *columns]) + "\n")
        handle.writelines(line + "\n" for line in map(",".join, zip(*texts, strict=True)))


def write_institutions(
    out_dir: str | Path,
    n_customers: int = 30000,
    *,
    overlap: float = 0.8,
    seed: int = 7,
) -> dict[str, Path]:
    """Write ``lender.csv``, ``ecommerce.csv`` and ``payments.csv`` into ``out_dir``.

    Returns ``{"lender": path, "ecommerce": path, "payments": path}``. Ids are
    strings ``C`` + zero-padded customer number, column ``id``; the lender's file
    also has the 0/1 label ``default`` (about 20 % positive). The same ``seed``
    gives the same files.
    """
    if n_customers < 10:
        raise ConfigError(f"n_customers must be at least 10, got {n_customers}")
    if not 0.0 <= overlap <= 1.0:
        raise ConfigError(f"overlap must be within [0, 1], got {overlap}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cols = _columns(rng, n_customers)
    label = _labels(rng, cols).astype(np.float64)
    held = _membership(rng, n_customers, overlap)
    id_width = max(7, len(str(n_customers - 1)))

    cols[LABEL_COLUMN] = label
    layout = {
        "lender": [*LENDER_COLUMNS, LABEL_COLUMN],
        "ecommerce": list(ECOMMERCE_COLUMNS),
        "payments": list(PAYMENTS_COLUMNS),
    }
    paths: dict[str, Path] = {}
    for party, (name, names) in enumerate(layout.items()):
        path = out / f"{name}.csv"
        columns = {column: (cols[column], _FORMATS.get(column, "%d")) for column in names}
        _write(path, rng, np.flatnonzero(held[party]), columns, id_width)
        paths[name] = path
    return paths
