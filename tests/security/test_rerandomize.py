"""Re-randomization before a key's owner decrypts (security review F6).

Whoever re-randomizes a ciphertext that goes back to its key's owner must not use a base the
owner chose. The attackers here are our own ``DebtLender`` and binning lender deviating in a few
lines: each publishes a DJN base ``hs = h**n`` whose root ``h`` has order 2 modulo n (it knows p
and q, so it can make one; the key looks honest: ``hs`` is not 1, not -1 and of full size), and
encrypts its own rows with randomness it chose and remembers. With DJN's ``hs**x`` as the only
fresh randomness, what it decrypts still carries its marks, so it reads which of its rows the
coordinator picked for another lender's query (loan stacking) or which bin a marked customer
falls in at a partner (binning). Textbook re-randomization (``r**n``, r uniform in Z*_n) makes
the randomness uniform whatever the base, so the marks are gone.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import gmpy2
import numpy as np
import pytest

from fedcredit.crypto import EncryptedVector, PrivateKey, PublicKey, generate_keypair
from fedcredit.crypto.digits import DIGIT_MASK_SECURITY_BITS, group_sizes
from fedcredit.debt import DebtLender, LocalFederation, PendingUpload, run_local_query, upload
from fedcredit.debt.cipher import decrypt_masked_numbers
from fedcredit.debt.encoding import DIGIT_BITS, row_value
from fedcredit.debt.messages import MaskedBatch, SealedShares, UploadTable
from fedcredit.protocol.binning import PartnerBinning, bin_matrix, train_raw
from fedcredit.protocol.binning.settings import BinningSettings
from fedcredit.protocol.logistic.partner import FeatureParty
from fedcredit.protocol.logistic.settings import TrainSettings

KEY_BITS = 1024
SPY = "spy"


def marked_base_key(rng: random.Random) -> tuple[PublicKey, PrivateKey]:
    """A key pair whose DJN base ``hs = h**n`` has a root ``h`` of order 2 (1 mod p, -1 mod q):
    every ``hs**x`` is 1 or ``hs``, which its owner can strip."""
    honest, private = generate_keypair(KEY_BITS, allow_small=True, rng=rng)
    p, q, n = private.p, private.q, honest.n
    h = (q * gmpy2.invert(q, p) + (q - 1) * p * gmpy2.invert(p, q)) % n
    public = PublicKey(n, gmpy2.powmod(h, n, n * n))
    return public, PrivateKey(public, p, q)


def randomness(private: PrivateKey, ciphertext: Any) -> Any:
    """``c / (1 + n m) mod n**2``: the ``r**n`` part of a ciphertext, which its owner can read."""
    key = private.public_key
    m = private.raw_decrypt(ciphertext)
    return ciphertext * gmpy2.invert(1 + key.n * m, key.nsquare) % key.nsquare


class MarkingLender(DebtLender):
    """A lender that deviates: its rows carry randomness it chose, and it watches what comes back.

    ``seen`` gets, for each masked batch of one applicant it is asked to decrypt, the customer
    whose row it recognises in the ciphertext (None when it recognises none).
    """

    def __init__(self, public_key: PublicKey, private_key: PrivateKey, seed: int) -> None:
        super().__init__(public_key, private_key)
        self._rng = random.Random(seed)
        self._marks: dict[Any, str] = {}
        self.seen: list[str | None] = []

    def prepare_upload(self, balances: Mapping[str, int]) -> PendingUpload:
        honest = super().prepare_upload(balances)
        key = self.public_key
        # The tags say which customer each (shuffled) row is: the lender holds the OPRF key.
        who = {tag: pid for pid, tag in zip(balances, honest.key.tags(list(balances)), strict=True)}
        ciphertexts = []
        for tag in honest.table.tags:
            pid = who[tag]
            mark = self._rng.randrange(2, int(key.n))
            ciphertexts.append(key.raw_encrypt(row_value(balances[pid]), mark))
            stamp = gmpy2.powmod(mark, key.n, key.nsquare)
            self._marks[stamp] = pid
            self._marks[stamp * key.hs % key.nsquare] = pid
        table = UploadTable(
            honest.table.epoch,
            key,
            honest.table.tags,
            EncryptedVector(key, ciphertexts, 0),
            honest.table.oprf_key,
        )
        return PendingUpload(table=table, key=honest.key)

    def decrypt_masked(self, batch: MaskedBatch) -> SealedShares:
        if batch.size == 1:
            rho = randomness(self._private_key, batch.packed.ciphertexts[0])
            self.seen.append(self._marks.get(rho))
        return super().decrypt_masked(batch)


@pytest.fixture(scope="module")
def consortium() -> tuple[LocalFederation, MarkingLender]:
    """An honest querier, an honest 'other' lender and the spy; both lenders lend to cust-7."""
    rng = random.Random(5)
    spy_book = {f"cust-{i}": rng.randint(10**5, 10**9) for i in range(30)}
    federation = LocalFederation.create(
        {"querier": {}, "other": {"cust-7": 4_200_00, "cust-40": 1_00}}, key_bits=KEY_BITS
    )
    spy = MarkingLender(*marked_base_key(rng), seed=6)
    upload(spy, SPY, spy_book, federation.coordinator)
    federation.lenders[SPY] = spy
    return federation, spy


def test_the_marked_base_passes_for_an_honest_base() -> None:
    # Arrange
    public, _ = marked_base_key(random.Random(1))
    n = int(public.n)

    # Assert: nothing about the published key gives the trap away cheaply.
    assert int(public.hs) % n not in (0, 1, n - 1)
    assert int(public.hs).bit_length() > public.bits


def test_a_lender_cannot_tell_which_of_its_rows_another_lender_queried(
    consortium: tuple[LocalFederation, MarkingLender],
) -> None:
    # Arrange
    federation, spy = consortium
    spy.seen.clear()

    # Act: the querier asks about one applicant that the spy and 'other' both lend to.
    results = run_local_query(federation, "querier", ["cust-7"])

    # Assert: the spy decrypted the batch, and its marks did not survive the coordinator.
    assert len(spy.seen) == 1
    assert spy.seen == [None], f"the spy recognised its row of {spy.seen[0]!r}"
    assert results[0].other_lenders == 2


def test_the_querier_still_gets_the_right_total_from_a_marking_lender(
    consortium: tuple[LocalFederation, MarkingLender],
) -> None:
    # Arrange
    federation, spy = consortium
    assert federation.coordinator.table(SPY).public_key == spy.public_key

    # Act
    result = run_local_query(federation, "querier", ["cust-40"])[0]

    # Assert: cust-40 is 'other''s alone, so only the count is given.
    assert (result.other_lenders, result.total_outstanding_cents) == (1, None)


def carrying_base_key(rng: random.Random) -> tuple[PublicKey, PrivateKey]:
    """A key whose base ``hs = (1 + n) y**n`` encrypts 1: ``hs**x`` then carries x as plaintext."""
    honest, private = generate_keypair(KEY_BITS, allow_small=True, rng=rng)
    n, nsq = honest.n, honest.nsquare
    y = rng.randrange(2, int(n))
    public = PublicKey(n, (1 + n) * gmpy2.powmod(y, n, nsq) % nsq)
    return public, PrivateKey(public, private.p, private.q)


class WatchingLender(DebtLender):
    """A lender with an honest upload (textbook randomness) that records each masked number's
    size relative to its mask range: above 1 means the coordinator's randomness carried a value."""

    def __init__(self, public_key: PublicKey, private_key: PrivateKey) -> None:
        super().__init__(public_key, private_key)
        self.spans: list[float] = []

    def prepare_upload(self, balances: Mapping[str, int]) -> PendingUpload:
        honest = super().prepare_upload(balances)
        key, rng = self.public_key, random.SystemRandom()
        who = {tag: pid for pid, tag in zip(balances, honest.key.tags(list(balances)), strict=True)}
        ciphertexts = [
            key.raw_encrypt(row_value(balances[who[tag]]), rng.randrange(2, int(key.n)))
            for tag in honest.table.tags
        ]
        table = UploadTable(
            honest.table.epoch,
            key,
            honest.table.tags,
            EncryptedVector(key, ciphertexts, 0),
            honest.table.oprf_key,
        )
        return PendingUpload(table=table, key=honest.key)

    def decrypt_masked(self, batch: MaskedBatch) -> SealedShares:
        packed = batch.packed
        numbers = decrypt_masked_numbers(self._private_key, packed)
        for number, used in zip(numbers, group_sizes(packed.count, packed.group), strict=True):
            self.spans.append(number / 2 ** (DIGIT_BITS * used + DIGIT_MASK_SECURITY_BITS))
        return super().decrypt_masked(batch)


