"""Binning, label-aware merging from counts, WOE/IV, selection and coding."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fedcredit.errors import ConfigError, DataError
from fedcredit.model.binning import (
    Binning,
    bin_counts,
    compose_groups,
    fit_bins,
    group_counts,
    merge_chi2,
    merge_monotonic,
    merge_small,
)
from fedcredit.model.woe import (
    apply_woe,
    one_hot,
    select_by_correlation,
    select_by_iv,
    woe_iv,
)


def test_quantile_edges_split_evenly_and_bins_are_right_closed() -> None:
    binning = fit_bins(np.arange(100.0), "quantile", n_bins=4, min_share=0.0)
    assert binning.edges == (24.0, 49.0, 74.0)
    assert binning.transform([0.0, 24.0, 24.5, 99.0]).tolist() == [0, 0, 1, 3]
    assert np.bincount(binning.transform(np.arange(100.0))).tolist() == [25, 25, 25, 25]


def test_equal_width_edges_split_the_range_evenly() -> None:
    binning = fit_bins(np.linspace(0.0, 10.0, 101), "equal_width", n_bins=5, min_share=0.0)
    assert binning.edges == pytest.approx((2.0, 4.0, 6.0, 8.0))


def test_tied_values_give_unique_edges_and_no_empty_top_bin() -> None:
    values = np.r_[np.zeros(600), np.arange(1.0, 401.0)]
    binning = fit_bins(values, "quantile", n_bins=10, min_share=0.0)
    counts = np.bincount(binning.transform(values), minlength=binning.n_bins)[:-1]
    assert np.all(counts > 0)
    assert counts[0] == 600


def test_bins_below_min_share_are_merged() -> None:
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(size=1000), [50.0] * 10]  # a tiny tail
    binning = fit_bins(values, "equal_width", n_bins=10, min_share=0.05)
    counts = np.bincount(binning.transform(values), minlength=binning.n_bins)[:-1]
    assert np.all(counts / counts.sum() >= 0.05)


def test_missing_values_go_to_their_own_last_bin_even_if_unseen_at_fit() -> None:
    binning = fit_bins(np.arange(10.0), "quantile", n_bins=2, min_share=0.0)
    index = binning.transform([np.nan, 0.0, 9.0])
    assert index.tolist() == [binning.missing_bin, 0, 1]
    assert binning.missing_bin == binning.n_bins - 1


def test_string_columns_are_binned_as_categories_with_rare_ones_in_other() -> None:
    values = np.array(["a"] * 50 + ["b"] * 45 + ["c"] * 3 + ["d"] * 2 + [""] * 5, dtype=object)
    binning = fit_bins(values, min_share=0.05)
    assert binning.kind == "categorical"
    index = binning.transform(["a", "b", "c", "d", "never-seen", None, "", float("nan")])
    a, b, other, missing = 0, 1, binning.other_bin, binning.missing_bin
    assert index.tolist() == [a, b, other, other, other, missing, missing, missing]
    assert binning.labels() == ["a", "b", "other", "missing"]


def test_numeric_codes_can_be_binned_as_categories() -> None:
    binning = fit_bins(np.array([1, 2, 2, 3, 3, 3] * 10), "categorical", min_share=0.0)
    assert binning.transform([3, 1]).tolist() == [2, 0]


def test_regroup_merges_adjacent_numeric_bins_by_dropping_edges() -> None:
    merged = Binning("numeric", edges=(1.0, 2.0, 3.0)).regroup([[0, 1], [2, 3]])
    assert merged.edges == (2.0,)
    assert merged.transform([0.5, 1.5, 2.5, np.nan]).tolist() == [0, 0, 1, 2]


def test_regroup_refuses_non_adjacent_numeric_bins() -> None:
    with pytest.raises(ConfigError, match="adjacent"):
        Binning("numeric", edges=(1.0, 2.0)).regroup([[0, 2], [1]])


def test_regroup_refuses_groups_that_miss_a_bin() -> None:
    with pytest.raises(ConfigError, match="each once"):
        Binning("numeric", edges=(1.0, 2.0)).regroup([[0, 1]])


def test_regroup_may_merge_any_categories() -> None:
    binning = Binning("categorical", groups=(("a",), ("b",), ("c",), ()), other_bin=3)
    merged = binning.regroup([[0, 2], [1, 3]])
    assert merged.transform(["a", "b", "c", "zzz"]).tolist() == [0, 1, 0, 1]


def test_binning_round_trips_through_json() -> None:
    for binning in (
        Binning("numeric", edges=(0.5, 2.0)),
        Binning("categorical", groups=(("x", "y"), ()), other_bin=1),
    ):
        restored = Binning.from_dict(json.loads(json.dumps(binning.to_dict())))
        assert restored == binning


def test_a_malformed_binning_description_is_refused() -> None:
    with pytest.raises(ConfigError, match="malformed"):
        Binning.from_dict({"kind": "numeric"})


def test_numeric_labels_read_as_intervals() -> None:
    labels = Binning("numeric", edges=(1.0, 2.5)).labels()
    assert labels == ["(-inf, 1]", "(1, 2.5]", "(2.5, inf)", "missing"]


def test_bin_counts_count_rows_and_events_per_bin() -> None:
    counts, events = bin_counts([0, 1, 1, 2, 2, 2], [1, 0, 1, 0, 0, 1], 4)
    assert counts.tolist() == [1, 2, 3, 0]
    assert events.tolist() == [1, 1, 1, 0]


def test_merge_small_merges_a_small_bin_into_its_smaller_neighbour() -> None:
    assert merge_small([50, 2, 48, 100], 0.05) == [[0], [1, 2], [3]]


def test_merge_monotonic_pools_violators_on_an_increasing_example() -> None:
    groups = merge_monotonic([100] * 5, [10, 20, 15, 30, 40])
    assert groups == [[0], [1, 2], [3], [4]]


def test_merge_monotonic_finds_a_decreasing_trend() -> None:
    assert merge_monotonic([100] * 4, [50, 30, 35, 10]) == [[0], [1, 2], [3]]


def test_merge_monotonic_result_has_strictly_monotonic_rates() -> None:
    rng = np.random.default_rng(4)
    counts = rng.integers(50, 200, size=12)
    events = rng.binomial(counts, np.linspace(0.1, 0.4, 12))
    groups = merge_monotonic(counts, events, direction="increasing")
    rates = group_counts(events, groups) / group_counts(counts, groups)
    assert np.all(np.diff(rates) > 0)
    assert [k for g in groups for k in g] == list(range(12))


def test_merge_monotonic_puts_empty_bins_with_a_neighbour() -> None:
    assert merge_monotonic([0, 100, 0, 100], [0, 10, 0, 20]) == [[0, 1, 2], [3]]


def test_merge_chi2_joins_bins_with_similar_rates() -> None:
    assert merge_chi2([100] * 4, [10, 11, 40, 41]) == [[0, 1], [2, 3]]


def test_merge_chi2_respects_max_bins() -> None:
    groups = merge_chi2([100] * 6, [5, 15, 30, 45, 60, 80], max_bins=3)
    assert len(groups) == 3


def test_partner_applies_the_lenders_grouping_from_counts_alone() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-(x - 1.0)))).astype(np.int64)
    partner_bins = fit_bins(x, "quantile", n_bins=20, min_share=0.02)
    fine = partner_bins.transform(x)
    # The lender learns only counts per fine bin (regular bins; missing kept apart).
    counts, events = bin_counts(fine, y, partner_bins.n_bins)
    groups = merge_monotonic(counts[:-1], events[:-1])
    merged = partner_bins.regroup(groups)
    counts2, events2 = bin_counts(merged.transform(x), y, merged.n_bins)
    rates = events2[:-1] / counts2[:-1]
    assert np.all(np.diff(rates) > 0)


def test_compose_groups_maps_groups_of_groups_back_to_fine_bins() -> None:
    assert compose_groups([[0, 1], [2], [3, 4]], [[0], [1, 2]]) == [[0, 1], [2, 3, 4]]


def test_woe_and_iv_match_a_hand_computation() -> None:
    counts, events, s = [100, 200, 100], [10, 40, 50], 0.5
    goods = [c - e for c, e in zip(counts, events, strict=True)]
    e_total = sum(e + s for e in events)
    g_total = sum(g + s for g in goods)
    expected_woe, expected_iv = [], 0.0
    for e, g in zip(events, goods, strict=True):
        de, dg = (e + s) / e_total, (g + s) / g_total
        expected_woe.append(math.log(de / dg))
        expected_iv += (de - dg) * math.log(de / dg)
    woe, iv = woe_iv(counts, events, smoothing=s)
    np.testing.assert_allclose(woe, expected_woe, rtol=1e-12)
    assert iv == pytest.approx(expected_iv, rel=1e-12)
    assert woe[2] > 0 > woe[0]  # positive WOE means riskier than average


def test_woe_of_an_empty_bin_is_zero_and_adds_no_iv() -> None:
    woe, iv = woe_iv([100, 0, 100], [10, 0, 30])
    woe_without, iv_without = woe_iv([100, 100], [10, 30])
    assert woe[1] == 0.0
    np.testing.assert_allclose(woe[[0, 2]], woe_without)
    assert iv == pytest.approx(iv_without)


def test_smoothing_keeps_a_pure_bin_finite() -> None:
    woe, _ = woe_iv([50, 50], [0, 25])
    assert np.all(np.isfinite(woe))


def test_woe_needs_both_classes() -> None:
    with pytest.raises(DataError, match="both"):
        woe_iv([10, 10], [0, 0])


def test_woe_refuses_more_events_than_rows() -> None:
    with pytest.raises(DataError, match="events <= rows"):
        woe_iv([10, 10], [11, 0])


def test_apply_woe_and_one_hot_code_bin_indices() -> None:
    index = np.array([2, 0, 1])
    np.testing.assert_allclose(apply_woe(index, [0.1, 0.2, 0.3]), [0.3, 0.1, 0.2])
    np.testing.assert_array_equal(one_hot(index, 3), [[0, 0, 1], [1, 0, 0], [0, 1, 0]])


def test_one_hot_refuses_an_index_out_of_range() -> None:
    with pytest.raises(DataError, match=r"0\.\.2"):
        one_hot(np.array([0, 3]), 3)


def test_select_by_iv_keeps_strong_columns_strongest_first() -> None:
    assert select_by_iv({"a": 0.01, "b": 0.5, "c": 0.1}, 0.02) == ["b", "c"]


def test_select_by_correlation_drops_the_weaker_of_a_correlated_pair() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=500)
    x = np.c_[a, a * 2 + rng.normal(scale=0.01, size=500), rng.normal(size=500), np.ones(500)]
    names = ["a", "a_copy", "b", "constant"]
    kept = select_by_correlation(x, names, {"a": 0.2, "a_copy": 0.3, "b": 0.1, "constant": 0})
    assert kept == ["a_copy", "b", "constant"]


def test_merge_small_always_merges_empty_bins() -> None:
    assert merge_small([10, 0, 10], 0.0) == [[0, 1], [2]]
