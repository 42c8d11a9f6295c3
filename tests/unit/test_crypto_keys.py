"""Keys: generation, known answers, phe interop, JSON files."""

from __future__ import annotations

import json
import os
import random
import stat
from pathlib import Path

import gmpy2
import numpy as np
import phe
import pytest

from fedcredit.crypto import (
    EncryptedVector,
    PrivateKey,
    PublicKey,
    decrypt_vector,
    encrypt_vector,
    generate_keypair,
    load_private_key,
    save_private_key,
)
from fedcredit.errors import CryptoError

# Known answers. Source: computed with the textbook formula c = (1 + n m) r**n mod n**2
# (Python's pow), and cross-checked against phe 1.5.0 PaillierPublicKey.raw_encrypt(m, r_value=r).
SMALL_P, SMALL_Q = 293, 433
SMALL_VECTORS = [(42, 12345, 15581140896), (0, 1, 1), (126868, 99991, 4849747690)]
BIG_P = 57896044618658097711785492504343953926634992332820282019728792003956564832381
BIG_Q = 57896044618658099318723536763334229468597084673982884541931785786749400122131
BIG_M, BIG_R = 123456789, 987654321
BIG_C = int(
    "50669785274525263655375981524814871123636550403175135512628764294060388087330937758453"
    "66178525957802165362475546453094417332481393223246453167812122696669946797426764212389"
    "918759575946237007593298880899195104575823511196388156369643021175802381257837351996984"
    "338073838927838606542890062346485030572254854058"
)


def test_generate_keypair_refuses_keys_below_2048_bits() -> None:
    with pytest.raises(CryptoError, match="below 2048"):
        generate_keypair(1024)


def test_generate_keypair_refuses_tiny_keys_even_when_small_is_allowed() -> None:
    with pytest.raises(CryptoError, match="even for tests"):
        generate_keypair(256, allow_small=True)


def test_generate_keypair_refuses_odd_sizes() -> None:
    with pytest.raises(CryptoError, match="even number"):
        generate_keypair(1025, allow_small=True)