def test_a_lender_whose_base_carries_a_plaintext_sees_only_masked_numbers() -> None:
    # Arrange: the watcher lends to cust-1 only; 'other' lends to cust-1 and cust-2.
    rng = random.Random(8)
    federation = LocalFederation.create(
        {"querier": {}, "other": {"cust-1": 5_00, "cust-2": 7_00}}, key_bits=KEY_BITS
    )
    watcher = WatchingLender(*carrying_base_key(rng))
    upload(watcher, "watcher", {"cust-1": 3_00}, federation.coordinator)
    federation.lenders["watcher"] = watcher

    # Act: one query about its customer, one about a stranger to it.
    matched = run_local_query(federation, "querier", ["cust-1"])[0]
    stranger = run_local_query(federation, "querier", ["cust-2"])[0]

    # Assert: both numbers lie inside the mask range (the coordinator's Enc(0) and its fresh
    # randomness carry no value from the base), and the answers are right.
    assert len(watcher.spans) == 2
    assert all(0.0 <= span < 1.0 for span in watcher.spans), watcher.spans
    assert (matched.other_lenders, matched.total_outstanding_cents) == (2, 8_00)
    assert stranger.other_lenders == 1


# -- binning -------------------------------------------------------------------------------------
ROWS = 240
BINNING = BinningSettings(bins=6, min_bin_share=0.05, iv_threshold=0.02)


