"""Federated binning in one process: encrypted per-bin counts equal plain counts, WOE and IV
equal a plaintext computation, plans and encoders behave, malformed input is refused."""

from __future__ import annotations

import random

import numpy as np
import pytest

from fedcredit.crypto import generate_keypair
from fedcredit.errors import ProtocolError
from fedcredit.model.binning import bin_counts, group_counts, merge_monotonic
from fedcredit.model.woe import woe_iv
from fedcredit.protocol.binning import (
    BinEncoder,
    ColumnPlan,
    EncryptedBinSums,
    LenderBinning,
    PartnerBinning,
    bins_of,
    category_code,
    category_label,
    fit_columns,
    geometric_noise,
    label_code,
    open_bin_sums,
    run_binning_local,
    train_raw,
    with_category_codes,
)
from fedcredit.protocol.binning.settings import BinningSettings
from fedcredit.protocol.logistic.lender import LabelParty
from fedcredit.protocol.logistic.partner import FeatureParty
from fedcredit.protocol.logistic.settings import TrainSettings

N = 900
CATEGORIES = ["A11", "A12", "A13", "A VERY LONG CATEGORY", ""]
# Noise off: these tests compare the federated counts with a plain computation exactly.
SETTINGS = BinningSettings(bins=8, min_bin_share=0.05, iv_threshold=0.02, noise_epsilon=0.0)