def test_generated_modulus_has_exactly_the_requested_bits(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    assert public.bits == 1024
    assert private.p * private.q == public.n
    assert public.g == public.n + 1


def test_fingerprint_is_first_32_hex_of_sha256_of_n() -> None:
    import hashlib

    public = PublicKey(SMALL_P * SMALL_Q, rng=random.Random(0))
    expected = hashlib.sha256((SMALL_P * SMALL_Q).to_bytes(3, "big")).hexdigest()[:32]
    assert public.fingerprint == expected


@pytest.mark.parametrize(("m", "r", "c"), SMALL_VECTORS)
def test_raw_encrypt_matches_known_answers_for_small_primes(m: int, r: int, c: int) -> None:
    public = PublicKey(SMALL_P * SMALL_Q, rng=random.Random(0))
    assert public.raw_encrypt(m, r) == c
    assert phe.PaillierPublicKey(SMALL_P * SMALL_Q).raw_encrypt(m, r_value=r) == c


@pytest.mark.parametrize(("m", "r", "c"), SMALL_VECTORS)
def test_raw_decrypt_inverts_known_answers(m: int, r: int, c: int) -> None:
    public = PublicKey(SMALL_P * SMALL_Q, rng=random.Random(0))
    assert PrivateKey(public, SMALL_P, SMALL_Q).raw_decrypt(c) == m


def test_raw_encrypt_matches_known_answer_for_256_bit_primes() -> None:
    public = PublicKey(BIG_P * BIG_Q, rng=random.Random(0))
    assert public.raw_encrypt(BIG_M, BIG_R) == BIG_C
    assert PrivateKey(public, BIG_Q, BIG_P).raw_decrypt(BIG_C) == BIG_M


def test_djn_encryption_is_paillier_with_r_an_nth_root_of_hs_power() -> None:
    public = PublicKey(BIG_P * BIG_Q, rng=random.Random(5))
    private = PrivateKey(public, BIG_P, BIG_Q)
    c = public.raw_encrypt_djn(BIG_M, 2**100 + 17)
    assert private.raw_decrypt(c) == BIG_M
    assert (
        c
        == (1 + public.n * BIG_M)
        * gmpy2.powmod(public.hs, 2**100 + 17, public.nsquare)
        % public.nsquare
    )


def test_fixed_base_table_agrees_with_powmod(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    rng = random.Random(3)
    for x in [0, 1, 255, 256, rng.getrandbits(public.exponent_bits), 2**public.exponent_bits - 1]:
        assert public.table.pow(x) == gmpy2.powmod(public.hs, x, public.nsquare)


def test_fixed_base_table_refuses_exponents_past_its_range(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="table range"):
        public.table.pow(2**public.exponent_bits)


def test_short_exponent_option_draws_shorter_exponents_and_still_decrypts(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, private = keypair
    short = PublicKey(public.n, public.hs, short_exponent_bits=448)
    values = np.array([1.25, -3.5])
    assert short.exponent_bits == 448
    assert all(x.bit_length() <= 448 for x in short.random_exponents(50, random.Random(2)))
    assert decrypt_vector(private, encrypt_vector(short, values, 8)).tolist() == values.tolist()


def test_short_exponent_option_refuses_too_short_exponents(
    keypair: tuple[PublicKey, PrivateKey],
) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="short_exponent_bits"):
        PublicKey(public.n, public.hs, short_exponent_bits=128)


def test_fedcredit_ciphertext_decrypts_with_phe(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, private = keypair
    values = np.array([0.5, -1.75, 1234.0625])
    ev = encrypt_vector(public, values, 16)
    phe_public, phe_private = public.to_phe(), private.to_phe()
    decrypted = [
        phe_private.decrypt(phe.EncryptedNumber(phe_public, int(c), exponent=-16 // 4))
        for c in ev.ciphertexts
    ]
    assert decrypted == values.tolist()


def test_phe_ciphertext_decrypts_with_fedcredit(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, private = keypair
    phe_public = public.to_phe()
    values = [0.5, -1.75, 1234.0625]
    encrypted = [phe_public.encrypt(v, precision=2**-16) for v in values]
    assert all(e.exponent == -4 for e in encrypted)
    ev = EncryptedVector(public, [e.ciphertext() for e in encrypted], 16)
    assert decrypt_vector(private, ev).tolist() == values


def test_phe_generated_key_wraps_and_decrypts_both_ways() -> None:
    phe_public, phe_private = phe.generate_paillier_keypair(n_length=1024)
    private = PrivateKey.from_phe(phe_private, rng=random.Random(4))
    ev = encrypt_vector(private.public_key, np.array([-2.0, 3.0]), 0)
    assert decrypt_vector(private, ev).tolist() == [-2.0, 3.0]
    assert phe_private.decrypt(phe.EncryptedNumber(phe_public, int(ev.ciphertexts[0]))) == -2
    assert PublicKey.from_phe(phe_public) == private.public_key


def test_public_key_json_round_trips_n_and_djn_base(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    loaded = PublicKey.from_json(public.to_json())
    assert (loaded.n, loaded.hs, loaded.fingerprint) == (public.n, public.hs, public.fingerprint)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"kind": "fedcredit.paillier.public", "version": 2, "n": "15", "hs": "4"}',
        '{"kind": "fedcredit.paillier.public", "version": 1, "n": "-15", "hs": "4"}',
        '{"kind": "fedcredit.paillier.public", "version": 1, "n": "15", "hs": "0"}',
        '{"kind": "fedcredit.paillier.public", "version": 1, "n": "16", "hs": "1"}',
        '{"kind": "fedcredit.paillier.private", "version": 1, "n": "15", "hs": "4"}',
    ],
)
def test_public_key_from_json_rejects_malformed_input(text: str) -> None:
    with pytest.raises(CryptoError):
        PublicKey.from_json(text)


def test_save_private_key_writes_mode_0600_and_loads_back(
    tmp_path: Path, keypair: tuple[PublicKey, PrivateKey]
) -> None:
    public, private = keypair
    path = tmp_path / "coordinator.key.json"
    save_private_key(path, private)
    loaded = load_private_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert (loaded.p, loaded.q, loaded.public_key.hs) == (private.p, private.q, public.hs)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_save_private_key_replaces_an_existing_file(
    tmp_path: Path, keypair: tuple[PublicKey, PrivateKey]
) -> None:
    _, private = keypair
    path = tmp_path / "k.json"
    path.write_text("old")
    save_private_key(path, private)
    assert load_private_key(path).p == private.p


def test_load_private_key_rejects_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CryptoError, match="cannot read"):
        load_private_key(tmp_path / "absent.json")


def test_load_private_key_rejects_factors_that_do_not_multiply_to_n(
    tmp_path: Path, keypair: tuple[PublicKey, PrivateKey]
) -> None:
    _, private = keypair
    fields = json.loads(private.to_json())
    fields["q"] = str(gmpy2.next_prime(private.q))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(fields))
    with pytest.raises(CryptoError, match="p \\* q"):
        load_private_key(path)


def test_load_private_key_rejects_composite_factors(tmp_path: Path) -> None:
    public = PublicKey(15 * 7, rng=random.Random(0))
    fields = json.loads(public.to_json())
    fields.update(kind="fedcredit.paillier.private", p="15", q="7")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(fields))
    with pytest.raises(CryptoError, match="primes"):
        load_private_key(path)


def test_a_narrow_comb_window_gives_the_same_powers(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    narrow = PublicKey(public.n, public.hs, comb_window=3)
    x = random.Random(8).getrandbits(narrow.exponent_bits)
    assert narrow.table.pow(x) == public.table.pow(x)


def test_comb_window_outside_2_to_16_is_refused(keypair: tuple[PublicKey, PrivateKey]) -> None:
    public, _ = keypair
    with pytest.raises(CryptoError, match="comb_window"):
        PublicKey(public.n, public.hs, comb_window=17)


def test_save_private_key_into_a_missing_folder_raises_crypto_error(
    tmp_path: Path, keypair: tuple[PublicKey, PrivateKey]
) -> None:
    _, private = keypair
    with pytest.raises(CryptoError, match="cannot write"):
        save_private_key(tmp_path / "absent" / "k.json", private)


def test_public_key_refuses_an_even_modulus() -> None:
    with pytest.raises(CryptoError, match="odd"):
        PublicKey(2**64)


def test_public_key_refuses_a_djn_base_sharing_a_factor_with_n() -> None:
    with pytest.raises(CryptoError, match="unit"):
        PublicKey(SMALL_P * SMALL_Q, SMALL_P)


def test_private_key_refuses_factors_of_another_modulus() -> None:
    public = PublicKey(SMALL_P * SMALL_Q, rng=random.Random(0))
    with pytest.raises(CryptoError, match="p \\* q"):
        PrivateKey(public, SMALL_P, 431)


def test_private_key_refuses_equal_factors() -> None:
    public = PublicKey(SMALL_P * SMALL_P, rng=random.Random(0))
    with pytest.raises(CryptoError, match="differ"):
        PrivateKey(public, SMALL_P, SMALL_P)


def test_absurd_key_size_is_refused_at_once() -> None:
    from fedcredit.crypto.keys import MAX_KEY_BITS

    with pytest.raises(CryptoError, match="above 8192"):
        generate_keypair(MAX_KEY_BITS + 2)
