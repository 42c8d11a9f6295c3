"""The training protocol in one process: masked gradients equal plaintext ones, the secure loss
equals the plaintext Taylor loss, what the coordinator decrypts is uncorrelated with what it must
not learn, and training is deterministic under a seed."""

from __future__ import annotations

import numpy as np
import pytest

from fedcredit.crypto import generate_keypair
from fedcredit.protocol.fixedpoint import Z_SCALE_BITS
from fedcredit.protocol.keyholder import KeyHolder
from fedcredit.protocol.logistic.lender import LabelParty
from fedcredit.protocol.logistic.local import held_out_scores, train_batch, train_local
from fedcredit.protocol.logistic.partner import FeatureParty
from fedcredit.protocol.logistic.settings import TrainSettings

N = 700
HOST_WIDTHS = (2, 4)


def make_keys(keypair, record: bool = False) -> KeyHolder:  # type: ignore[no-untyped-def]
    keys = KeyHolder(allow_small_keys=True, record=record)
    keys.use_keypair("test-job", *keypair)
    return keys


def make_federation(n_hosts: int, keypair, settings: TrainSettings | None = None):  # type: ignore[no-untyped-def]
    """A lender with 3 columns and ``n_hosts`` hosts, each holding ids in its own order."""
    rng = np.random.default_rng(11)
    ids = [f"C{i:05d}" for i in range(N)]
    lender_x = rng.normal(size=(N, 3)) * [1.0, 5.0, 0.2] + [0.0, 10.0, -1.0]
    host_x = [rng.normal(size=(N, w)) for w in HOST_WIDTHS[:n_hosts]]
    logit = lender_x[:, 0] - 0.2 * lender_x[:, 1] + sum(h[:, 0] for h in host_x) + 1.0
    y = (rng.random(N) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    settings = settings or TrainSettings(
        batch_size=200, test_fraction=0.2, validation_fraction=0.1, seed=3, x_scale_bits=16
    )
    public = keypair[0]

    def shuffled(x: np.ndarray, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        order = np.random.default_rng(seed).permutation(N)
        return [ids[i] for i in order], x[order], order

    lid, lx, lorder = shuffled(lender_x, 1)
    lender = LabelParty("lender", lid, lx, ["a", "b", "c"], y[lorder], settings)
    hosts = []
    for k, hx in enumerate(host_x):
        hid, hxx, _ = shuffled(hx, 10 + k)
        hosts.append(
            FeatureParty(f"host{k}", hid, hxx, [f"h{k}_{j}" for j in range(hx.shape[1])], settings)
        )
    common = sorted(ids)
    for party in (lender, *hosts):
        party.public_key = public
        party.align(common)
    return lender, hosts


def plaintext_gradients(
    lender: LabelParty, hosts: list[FeatureParty], epoch: int, batch: int
) -> list[np.ndarray]:
    """X_p.T d / B of every party in floating point, d = approximated sigma(z) - y."""
    rows = lender.rows_of("train", epoch, batch)
    parties = [lender, *hosts]
    xs = [p._x_int[rows].astype(np.float64) / float(1 << p.x_scale_bits) for p in parties]
    z = sum(x @ p.weights for x, p in zip(xs, parties, strict=True))
    if lender.settings.sigmoid == "taylor":
        d = 0.25 * z + 0.5 - lender.labels(rows)
    else:
        own = xs[0] @ lender.weights
        s = 1.0 / (1.0 + np.exp(-own))
        d = s + s * (1 - s) * (z - own) - lender.labels(rows)
    return [x.T @ d / len(rows) for x in xs]


def set_random_weights(parties: list[FeatureParty], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for party in parties:
        party.weights = rng.normal(scale=0.5, size=party.n_weights)


@pytest.mark.parametrize("sigmoid", ["local", "taylor"])
@pytest.mark.parametrize("n_hosts", [1, 2])
def test_masked_gradient_equals_plaintext_gradient(n_hosts: int, sigmoid: str, keypair) -> None:  # type: ignore[no-untyped-def]
    settings = TrainSettings(
        batch_size=200,
        test_fraction=0.2,
        validation_fraction=0.1,
        seed=3,
        x_scale_bits=16,
        sigmoid=sigmoid,
    )
    lender, hosts = make_federation(n_hosts, keypair, settings)
    parties = [lender, *hosts]
    set_random_weights(parties, 5)
    keys = make_keys(keypair)
    expected = plaintext_gradients(lender, hosts, 0, 1)

    partials = {h.name: h.partial("train", 0, 1) for h in hosts}
    residual = lender.residual(lender.encrypted_scores("train", 0, 1, partials), "train", 0, 1)
    for party, want in zip(parties, expected, strict=True):
        packed, pending = party.gradient_request(residual, 0, 1)
        from fedcredit.crypto import unmask

        got = unmask(keys.decrypt_masked(packed), pending.masks, pending.scale_bits) / (
            4.0 * pending.rows
        )
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


def test_secure_loss_equals_plaintext_taylor_loss(keypair) -> None:  # type: ignore[no-untyped-def]
    lender, hosts = make_federation(2, keypair)
    set_random_weights([lender, *hosts], 8)
    keys = make_keys(keypair)
    rows = lender.rows_of("train", 0, 0)
    parties = [lender, *hosts]
    z = sum(p.linear(p._x_int[rows]) for p in parties)
    y_signed = 2.0 * lender.labels(rows) - 1.0
    expected = float(np.mean(np.log(2.0) - 0.5 * y_signed * z + z * z / 8.0))

    partials = {h.name: h.partial("train", 0, 0) for h in hosts}
    z_enc = lender.encrypted_scores("train", 0, 0, partials)
    request, pending = lender.loss_request(z_enc, "train", 0, 0)
    total = keys.decrypt_loss(request.masked_scores, request.masked_sums)
    assert LabelParty.finish_loss(total, pending) == pytest.approx(expected, rel=1e-6)


def test_coordinator_sees_values_uncorrelated_with_gradients_and_scores(keypair) -> None:  # type: ignore[no-untyped-def]
    lender, hosts = make_federation(2, keypair)
    parties = [lender, *hosts]
    keys = make_keys(keypair, record=True)
    true_values: list[float] = []
    for trial in range(12):
        set_random_weights(parties, 100 + trial)
        expected = plaintext_gradients(lender, hosts, 0, 0)
        true_values.extend(np.concatenate(expected).tolist())
        partials = {h.name: h.partial("train", 0, 0) for h in hosts}
        residual = lender.residual(lender.encrypted_scores("train", 0, 0, partials), "train", 0, 0)
        for party in parties:
            packed, _ = party.gradient_request(residual, 0, 0)
            keys.decrypt_masked(packed)
    observed = np.array([float(s) for s in keys.observed or []])
    truth = np.array(true_values)
    assert len(observed) == len(truth)
    # The true gradients vary a lot (a correlation test could find them) ...
    assert truth.std() > 0.01
    # ... but what the coordinator decrypted does not follow them.
    assert abs(np.corrcoef(observed, truth)[0, 1]) < 0.3

    keys.observed = []
    z = held_out_scores(lender, hosts, keys)
    observed_scores = np.array([float(s) for s in keys.observed])
    assert abs(np.corrcoef(observed_scores, z)[0, 1]) < 0.3
    assert abs(np.corrcoef(observed_scores, lender.labels(lender.split.test))[0, 1]) < 0.3


def test_training_is_identical_under_the_same_seed_even_with_other_keys(keypair) -> None:  # type: ignore[no-untyped-def]
    settings = TrainSettings(batch_size=150, test_fraction=0.2, epochs=2, seed=4, x_scale_bits=12)
    other_keypair = generate_keypair(1024, allow_small=True)
    runs = []
    for pair in (keypair, other_keypair):
        lender, hosts = make_federation(2, pair, settings)
        losses = train_local(lender, hosts, make_keys(pair), epochs=2)
        runs.append(([p.weights.copy() for p in (lender, *hosts)], losses))
    for a, b in zip(runs[0][0], runs[1][0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert runs[0][1] == runs[1][1]
    assert runs[0][1][-1] < np.log(2.0)  # it learned something


def test_federated_training_matches_plaintext_training_of_the_same_protocol(keypair) -> None:  # type: ignore[no-untyped-def]
    settings = TrainSettings(
        batch_size=150,
        test_fraction=0.2,
        seed=9,
        x_scale_bits=16,
        optimizer="sgd",
        momentum=0.5,
        learning_rate=0.3,
        sigmoid="taylor",
    )
    lender, hosts = make_federation(2, keypair, settings)
    parties = [lender, *hosts]
    keys = make_keys(keypair)
    plain = [np.zeros(p.n_weights) for p in parties]
    velocity = [np.zeros(p.n_weights) for p in parties]
    for batch in range(lender.batches_per_epoch()):
        for p, w in zip(parties, plain, strict=True):
            p_w = p.weights
            p.weights = w
        grads = plaintext_gradients(lender, hosts, 0, batch)
        for p, w in zip(parties, plain, strict=True):
            p.weights = w
        for i, (p, g) in enumerate(zip(parties, grads, strict=True)):
            g = g + settings.l2 * p._l2_mask() * plain[i]
            velocity[i] = settings.momentum * velocity[i] + g
            plain[i] = plain[i] - settings.learning_rate * velocity[i]
    del p_w
    lender2, hosts2 = make_federation(2, keypair, settings)
    for batch in range(lender2.batches_per_epoch()):
        train_batch(lender2, hosts2, keys, 0, batch)
    for p, w in zip((lender2, *hosts2), plain, strict=True):
        np.testing.assert_allclose(p.weights, w, rtol=1e-5, atol=1e-7)


def test_scores_are_encrypted_at_one_fixed_scale(keypair) -> None:  # type: ignore[no-untyped-def]
    # Whatever the feature scale, the weights' size, the party or the phase: one scale, so the
    # encoding of a score tells nothing about its size (phe's variable exponent would).
    scales = set()
    for x_scale_bits in (8, 16):
        settings = TrainSettings(
            batch_size=200, test_fraction=0.2, validation_fraction=0.1, seed=3,
            x_scale_bits=x_scale_bits,
        )  # fmt: skip
        lender, hosts = make_federation(2, keypair, settings)
        for seed, size in ((2, 1e-3), (3, 1.0)):
            set_random_weights([lender, *hosts], seed)
            for host in hosts:
                host.weights = host.weights * size
                for phase in ("train", "validation", "test"):
                    scales.add(host.partial(phase, 0, 0).scale_bits)
    assert scales == {Z_SCALE_BITS}
