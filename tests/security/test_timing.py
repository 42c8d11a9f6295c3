"""Decryption exponentiates with the secret p - 1 and q - 1 in constant time (security review F18).

GMP's ``mpz_powm`` (``gmpy2.powmod``) runs a sliding window over the exponent: its time and its
memory accesses depend on the exponent's bits. Paillier's CRT decryption raises every
ciphertext to ``p - 1`` modulo ``p**2`` and to ``q - 1`` modulo ``q**2``, so a co-resident
attacker who times the coordinator's decryptions measures the factors of n. The private key
must use ``gmpy2.powmod_sec`` (GMP's ``mpz_powm_sec``) for every exponent derived from p or q.

The check is behavioural: ``fedcredit.crypto.keys`` is run with a ``gmpy2`` that records every
exponentiation; none may take a secret exponent through ``powmod``.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import gmpy2
import pytest

from fedcredit.crypto import PrivateKey, generate_keypair, keys


@dataclass
class RecordingGmpy2:
    """``gmpy2`` as ``keys.py`` sees it, with every ``powmod`` and ``powmod_sec`` recorded."""

    real: ModuleType = gmpy2
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def powmod(self, base: Any, exponent: Any, modulus: Any) -> Any:
        self.calls.append(("powmod", gmpy2.mpz(exponent)))
        return self.real.powmod(base, exponent, modulus)

    def powmod_sec(self, base: Any, exponent: Any, modulus: Any) -> Any:
        self.calls.append(("powmod_sec", gmpy2.mpz(exponent)))
        return self.real.powmod_sec(base, exponent, modulus)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def secret_exponents_through(self, function: str, p: Any, q: Any) -> list[Any]:
        secrets = {p - 1, q - 1, p, q}
        return [e for name, e in self.calls if name == function and e in secrets]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingGmpy2]:
    recording = RecordingGmpy2()
    monkeypatch.setattr(keys, "gmpy2", recording)
    yield recording


def test_decryption_never_gives_a_secret_exponent_to_the_variable_time_powmod(
    recorder: RecordingGmpy2,
) -> None:
    public, generated = generate_keypair(1024, allow_small=True, rng=random.Random(18))
    ciphertexts = [public.raw_encrypt(m, 12345 + m) for m in range(8)]
    recorder.calls.clear()

    private = PrivateKey(public, generated.p, generated.q)  # the CRT constants
    private.raw_decrypt(ciphertexts[0])
    private.raw_decrypt_many(ciphertexts)

    leaked = recorder.secret_exponents_through("powmod", private.p, private.q)
    assert leaked == [], f"{len(leaked)} exponentiations with p - 1 or q - 1 through powmod"
    # The key's two CRT constants, then two halves for each of the 9 decryptions.
    assert len(recorder.secret_exponents_through("powmod_sec", private.p, private.q)) == 20


def test_the_private_key_source_calls_powmod_sec_for_the_crt_halves() -> None:
    source = inspect.getsource(PrivateKey)

    assert "gmpy2.powmod(" not in source
    assert source.count("gmpy2.powmod_sec(") >= 2


def test_decryption_still_round_trips_and_matches_phe() -> None:
    public, private = generate_keypair(1024, allow_small=True, rng=random.Random(7))
    values = [0, 1, 2**40 + 3, int(public.n) - 1, int(public.max_int)]
    ciphertexts = [public.raw_encrypt(m, 99991 + i) for i, m in enumerate(values)]

    assert [int(private.raw_decrypt(c)) for c in ciphertexts] == values
    assert [int(m) for m in private.raw_decrypt_many(ciphertexts)] == values
    phe_private = private.to_phe()
    phe_public = public.to_phe()
    assert [phe_private.raw_decrypt(int(c)) for c in ciphertexts] == values
    theirs = phe_public.raw_encrypt(424242, r_value=31337)
    assert int(private.raw_decrypt(theirs)) == 424242