def test_a_lender_cannot_tell_which_bin_its_marked_customer_falls_in_at_a_partner() -> None:
    # Arrange: a partner with one numeric column, aligned; the spy lender's labels are all
    # encrypted with r = 1 except the target row's, which carries a mark g.
    rng = random.Random(9)
    ids = [f"C{i:04d}" for i in range(ROWS)]
    public, private = marked_base_key(rng)
    host = FeatureParty(
        "host", ids, np.random.default_rng(3).normal(size=(ROWS, 1)), ["h0"], TrainSettings()
    )
    host.public_key = public
    host.align(ids)
    labels_y = [rng.randrange(2) for _ in range(len(train_raw(host)))]
    target = 17
    mark = rng.randrange(2, int(public.n))
    labels = EncryptedVector(
        public,
        [public.raw_encrypt(y, mark if i == target else 1) for i, y in enumerate(labels_y)],
        0,
    )
    partner = PartnerBinning(host, BINNING)
    partner.receive_labels(labels)

    # Act: the partner sums labels per bin, packs and re-randomizes; the spy reads randomness.
    sums = partner.bin_sums()
    truth = int(bin_matrix(train_raw(host), partner.columns)[target, 0])
    packed = sums.events
    assert len(packed.ciphertexts) == 1  # one column of a few bins fits one ciphertext
    rho = randomness(private, packed.ciphertexts[0])
    slots = packed.count
    found = []
    for k in range(slots):
        weight = 1 << (packed.slot_bits * (slots - 1 - k))
        stamp = gmpy2.powmod(mark, public.n * weight, public.nsquare)
        if rho in (stamp, stamp * public.hs % public.nsquare):
            found.append(k)

    # Assert: the partner's randomness hides which bin holds the marked row.
    assert 0 <= truth < slots
    assert found == [], f"the spy found its customer in bin {found} (true bin {truth})"


# -- the primitive -------------------------------------------------------------------------------
def test_rerandomizing_for_the_owner_does_not_depend_on_the_base_the_owner_chose() -> None:
    # Arrange: under hs = 1, DJN's re-randomization is the identity.
    honest, private = generate_keypair(KEY_BITS, allow_small=True, rng=random.Random(2))
    trivial = PublicKey(honest.n, 1)
    vector = EncryptedVector(trivial, [trivial.raw_encrypt(v, 1) for v in (0, 7, 123)], 0)

    # Act
    fast = vector.rerandomize()
    full = vector.rerandomize_for_owner()

    # Assert: the fast path changed nothing; the owner's path changed every ciphertext, kept
    # every plaintext, and left randomness that is no power of the base.
    assert fast.ciphertexts == vector.ciphertexts
    assert all(a != b for a, b in zip(full.ciphertexts, vector.ciphertexts, strict=True))
    assert [int(private.raw_decrypt(c)) for c in full.ciphertexts] == [0, 7, 123]
    assert all(randomness(private, c) != 1 for c in full.ciphertexts)


