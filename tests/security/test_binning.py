"""Issue 12, binning findings F3, F9 and F19: attacks by one party on the binned pipeline.

- F3: a host reads the label of a row that is alone in one of its design columns within a
  mini-batch, from its own plaintext gradient (small missing, ``other`` and batch-sparse bins,
  in binned and in plain mode).
- F9: a lender flips one customer's label between two binning runs and reads that customer's
  fine bin in every partner column from the difference of the event counts.
- F19: the binning noise is exact integer two-sided geometric noise.

The attackers are our own code with a few changed lines (a host that records its unmasked
gradient, a lender that changes one of its own labels); the keys are real 1024-bit Paillier keys.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from fedcredit.config import load_federation
from fedcredit.crypto import unmask
from fedcredit.node.serde.binning import plan_from_proto, plan_to_proto
from fedcredit.protocol.binning import (
    ColumnPlan,
    LenderBinning,
    PartnerBinning,
    bin_matrix,
    geometric_noise,
    run_binning_local,
    train_raw,
    with_category_codes,
)
from fedcredit.protocol.binning import partner as binning_protocol
from fedcredit.protocol.binning.settings import BinningSettings
from fedcredit.protocol.design_floor import batch_floor, total_floor
from fedcredit.protocol.keyholder import KeyHolder
from fedcredit.protocol.logistic.encoding import MIN_LEVEL_SHARE
from fedcredit.protocol.logistic.lender import LabelParty
from fedcredit.protocol.logistic.local import train_batch
from fedcredit.protocol.logistic.partner import FeatureParty, PendingMasks
from fedcredit.protocol.logistic.settings import TrainSettings
from fedcredit.protocol.split import batch_of_rows, batch_rows, split_rows

N = 900
TRAIN = TrainSettings(epochs=1, batch_size=200, test_fraction=0.2, seed=3)
BINNING = BinningSettings(bins=8, min_bin_share=0.05, iv_threshold=0.02)
REPO = Path(__file__).resolve().parents[2]
IDS = [f"C{i:04d}" for i in range(N)]  # sorted: the aligned order is the file order


class RecordingHost(FeatureParty):
    """A host that keeps every unmasked gradient ``X.T @ 4d`` it gets (it may: it is its own)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.gradients: list[np.ndarray] = []

    def apply_gradient(self, slots: list[int], pending: PendingMasks, epoch: int) -> None:
        self.gradients.append(unmask(slots, pending.masks, pending.scale_bits))
        super().apply_gradient(slots, pending, epoch)