def make_parties(public_key):  # type: ignore[no-untyped-def]
    """A lender (2 columns) and a partner (2 numeric columns and one categorical), own orders."""
    rng = np.random.default_rng(4)
    ids = [f"C{i:04d}" for i in range(N)]
    lender_x = rng.normal(size=(N, 2))
    host_x = rng.normal(size=(N, 2))
    cats = rng.choice(CATEGORIES, size=N, p=[0.4, 0.3, 0.2, 0.06, 0.04])
    logit = lender_x[:, 0] + 1.5 * host_x[:, 0] + (cats == "A11") - 1.0
    y = (rng.random(N) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    settings = TrainSettings(batch_size=200, test_fraction=0.2, seed=3)
    order = rng.permutation(N)
    lender = LabelParty(
        "lender", [ids[i] for i in order], lender_x[order], ["a", "b"], y[order], settings
    )
    x, names = with_category_codes(host_x, ["h0", "h1"], {"cat": list(cats)})
    host = FeatureParty("host", ids, x, names, settings)
    for party in (lender, host):
        party.public_key = public_key
        party.align(sorted(ids))
    return lender, host


def pooled_rows(lender: LabelParty, host: FeatureParty) -> tuple[np.ndarray, np.ndarray]:
    """The host's training rows and the matching labels, as if pooled (plaintext reference)."""
    assert lender.split is not None
    return train_raw(host), lender.labels(lender.split.train).astype(np.int64)


def encrypted_stats(lender: LabelParty, host: FeatureParty, **kwargs):  # type: ignore[no-untyped-def]
    lender_side = LenderBinning(lender, SETTINGS)
    labels = lender_side.encrypt_labels(1024, allow_small=True)
    partner = PartnerBinning(host, kwargs.pop("settings", SETTINGS), ["cat"])
    partner.receive_labels(labels)
    sums = partner.bin_sums(**kwargs)
    lender_side.receive_sums("host", sums)
    return lender_side, partner, sums


def test_per_bin_counts_from_the_encrypted_path_equal_plain_counts(public_key) -> None:  # type: ignore[no-untyped-def]
    lender, host = make_parties(public_key)
    lender_side, partner, _ = encrypted_stats(lender, host)
    raw, y = pooled_rows(lender, host)
    stats, _ = lender_side.stats["host"]
    assert [s.name for s in stats] == ["h0", "h1", "cat"]
    for column, got in zip(partner.columns, stats, strict=True):
        rows, events = bin_counts(column.bins_of(raw), y, column.binning.n_bins)
        np.testing.assert_array_equal(got.rows, rows)
        np.testing.assert_array_equal(got.events, events)


def test_woe_and_iv_equal_a_plain_computation_after_monotonic_merging(public_key) -> None:  # type: ignore[no-untyped-def]
    lender, host = make_parties(public_key)
    raw, y = pooled_rows(lender, host)
    columns = fit_columns(host, SETTINGS, ["cat"])
    result = run_binning_local(
        lender, [host], SETTINGS, categorical={"host": ["cat"]}, key_bits=1024, allow_small=True
    )
    report = {(r["party"], r["column"]): r for r in result.report}
    for column in columns:
        rows, events = bin_counts(column.bins_of(raw), y, column.binning.n_bins)
        groups = (
            [[k] for k in range(len(rows) - 1)]
            if column.categorical
            else merge_monotonic(rows[:-1], events[:-1])
        )
        merged_rows = np.append(group_counts(rows[:-1], groups), rows[-1])
        merged_events = np.append(group_counts(events[:-1], groups), events[-1])
        _, iv = woe_iv(merged_rows, merged_events)
        _, iv_fine = woe_iv(rows, events)
        row = report[("host", column.name)]
        assert row["iv"] == pytest.approx(iv, abs=1e-6)
        assert row["iv_fine"] == pytest.approx(iv_fine, abs=1e-6)
        assert row["bins"] == len(merged_rows)
        assert row["kept"] == (iv >= SETTINGS.iv_threshold)


def test_the_strong_columns_are_kept_and_the_noise_column_dropped(public_key) -> None:  # type: ignore[no-untyped-def]
    lender, host = make_parties(public_key)
    result = run_binning_local(
        lender, [host], SETTINGS, categorical={"host": ["cat"]}, key_bits=1024, allow_small=True
    )
    kept = {(r["party"], r["column"]) for r in result.report if r["kept"]}
    assert {("lender", "a"), ("host", "h0"), ("host", "cat")} <= kept
    assert ("host", "h1") not in kept and ("lender", "b") not in kept
    assert host.feature_names[0].startswith("h0=")
    assert lender.feature_names == ["a:woe"]
    assert result.features == {"lender": 1, "host": len(host.feature_names)}


def test_partners_are_one_hot_without_a_reference_bin_and_the_lender_woe(public_key) -> None:  # type: ignore[no-untyped-def]
    lender, host = make_parties(public_key)
    run_binning_local(
        lender, [host], SETTINGS, categorical={"host": ["cat"]}, key_bits=1024, allow_small=True
    )
    assert host.encoder is not None and lender.encoder is not None
    centred = host.encoder.transform(train_raw(host))
    # The indicators are centred on the training rows (the intercept absorbs the shift).
    assert np.allclose(centred.mean(axis=0), 0.0)
    x = centred + np.concatenate([c.centre for c in host.encoder.columns])[None, :]
    assert set(np.round(np.unique(x), 12)) <= {0.0, 1.0}
    per_column = {}
    for name in host.feature_names:
        per_column.setdefault(name.split("=")[0], []).append(host.feature_names.index(name))
    for columns in per_column.values():
        # Every row is in at most one bin of a column; rows of the reference bin in none.
        sums = x[:, columns].sum(axis=1)
        assert sums.max() == 1.0 and sums.min() == 0.0
    woe = lender.encoder.transform(train_raw(lender))
    assert woe.shape[1] == 1 and len(np.unique(woe)) > 2


def test_noise_changes_counts_but_keeps_them_consistent(public_key) -> None:  # type: ignore[no-untyped-def]
    lender, host = make_parties(public_key)
    noisy = BinningSettings(bins=8, noise_epsilon=1.0)
    lender_side, partner, sums = encrypted_stats(lender, host, settings=noisy, rng=random.Random(1))
    raw, y = pooled_rows(lender, host)
    assert sums.noisy
    stats, _ = lender_side.stats["host"]
    differences = []
    for column, got in zip(partner.columns, stats, strict=True):
        rows, events = bin_counts(column.bins_of(raw), y, column.binning.n_bins)
        assert np.all(got.events <= got.rows) and np.all(got.events >= 0)
        differences.extend((got.rows - rows).tolist() + (got.events - events).tolist())
    assert any(differences)
    assert np.abs(differences).mean() < 20  # scale 4 / epsilon = 4


def test_geometric_noise_has_the_documented_scale() -> None:
    noise = geometric_noise(20000, 2.0, random.Random(3))
    alpha = np.exp(-2.0 / 4.0)
    assert abs(noise.mean()) < 0.1
    assert noise.var() == pytest.approx(2 * alpha / (1 - alpha) ** 2, rel=0.1)


def test_the_lender_refuses_event_counts_above_the_rows(public_key) -> None:  # type: ignore[no-untyped-def]
    lender, host = make_parties(public_key)
    lender_side, _, sums = encrypted_stats(lender, host)
    forged = EncryptedBinSums(
        sums.names,
        tuple(tuple(0 for _ in r) for r in sums.rows),
        sums.events,
        False,
        sums.unordered,
    )
    with pytest.raises(ProtocolError, match="out of range"):
        open_bin_sums(lender_side._private, "host", forged, len(train_raw(lender)))  # type: ignore[arg-type]


def test_a_partner_refuses_a_merge_of_non_adjacent_numeric_bins(public_key) -> None:  # type: ignore[no-untyped-def]
    lender, host = make_parties(public_key)
    _, partner, _ = encrypted_stats(lender, host)
    plans = [
        ColumnPlan(c.name, True, tuple((k,) for k in range(c.binning.n_regular)))
        for c in partner.columns
    ]
    n = partner.columns[0].binning.n_regular
    plans[0] = ColumnPlan("h0", True, ((0, 2), (1,), *((k,) for k in range(3, n))))
    with pytest.raises(ProtocolError, match="bad merge"):
        partner.apply_plan(plans)


def test_a_partner_refuses_labels_under_a_key_weaker_than_the_job_key(public_key) -> None:  # type: ignore[no-untyped-def]
    lender, host = make_parties(public_key)
    host.public_key = generate_keypair(1536, allow_small=True)[0]
    lender_side = LenderBinning(lender, SETTINGS)
    labels = lender_side.encrypt_labels(1024, allow_small=True)
    with pytest.raises(ProtocolError, match="below the job's"):
        PartnerBinning(host, SETTINGS).receive_labels(labels)


def test_the_encoder_round_trips_through_the_model_part(public_key) -> None:  # type: ignore[no-untyped-def]
    lender, host = make_parties(public_key)
    run_binning_local(
        lender, [host], SETTINGS, categorical={"host": ["cat"]}, key_bits=1024, allow_small=True
    )
    host.weights = np.linspace(-1, 1, host.n_weights)
    part = host.model_part()
    assert {row["column"] for row in part["encoder"]["points"]["rows"]} == {"h0", "cat"}
    fresh = FeatureParty("host", host.ids, host.raw, ["h0", "h1", "cat"], host.settings)
    fresh.load_model_part(part)
    assert fresh.feature_names == host.feature_names
    ids = host.ids[:50]
    np.testing.assert_array_equal(fresh.rows_for_ids(ids)[0], host.rows_for_ids(ids)[0])
    restored = BinEncoder.from_dict(part["encoder"])
    assert restored.to_dict()["columns"] == part["encoder"]["columns"]


def test_points_follow_the_scorecard_convention(public_key) -> None:  # type: ignore[no-untyped-def]
    lender, host = make_parties(public_key)
    run_binning_local(
        lender, [host], SETTINGS, categorical={"host": ["cat"]}, key_bits=1024, allow_small=True
    )
    lender.weights = np.array([0.8, -1.2])
    points = lender.model_part()["encoder"]["points"]
    factor = 20.0 / np.log(2.0)
    assert points["base"] == pytest.approx(600 - factor * np.log(50) + factor * 1.2, abs=1e-3)
    woe = lender.encoder.columns[0].woe  # type: ignore[union-attr]
    got = [row["points"] for row in points["rows"] if row["column"] == "a"]
    assert got == pytest.approx([-factor * 0.8 * w for w in woe], abs=1e-3)


def test_a_partners_points_add_up_to_its_centred_partial_score(public_key) -> None:  # type: ignore[no-untyped-def]
    lender, host = make_parties(public_key)
    run_binning_local(
        lender, [host], SETTINGS, categorical={"host": ["cat"]}, key_bits=1024, allow_small=True
    )
    assert isinstance(host.encoder, BinEncoder)
    host.weights = np.linspace(-1.0, 1.5, host.n_weights)
    rows = host.model_part()["encoder"]["points"]["rows"]
    table = {(r["column"], r["bin"]): r["points"] for r in rows}
    raw = train_raw(host)[:50]
    factor = 20.0 / np.log(2.0)
    partial = host.encoder.transform(raw) @ host.weights  # before fixed-point rounding
    for i in range(len(raw)):
        total = sum(
            table[(c.name, int(bins_of(c.binning, raw[i : i + 1, c.index], c.categorical)[0]))]
            for c in host.encoder.columns
        )
        assert total == pytest.approx(-factor * partial[i], abs=1e-3)


def test_category_codes_are_exact_stable_and_readable() -> None:
    for text in ("A11", "A202", "yes", "ümla"):
        assert category_label(category_code(text)) == text
    long = category_code("a category longer than six bytes")
    assert category_label(long).startswith("#") and label_code(category_label(long)) == long
    assert category_code("  ") == 0.0
    assert category_code("A11") != category_code("A12")


def test_an_unseen_category_goes_to_the_other_bin(public_key) -> None:  # type: ignore[no-untyped-def]
    _, host = make_parties(public_key)
    cat = fit_columns(host, SETTINGS, ["cat"])[2]
    raw = np.zeros((2, 3))
    raw[:, 2] = [category_code("NEW"), 0.0]
    bins = cat.bins_of(raw)
    assert bins.tolist() == [cat.binning.other_bin, cat.binning.missing_bin]
