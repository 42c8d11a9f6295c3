"""Federated trees in one process: the same trees as plaintext, and what each message shows."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest

from fedcredit.crypto import EncryptedVector, PackedCiphertexts, PublicKey
from fedcredit.errors import CryptoError
from fedcredit.model import trees as T
from fedcredit.protocol.categories import category_code
from fedcredit.protocol.trees.lender import TreesLender
from fedcredit.protocol.trees.local import LocalTrees
from fedcredit.protocol.trees.messages import Gradients, Histograms, SideRequest
from fedcredit.protocol.trees.partner import TreesPartner
from fedcredit.protocol.trees.scoring import explain
from fedcredit.protocol.trees.settings import TreeSettings

N = 240
COLUMNS = {"lender": [0, 1], "shop": [2, 3], "pay": [4, 5]}


#: Category codes of the categorical columns (``categorical=True``): the lender's "b" (its own,
#: split by category groups) and the shop's "shop2" (cut in the shop's order); "r" is rare.
CATEGORIES = [category_code(c) for c in ("p", "q", "s", "t", "u", "r")]
RARE = CATEGORIES[-1]


def _data(seed: int = 1, categorical: bool = False) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 6))
    x[rng.random((N, 6)) < 0.06] = np.nan
    z = np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 3]) - 0.7 * np.nan_to_num(x[:, 5])
    if categorical:
        for col in (1, 2):
            kind = rng.choice(5, size=N, p=[0.3, 0.25, 0.2, 0.15, 0.1])
            kind[:3] = 5  # three rows of a rare category: below the floor of 5
            x[:, col] = np.asarray(CATEGORIES)[kind]
            x[rng.random(N) < 0.05, col] = 0.0  # empty cells
            z = z + np.array([1.2, -1.0, 0.9, -1.3, 0.2, 0.0])[kind]
    y = (rng.random(N) < 1 / (1 + np.exp(-z))).astype(np.float64)
    return [f"c{i}" for i in range(N)], x, y


def _federation(
    settings: TreeSettings,
    y: np.ndarray | None = None,
    sample_seed: int = 0,
    categorical: bool = False,
) -> tuple[LocalTrees, TreesLender, list[TreesPartner]]:
    ids, x, labels = _data(categorical=categorical)
    labels = labels if y is None else y
    lender = TreesLender(
        "lender",
        ids,
        x[:, COLUMNS["lender"]],
        ["a", "b"],
        labels,
        settings,
        sample_seed=sample_seed,
    )
    partners = [
        TreesPartner(n, ids, x[:, c], [f"{n}{j}" for j in c], settings)
        for n, c in COLUMNS.items()
        if n != "lender"
    ]
    if categorical:
        lender.categorical, partners[0].categorical = ("b",), ("shop2",)
    for role in (lender, *partners):
        role.align(ids)
    return LocalTrees(lender, partners, key_bits=1024, allow_small=True), lender, partners


def _plain(
    lender: TreesLender,
    partners: list[TreesPartner],
    settings: TreeSettings,
    mix: bool,
    sample_seed: int | None = None,
) -> tuple[T.Booster, np.ndarray, list[int]]:
    bins = np.concatenate([lender.bins, *(p.bins for p in partners)], axis=1)
    n_regular = lender.n_regular + [n for p in partners for n in p.n_regular]
    groups = [[0, 1], [2, 3], [4, 5]]
    rng = np.random.default_rng(sample_seed) if sample_seed is not None else None
    assert lender.split is not None
    train = lender.split.train

    def sample(_: int) -> np.ndarray | None:
        return None if rng is None else rng.random(len(train)) < settings.subsample

    plan = T.BoostPlan(
        trees=settings.trees,
        features=(lambda t: groups[t % 3]) if mix else (lambda t: None),
        sample=sample,
        groups=lender.group_columns,  # the lender's categorical columns by category groups
    )
    y = lender.labels(np.arange(N))
    return (
        T.fit(bins, n_regular, y, train, lender.split.validation, settings.params, plan),
        bins,
        n_regular,
    )


@pytest.mark.parametrize("categorical", [False, True])
@pytest.mark.parametrize("mode", ["mix", "joint"])
def test_federated_trees_are_the_plaintext_trees_of_the_pooled_columns(
    mode: str, categorical: bool
) -> None:
    settings = TreeSettings(trees=4 if mode == "mix" else 3, bins=8, min_rows=5, mode=mode)
    local, lender, partners = _federation(settings, categorical=categorical)
    local.train()
    plain, bins, n_regular = _plain(lender, partners, settings, mode == "mix")
    assert np.array_equal(lender.margin, plain.margin(bins, n_regular))
    for mine, theirs in zip(lender.model, plain.trees, strict=True):
        assert np.array_equal(mine.own.exists, theirs.exists)
        assert np.array_equal(mine.own.value, theirs.value)
        assert [bool(s) for s in mine.split_by] == (theirs.feature >= 0).tolist()
        assert {j: m.tolist() for j, m in mine.own.left_set.items()} == {
            j: m.tolist() for j, m in theirs.left_set.items()
        }
    if categorical:
        assert lender.group_columns == {1} and not partners[0].group_columns
        assert any(r.own.left_set for r in lender.model)  # the groups were used


def test_a_partners_rare_category_is_merged_into_other_and_every_bin_keeps_the_floor() -> None:
    settings = TreeSettings(trees=1, bins=8, min_rows=5, mode="mix")
    _, lender, partners = _federation(settings, categorical=True)
    shop = partners[0]
    assert shop.split is not None
    kept = shop.categories[0].tolist()  # "shop2" is the shop's first column
    # "r" (3 rows) alone would leave "other" below the floor: "u", the least frequent, joins it.
    assert sorted(kept) == sorted(CATEGORIES[:4])
    other = len(kept)
    column = shop.raw[shop.aligned_rows, 0]
    for code in (RARE, CATEGORIES[4]):
        assert np.all(shop.bins[column == code, 0] == other)
    assert np.sum(column == RARE) == 3
    train = np.bincount(shop.train_bins[:, 0], minlength=other + 2)
    assert np.all((train[: other + 1] == 0) | (train[: other + 1] >= 5))
    assert np.array_equal(
        shop.bins[:, 1], T.bin_column(shop.raw[shop.aligned_rows, 1], shop.edges[1])
    )
    assert lender.n_regular[1] == len(lender.categories[1]) + 1


@pytest.mark.parametrize("mode", ["mix", "joint"])
def test_an_unseen_category_scores_as_other_and_the_stored_part_scores_the_same(mode: str) -> None:
    settings = TreeSettings(trees=3, bins=8, min_rows=5, mode=mode)
    local, lender, partners = _federation(settings, categorical=True)
    local.train()
    assert lender.split is not None
    ids = [f"c{i}" for i in lender.aligned_rows[lender.split.test]]
    assert np.allclose(local.score(ids), lender.margin[lender.split.test], atol=1e-12)
    answers = {p.name: p.answer_ids(ids) for p in partners}
    raw, _ = lender.raw_for_ids(ids)
    unseen, rare = raw.copy(), raw.copy()
    unseen[:, 1], rare[:, 1] = category_code("never"), RARE
    assert np.all(lender.bins_for(unseen)[:, 1] == len(lender.categories[1]))
    assert np.array_equal(lender.margins(unseen, answers), lender.margins(rare, answers))
    # The model part (its category map and left sets) scores as the trained lender does.
    part = json.loads(json.dumps(lender.model_part()))
    fresh = TreesLender("lender", *_data(categorical=True)[:1], np.zeros((0, 2)), ["a", "b"],
                        np.zeros(0), settings)  # fmt: skip
    fresh.load_model_part(part)
    assert np.array_equal(fresh.margins(unseen, answers), lender.margins(unseen, answers))
    assert np.array_equal(fresh.margins(raw, answers), lender.margins(raw, answers))
    # TreeSHAP reasons read the group splits' sides: they still add up to the margins.
    out = explain(
        lender.model, lender.name, lender.base, lender.bins_for(raw), lender.n_regular, answers
    )
    assert np.allclose(out.reference + out.own.sum(axis=1) + out.partners, out.margins, atol=1e-9)
    assert np.any(out.own[:, 1] != 0)  # the categorical column has reasons of its own


@pytest.mark.parametrize("mode", ["mix", "joint"])
def test_resuming_from_a_checkpoint_with_group_splits_grows_the_same_trees(mode: str) -> None:
    settings = TreeSettings(trees=4, bins=8, min_rows=5, mode=mode)
    whole, lender, _ = _federation(settings, categorical=True)
    whole.train()
    first, before, before_partners = _federation(settings, categorical=True)
    first.train(trees=3)
    states = json.loads(json.dumps([before.state(), *(p.state() for p in before_partners)]))
    resumed, after, after_partners = _federation(settings, categorical=True)
    for role, state in zip([after, *after_partners], states, strict=True):
        role.load_state(state)
    resumed.setup()
    resumed.tree(3)
    assert np.array_equal(after.margin, lender.margin)
    assert any(r.own.left_set for r in after.model)
    for mine, theirs in zip(after.model, lender.model, strict=True):
        assert {j: m.tolist() for j, m in mine.own.left_set.items()} == {
            j: m.tolist() for j, m in theirs.own.left_set.items()
        }


def test_a_row_sample_gives_the_plaintext_trees_of_the_same_sample() -> None:
    settings = TreeSettings(trees=3, bins=8, min_rows=5, mode="joint", subsample=0.6)
    local, lender, partners = _federation(settings, sample_seed=42)
    local.train()
    plain, bins, n_regular = _plain(lender, partners, settings, mix=False, sample_seed=42)
    assert np.array_equal(lender.margin, plain.margin(bins, n_regular))


@pytest.mark.parametrize("mode", ["mix", "joint"])
def test_scoring_by_leaf_masks_or_split_bits_gives_the_training_margins(mode: str) -> None:
    settings = TreeSettings(trees=3, bins=8, min_rows=5, mode=mode)
    local, lender, _ = _federation(settings)
    local.train()
    assert lender.split is not None
    test = lender.split.test
    scored = local.score([f"c{i}" for i in lender.aligned_rows[test]])
    assert np.allclose(scored, lender.margin[test], atol=1e-12)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, PackedCiphertexts):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [v for f in dataclasses.fields(value) for v in _leaves(getattr(value, f.name))]
    if isinstance(value, tuple | list):
        return [v for item in value for v in _leaves(item)]
    return [value]


@pytest.mark.parametrize("mode", ["mix", "joint"])
def test_no_partner_message_carries_a_value_a_threshold_or_an_edge_in_the_clear(mode: str) -> None:
    settings = TreeSettings(trees=3, bins=8, min_rows=5, mode=mode)
    local, _, partners = _federation(settings)
    run = local.train()
    local.score(["c1", "c2", "c3"])
    edges = [e.tobytes() for p in partners for edge in p.edges for e in edge.reshape(-1, 1)]
    seen = 0
    for sender, receiver, message in run.messages:
        if "lender" not in (sender, receiver):
            continue
        for leaf in _leaves(message):
            seen += 1
            # Ciphertexts, packed ciphertexts, the key, counts, indices, tokens and bit strings only.
            assert isinstance(
                leaf, EncryptedVector | PackedCiphertexts | PublicKey | int | str | bytes
            )
            assert not isinstance(leaf, float | np.floating | np.ndarray)
            if isinstance(leaf, bytes):
                assert not any(e in leaf for e in edges)
    assert seen > 20


def _host_view(run_messages: list[tuple[str, str, Any]], host: str) -> list[tuple[Any, ...]]:
    view: list[tuple[Any, ...]] = []
    for _, receiver, message in run_messages:
        if receiver != host:
            continue
        if isinstance(message, Gradients):
            view.append(
                (
                    "gradients",
                    message.tree,
                    message.level,
                    len(message.values),
                    message.groups,
                    message.nodes,
                )
            )
        elif isinstance(message, SideRequest):
            view.append(("sides", message.tree, message.level, len(message.picks)))
        else:
            view.append((type(message).__name__,))
    return view


def test_in_joint_mode_what_a_host_receives_does_not_depend_on_where_rows_are() -> None:
    settings = TreeSettings(trees=2, bins=8, min_rows=5, mode="joint")
    first, _, _ = _federation(settings)
    first.train()
    flipped = 1.0 - _data()[2]
    second, _, _ = _federation(settings, y=flipped)
    second.train()
    for host in ("shop", "pay"):
        view = _host_view(first.run.messages, host)
        assert view == _host_view(second.run.messages, host)
        assert all(v[3] == 2 ** v[2] for v in view if v[0] == "sides")
        assert [v for v in view if v[0] == "gradients"][-1][3] == len(first.lender.split.train)  # type: ignore[union-attr]


def test_in_joint_mode_every_level_brings_fresh_ciphertexts() -> None:
    settings = TreeSettings(trees=1, bins=8, min_rows=5, mode="joint")
    local, _, _ = _federation(settings)
    run = local.train()
    seen: set[Any] = set()
    for _, receiver, message in run.messages:
        if receiver == "shop" and isinstance(message, Gradients):
            cts = set(message.values.ciphertexts)
            assert not cts & seen
            seen |= cts


@pytest.mark.parametrize("mode", ["mix", "joint"])
def test_no_child_holds_fewer_training_rows_than_the_floor(mode: str) -> None:
    settings = TreeSettings(trees=3, bins=8, min_rows=25, mode=mode)
    local, lender, _ = _federation(settings)
    local.train()
    assert lender.split is not None
    ids = [f"c{i}" for i in lender.aligned_rows[lender.split.train]]
    before = np.full(len(ids), lender.base)
    for t in range(1, len(lender.model) + 1):
        lender.kept = t
        after = local.score(ids)
        # The rows of one leaf get one value from this tree.
        _, counts = np.unique(np.round(after - before, 12), return_counts=True)
        assert counts.min() >= 25
        before = after


def test_a_histogram_offers_its_candidates_in_a_fresh_random_order() -> None:
    settings = TreeSettings(trees=2, bins=8, min_rows=5, mode="joint")
    orders = []
    for _ in range(2):
        local, _, partners = _federation(settings)
        local.train(trees=1)
        orders.append([(s.feature, s.threshold, s.default_left) for s in partners[1]._offered[0]])
    assert sorted(orders[0]) == sorted(orders[1]) and orders[0] != orders[1]


def test_a_partner_refuses_a_small_lender_key_outside_tests() -> None:
    settings = TreeSettings(trees=1)
    _, lender, partners = _federation(settings)
    key = lender.make_key(1024, allow_small=True)
    with pytest.raises(CryptoError, match="the lender"):
        partners[0].receive_key(key)


def test_histograms_of_a_mix_tree_come_only_from_its_owner() -> None:
    settings = TreeSettings(trees=3, bins=8, min_rows=5, mode="mix")
    local, lender, _ = _federation(settings)
    run = local.train()
    senders = {(m.tree, s) for s, _, m in run.messages if isinstance(m, Histograms)}
    assert senders == {(1, "shop"), (2, "pay")}
    assert [lender.owner_of(t) for t in range(3)] == ["lender", "shop", "pay"]


def test_a_part_stored_before_category_maps_bins_codes_as_numbers() -> None:
    settings = TreeSettings(trees=1, bins=8, min_rows=5, mode="mix")
    _, lender, _ = _federation(settings, categorical=True)
    part = json.loads(json.dumps(lender.model_part()))
    del part["categories"]
    part["edges"][1] = sorted(CATEGORIES[:3])  # what ordinal codes' edges were
    old = TreesLender("lender", ["x"], np.zeros((1, 2)), ["a", "b"], np.zeros(1), settings)
    old.categorical = ("b",)
    old.load_model_part(part)
    raw = np.array([[0.5, CATEGORIES[1]], [0.5, 0.0], [np.nan, CATEGORIES[4]]])
    assert old.n_regular[1] == 4 and not old.categories
    expected = T.bin_column(raw[:, 1], np.asarray(part["edges"][1]))
    assert np.array_equal(old.bins_for(raw)[:, 1], expected)