def test_full_obfuscators_are_fresh_encryptions_of_zero() -> None:
    public, private = generate_keypair(KEY_BITS, allow_small=True, rng=random.Random(3))

    values = public.full_obfuscators(4)

    assert len(set(values)) == 4
    assert [int(private.raw_decrypt(v)) for v in values] == [0, 0, 0, 0]


# -- the coordinator's masked decryptions --------------------------------------------------------
GRADIENT_VALUE_BITS = 48
TRIALS = 64


def _coordinator_view(
    public: PublicKey, private: PrivateKey, column: np.ndarray, seed: int
) -> tuple[list[int], list[bool], np.ndarray]:
    """A lender encrypts residuals under the coordinator's (marked) key, a host computes
    ``X.T @ [[d]]`` for its column and sends it masked and packed: the coordinator's slots, its
    reading of each request's randomness (True: a power of ``hs`` other than 1), and what the
    host recovers."""
    from fedcredit.crypto import mask_and_pack, matvec_t, unmask
    from fedcredit.crypto.packing import decrypt_packed

    rng = np.random.default_rng(seed)
    residual = rng.integers(-(2**12), 2**12, size=len(column))
    encrypted = EncryptedVector(public, [c for c in _encrypt_djn(public, residual)], 0)
    gradient = matvec_t(column.reshape(-1, 1), 0, encrypted)
    packed, masks = mask_and_pack(gradient, GRADIENT_VALUE_BITS)
    slots = decrypt_packed(private, packed)
    marked = [randomness(private, c) != 1 for c in packed.ciphertexts]
    recovered = unmask(slots, masks, 0)
    assert recovered.tolist() == [float(column @ residual)]
    return slots, marked, recovered


def _encrypt_djn(public: PublicKey, values: np.ndarray) -> list[Any]:
    """Honest DJN encryption ``(1 + n m) hs**x`` by a data party, under the given key."""
    exponents = public.random_exponents(len(values))
    return [public.raw_encrypt_djn(int(v), x) for v, x in zip(values, exponents, strict=True)]


def test_a_coordinator_whose_base_is_marked_reads_only_masked_slots_and_coin_flips() -> None:
    # Arrange: the coordinator publishes a base whose powers it strips (hs**x is 1 or hs), so
    # DJN re-randomization hands it every request's randomness. Two hosts' columns differ in
    # one row.
    public, private = marked_base_key(random.Random(11))
    column_a = np.array([3, 0, 5, 1, 0, 2, 7, 1], dtype=np.int64)
    column_b = column_a.copy()
    column_b[4] = 9

    # Act: many masked gradient requests of each, as the coordinator sees them.
    views = {
        name: [_coordinator_view(public, private, column, seed) for seed in range(TRIALS)]
        for name, column in (("a", column_a), ("b", column_b))
    }

    # Assert: every slot lies in the mask range (no value shows through), and the only thing the
    # base gives away, whether the randomness is hs or 1, is a fair coin whatever the column:
    # the coordinator made none of the ciphertexts that went in, so it has no mark to find.
    low, high = 2 ** (GRADIENT_VALUE_BITS + 40), 2 ** (GRADIENT_VALUE_BITS + 41)
    heads = {}
    for name, runs in views.items():
        slots = [s for run in runs for s in run[0]]
        assert all(low - 2**GRADIENT_VALUE_BITS < s < high + 2**GRADIENT_VALUE_BITS for s in slots)
        heads[name] = sum(flag for run in runs for flag in run[1])
    assert all(16 <= count <= 48 for count in heads.values()), heads
    assert abs(heads["a"] - heads["b"]) <= 24, heads


def test_a_coordinator_whose_base_is_marked_reads_an_unmasked_gradient() -> None:
    # Arrange: the positive control: the same coordinator, a host that skips the mask.
    public, private = marked_base_key(random.Random(11))
    column = np.array([3, 0, 5, 1, 0, 2, 7, 1], dtype=np.int64)
    residual = np.arange(8) - 3
    from fedcredit.crypto import matvec_t

    encrypted = EncryptedVector(public, _encrypt_djn(public, residual), 0)

    # Act
    gradient = matvec_t(column.reshape(-1, 1), 0, encrypted).rerandomize()
    value = int(private.raw_decrypt(gradient.ciphertexts[0]))

    # Assert: without the mask the coordinator reads the host's gradient exactly.
    assert value == int(column @ residual) % int(public.n)