def epoch0_batches() -> list[np.ndarray]:
    """The aligned rows of every training batch of epoch 0 (public: seed and sizes are)."""
    split = split_rows(N, test_fraction=TRAIN.test_fraction, validation_fraction=0.0, seed=3)
    count = max(1, len(split.train) // TRAIN.batch_size)
    return [batch_rows(split.train, TRAIN.batch_size, TRAIN.seed, 0, b) for b in range(count)]


def helper_cells() -> dict[str, list[str]]:
    """Columns a host adds to learn each batch's residual sum: ``help<b>`` is P on the rows of
    batch b and Q elsewhere, so in batch b its P column covers the whole batch. Partners'
    one-hot columns are centred on their shares, which alone would hide a lone row in the sum
    of the batch; with that sum known the centring is undone."""
    columns = {}
    for b, rows in enumerate(epoch0_batches()):
        cells = ["Q"] * N
        for row in rows.tolist():
            cells[row] = "P"
        columns[f"help{b}"] = cells
    return columns


def make_job(cells: list[str], keypair, *, binned: bool):  # type: ignore[no-untyped-def]
    """A lender with two numeric columns and a recording host with the text column ``cat``
    (``cells``) and the helper columns; every host column is kept (IV threshold 0)."""
    rng = np.random.default_rng(5)
    lender_x = rng.normal(size=(N, 2))
    cats = np.array(cells, dtype=object)
    logit = lender_x[:, 0] + 1.2 * (cats == "A") - 0.8
    y = (rng.random(N) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    lender = LabelParty("lender", IDS, lender_x, ["a", "b"], y, TRAIN)
    text = {"cat": cells, **helper_cells()}
    x, names = with_category_codes(np.zeros((N, 0)), [], text)
    host = RecordingHost("host", IDS, x, names, TRAIN)
    host.categorical = tuple(text)
    host.one_hot_categories = not binned
    for party in (lender, host):
        party.public_key = keypair[0]
        party.align(IDS)
    keys = KeyHolder(allow_small_keys=True)
    keys.use_keypair("job", *keypair)
    if binned:
        settings = dataclasses.replace(BINNING, iv_threshold=0.0)
        run_binning_local(lender, [host], settings, key_bits=1024, allow_small=True)
    return lender, host, keys


def isolated_reads(lender: LabelParty, host: RecordingHost, keys: KeyHolder) -> list[bool]:
    """Train epoch 0 with the host reading labels from its own gradients.

    Wherever a batch row's indicator is a combination of the host's design columns in that
    batch (leverage 1: a column holding that row alone, or a difference of columns), the same
    combination of the host's unmasked gradient is that row's residual ``sigma - y``, whose sign
    is minus the label's. Returns, per row read, whether the label read is right.
    """
    reads = []
    for batch in range(lender.batches_per_epoch()):
        train_batch(lender, [host], keys, 0, batch)
        rows = host.rows_of("train", 0, batch)
        x = host._x_int[rows].astype(np.float64) / float(1 << host.x_scale_bits)
        if x.shape[1] == 0:
            continue
        pinv = np.linalg.pinv(x)
        leverage = np.einsum("ij,ji->i", x, pinv)
        for t in np.flatnonzero(leverage > 1 - 1e-6).tolist():
            residual = float(pinv[:, t] @ host.gradients[-1])
            reads.append(int(residual < 0) == int(lender.labels(rows[[t]])[0]))
    return reads


def base_cells(seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return list(rng.choice(["A", "B"], size=N, p=[0.55, 0.45]))


def assert_no_label_read(lender: LabelParty, host: RecordingHost, keys: KeyHolder) -> None:
    reads = isolated_reads(lender, host, keys)
    assert reads == [], f"the host read {sum(reads)} of {len(reads)} labels right"
    assert any(name.startswith("cat=") for name in host.feature_names)  # cat still in the model


# -- F3 ------------------------------------------------------------------------------------
def test_f3_a_host_cannot_read_the_label_of_its_lone_missing_row_of_a_batch(keypair) -> None:  # type: ignore[no-untyped-def]
    cells = base_cells(1)
    for rows in epoch0_batches():
        cells[int(rows[0])] = ""  # the host chooses one missing cell per batch
    assert_no_label_read(*make_job(cells, keypair, binned=True))


def test_f3_a_host_cannot_read_the_label_of_its_lone_other_row_of_a_batch(keypair) -> None:  # type: ignore[no-untyped-def]
    cells = base_cells(2)
    for k, rows in enumerate(epoch0_batches()):
        cells[int(rows[0])] = f"Z{k}"  # a rare category, so the 'other' bin, once per batch
    assert_no_label_read(*make_job(cells, keypair, binned=True))


def test_f3_a_bin_above_min_share_but_alone_in_one_batch_gives_no_label(keypair) -> None:  # type: ignore[no-untyped-def]
    cells = base_cells(3)
    first, *rest = epoch0_batches()
    # 40 rows of 720 (above the 5% share) as category Z: one in batch 0, the rest elsewhere.
    chosen = [int(first[0]), *[int(r) for rows in rest for r in rows[:20]][:39]]
    for row in chosen:
        cells[row] = "Z"
    assert_no_label_read(*make_job(cells, keypair, binned=True))


def test_f3_in_plain_mode_a_host_cannot_read_its_lone_other_row_of_a_batch(keypair) -> None:  # type: ignore[no-untyped-def]
    cells = base_cells(4)
    for k, rows in enumerate(epoch0_batches()):
        cells[int(rows[0])] = f"Z{k}"  # one rare category per batch: level (other)
    assert_no_label_read(*make_job(cells, keypair, binned=False))


def test_f3_the_lenders_plan_folds_a_small_missing_bin_for_a_partner_without_the_floors(
    keypair,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def old_rule(levels, n_levels, reference, *, min_share, settings, exclude=()):  # type: ignore[no-untyped-def]
        counts = np.bincount(np.asarray(levels), minlength=n_levels)
        return tuple(
            k for k in range(n_levels) if counts[k] and k != reference and k not in exclude
        )

    # A partner running a copy of the code without its own floors, but following the plan.
    monkeypatch.setattr(binning_protocol, "columned_levels", old_rule)
    cells = base_cells(5)
    for rows in epoch0_batches():
        cells[int(rows[0])] = ""
    lender, host, keys = make_job(cells, keypair, binned=True)
    assert host.encoder is not None
    cat = next(c for c in host.encoder.columns if c.name == "cat")
    assert cat.binning.missing_bin not in cat.active
    assert_no_label_read(lender, host, keys)


def test_f3_every_design_column_meets_the_floors_in_every_batch_of_every_epoch(keypair) -> None:  # type: ignore[no-untyped-def]
    settings = dataclasses.replace(TRAIN, epochs=4)
    rng = np.random.default_rng(8)
    cells = list(rng.choice(["A", "B", "C", "D"], size=N, p=[0.45, 0.3, 0.15, 0.1]))
    split = split_rows(N, test_fraction=TRAIN.test_fraction, validation_fraction=0.0, seed=3)
    # Category Z: 40 training rows (above the 5% share), one of them alone in batch 0 of
    # epoch 2 (not epoch 0); and 10 missing cells (below the share: a small missing bin, and
    # in plain mode a small (other)).
    in_batch = batch_of_rows(len(split.train), TRAIN.batch_size, TRAIN.seed, 2)
    z = [int(np.flatnonzero(in_batch == 0)[0]), *np.flatnonzero(in_batch != 0)[:39].tolist()]
    for position in z:
        cells[int(split.train[position])] = "Z"
    for position in np.flatnonzero(in_batch != 0)[39:49].tolist():
        cells[int(split.train[position])] = ""
    for binned in (True, False):
        lender = LabelParty(
            "lender", IDS, rng.normal(size=(N, 1)), ["a"], rng.random(N) < 0.3, settings
        )
        x, names = with_category_codes(rng.normal(size=(N, 1)), ["num"], {"cat": cells})
        host = FeatureParty("host", IDS, x, names, settings)
        host.categorical, host.one_hot_categories = ("cat",), not binned
        for party in (lender, host):
            party.public_key = keypair[0]
            party.align(IDS)
        if binned:
            run_binning_local(
                lender,
                [host],
                dataclasses.replace(BINNING, iv_threshold=0.0),
                key_bits=1024,
                allow_small=True,
            )
        assert host.split is not None
        train = host.split.train
        design = host._x_int[train] != host._x_int[train].min(axis=0)  # the 1s of each column
        if not binned:
            design = design[:, 1:]  # the standardized numeric column is dense anyway
        assert design.shape[1] >= 2  # several levels keep a column
        share = BINNING.min_bin_share if binned else MIN_LEVEL_SHARE
        need_total = total_floor(share, len(train))
        need_batch = batch_floor(share, len(train), settings.batch_size)
        assert design.sum(axis=0).min() >= need_total
        for epoch in range(settings.epochs):
            for batch in range(host.batches_per_epoch()):
                positions = batch_rows(
                    np.arange(len(train)), settings.batch_size, settings.seed, epoch, batch
                )
                counts = design[positions].sum(axis=0)
                assert counts.min() >= need_batch, (binned, epoch, batch, counts)


def test_batch_of_rows_gives_the_batches_of_batch_rows() -> None:
    for epoch in range(3):
        batch = batch_of_rows(720, 200, 3, epoch)
        for b in range(3):
            np.testing.assert_array_equal(
                np.flatnonzero(batch == b), batch_rows(np.arange(720), 200, 3, epoch, b)
            )


def test_a_fold_crosses_the_wire_in_the_bin_plan() -> None:
    plan = ColumnPlan("cat", True, ((0,), (1, 2)), (2,))
    assert plan_from_proto(plan_to_proto(plan)) == plan


# -- F9 ------------------------------------------------------------------------------------
def flipped_label_guesses(keypair, settings: BinningSettings) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Two binning runs on the same data, the lender's label of one customer flipped 0 -> 1 in
    the second; the lender guesses that customer's bin in every host column as the bin whose
    event count rose most. Returns (right guesses, columns)."""
    rng = np.random.default_rng(9)
    lender_x = rng.normal(size=(N, 2))
    host_x = rng.normal(size=(N, 8))
    logit = lender_x[:, 0] + host_x[:, 0] - 1.0
    y = (rng.random(N) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    host = FeatureParty("host", IDS, host_x, [f"h{j}" for j in range(8)], TRAIN)
    host.public_key = keypair[0]
    host.align(IDS)
    assert host.split is not None
    position = int(np.flatnonzero(y[host.split.train] == 0)[0])
    target = int(host.split.train[position])
    flipped = y.copy()
    flipped[target] = 1
    events = []
    partner = None
    for run, labels in enumerate((y, flipped)):
        lender = LabelParty("lender", IDS, lender_x, ["a", "b"], labels, TRAIN)
        lender.public_key = keypair[0]
        lender.align(IDS)
        lender_side = LenderBinning(lender, settings)
        partner = PartnerBinning(host, settings)
        partner.receive_labels(lender_side.encrypt_labels(1024, allow_small=True))
        lender_side.receive_sums("host", partner.bin_sums(random.Random(100 + run)))
        events.append([s.events for s in lender_side.stats["host"][0]])
    assert partner is not None
    truth = bin_matrix(train_raw(host), partner.columns)[position]
    guesses = [int(np.argmax(e2 - e1)) for e1, e2 in zip(events[0], events[1], strict=True)]
    return sum(int(g == t) for g, t in zip(guesses, truth.tolist(), strict=True)), len(guesses)


def test_f9_a_lender_flipping_one_label_between_two_runs_cannot_read_that_customers_bins(
    keypair,  # type: ignore[no-untyped-def]
) -> None:
    # The federation's default settings: no noise key written.
    right, columns = flipped_label_guesses(keypair, BinningSettings(bins=10, min_bin_share=0.05))
    # Ten bins a column: chance is about one right guess in eight columns.
    assert right <= columns // 2, f"the lender read the customer's bin in {right} of {columns}"


def test_f9_noise_is_on_by_default_in_a_federation_file_without_the_key() -> None:
    fed = load_federation(REPO / "parties" / "uci.toml")
    assert fed.binning is not None and fed.binning.noise_epsilon == 1.0


def test_f9_without_a_generator_every_run_draws_fresh_noise() -> None:
    first, second = geometric_noise(64, 1.0), geometric_noise(64, 1.0)
    assert not np.array_equal(first, second)  # equal with probability below 1e-40


# -- F19 -----------------------------------------------------------------------------------
class IntegerOnlyRandom(random.Random):
    """A generator that refuses floating-point draws: the sampler must use integers only."""

    def random(self) -> float:
        raise AssertionError("the noise sampler drew a floating-point number")

    def getrandbits(self, k: int, /) -> int:
        # Defined here so that randrange keeps drawing integer bits (random.Random picks
        # random() for subclasses that override only random()).
        return super().getrandbits(k)


def test_f19_the_noise_sampler_draws_integers_only() -> None:
    noise = geometric_noise(2000, 1.0, IntegerOnlyRandom(7))
    assert noise.dtype == np.int64 and len(noise) == 2000 and len(set(noise.tolist())) > 10


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 4.0])
def test_f19_the_noise_follows_the_exact_two_sided_geometric_pmf(epsilon: float) -> None:
    draws = 20000
    noise = geometric_noise(draws, epsilon, random.Random(11))
    alpha = np.exp(-epsilon / 4.0)
    # P(k) = (1 - alpha) / (1 + alpha) * alpha^|k|; cells while the expected count is >= 5,
    # the two tails pooled into one cell each.
    k_max = 0
    while draws * (1 - alpha) / (1 + alpha) * alpha ** (k_max + 1) >= 5:
        k_max += 1
    ks = np.arange(-k_max, k_max + 1)
    pmf = (1 - alpha) / (1 + alpha) * alpha ** np.abs(ks)
    tail = (1.0 - pmf.sum()) / 2.0
    expected = draws * np.concatenate([[tail], pmf, [tail]])
    observed = np.concatenate(
        [
            [np.sum(noise < -k_max)],
            [np.sum(noise == k) for k in ks],
            [np.sum(noise > k_max)],
        ]
    )
    statistic = float(((observed - expected) ** 2 / expected).sum())
    p_value = float(scipy_stats.chi2.sf(statistic, len(expected) - 1))
    assert p_value > 1e-4, f"chi-square {statistic:.1f} on {len(expected) - 1} df"
