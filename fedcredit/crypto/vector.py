"""Encrypted vectors: many ciphertexts under one key at one fixed-point scale.

What a holder of an :class:`EncryptedVector` learns without the private key: its length,
its scale and the key's fingerprint; nothing about the values (Paillier is semantically
secure under DCR, plus the short-exponent assumption only if the key opted in to it).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

import gmpy2
import numpy as np
import numpy.typing as npt
from gmpy2 import mpz

from fedcredit.crypto import pool
from fedcredit.crypto.codec import check_scale, decode, encode
from fedcredit.crypto.executors.base import current_executor
from fedcredit.crypto.keys import PrivateKey, PublicKey
from fedcredit.crypto.modarith import batch_invert
from fedcredit.crypto.stock import randomness_stock
from fedcredit.errors import CryptoError


class EncryptedVector:
    """Ciphertexts (gmpy2 ``mpz`` mod n**2) of values encoded at ``2**scale_bits``.

    Operations return new vectors; none mutates its inputs. Results of homomorphic
    operations are not rerandomized unless a method says so: call :meth:`rerandomize`
    before sending a result to a party that saw the inputs.
    """

    __slots__ = ("ciphertexts", "public_key", "scale_bits")

    def __init__(self, public_key: PublicKey, ciphertexts: Sequence[Any], scale_bits: int) -> None:
        if not isinstance(public_key, PublicKey):
            raise CryptoError("EncryptedVector needs a fedcredit PublicKey")
        self.public_key = public_key
        self.ciphertexts: list[Any] = [c if type(c) is _MPZ else mpz(c) for c in ciphertexts]
        self.scale_bits = check_scale(scale_bits)

    def __len__(self) -> int:
        return len(self.ciphertexts)

    def __repr__(self) -> str:
        return (
            f"EncryptedVector(len={len(self)}, scale_bits={self.scale_bits}, "
            f"key={self.public_key.fingerprint})"
        )

    def _new(self, ciphertexts: list[Any], scale_bits: int | None = None) -> EncryptedVector:
        # Results of our own arithmetic are mpz already: skip the constructor's conversion.
        out = EncryptedVector.__new__(EncryptedVector)
        out.public_key = self.public_key
        out.ciphertexts = ciphertexts
        out.scale_bits = self.scale_bits if scale_bits is None else scale_bits
        return out

    def _check_compatible(self, other: EncryptedVector) -> None:
        if not isinstance(other, EncryptedVector):
            raise CryptoError(f"expected an EncryptedVector, got {type(other).__name__}")
        if other.public_key != self.public_key:
            raise CryptoError(
                f"vectors are under different keys ({self.public_key.fingerprint} vs "
                f"{other.public_key.fingerprint})"
            )
        if other.scale_bits != self.scale_bits:
            raise CryptoError(
                f"vectors have different scales (2**{self.scale_bits} vs 2**{other.scale_bits})"
            )
        if len(other) != len(self):
            raise CryptoError(f"vectors have different lengths ({len(self)} vs {len(other)})")

    def _check_length(self, count: int, what: str) -> None:
        if count != len(self):
            raise CryptoError(f"{what} has length {count}, the vector has {len(self)}")

    def add(self, other: EncryptedVector) -> EncryptedVector:
        """Elementwise sum (same key, same scale, same length)."""
        self._check_compatible(other)
        nsq = self.public_key.nsquare

        def work(pairs: Sequence[tuple[Any, Any]]) -> list[Any]:
            return [a * b % nsq for a, b in pairs]

        return self._new(
            pool.map_chunked(work, list(zip(self.ciphertexts, other.ciphertexts, strict=True)))
        )

    def sub(self, other: EncryptedVector) -> EncryptedVector:
        """Elementwise difference (same key, same scale, same length)."""
        self._check_compatible(other)
        return self.add(other.neg())

    def neg(self) -> EncryptedVector:
        """Elementwise negation (modular inverses, batched: about 3 multiplications each)."""
        nsq = self.public_key.nsquare
        return self._new(pool.map_chunked(lambda cs: batch_invert(cs, nsq), self.ciphertexts))

    def add_plain(self, values: npt.ArrayLike) -> EncryptedVector:
        """Add plaintext floats, encoded at this vector's scale."""
        array = np.asarray(values)
        self._check_length(len(array), "plaintext")
        return self.add_plain_ints(encode(array, self.scale_bits, self.public_key.n))

    def add_plain_ints(self, ints: Sequence[int] | npt.NDArray[np.integer[Any]]) -> EncryptedVector:
        """Add plaintext integers that are already at this vector's scale (taken mod n)."""
        values = _as_ints(ints)
        self._check_length(len(values), "plaintext")
        n, nsq = self.public_key.n, self.public_key.nsquare
        # (1 + n m) is g**m for g = n + 1: no exponentiation needed.

        def work(pairs: Sequence[tuple[Any, int]]) -> list[Any]:
            return [c * (1 + n * (m % n)) % nsq for c, m in pairs]

        return self._new(pool.map_chunked(work, list(zip(self.ciphertexts, values, strict=True))))

    def mul_plain_ints(
        self, ints: Sequence[int] | npt.NDArray[np.integer[Any]], int_scale_bits: int
    ) -> EncryptedVector:
        """Elementwise product by signed integers at scale ``int_scale_bits``; scales add."""
        values = _as_ints(ints)
        self._check_length(len(values), "multiplier")
        extra = check_scale(int_scale_bits)
        nsq = self.public_key.nsquare

        def work(pairs: Sequence[tuple[Any, int]]) -> list[Any]:
            powers = [gmpy2.powmod(c, abs(k), nsq) for c, k in pairs]
            # Negative multipliers: c**|k| inverted, all inverses of a chunk batched.
            negative = [i for i, (_, k) in enumerate(pairs) if k < 0]
            for i, inverse in zip(
                negative, batch_invert([powers[i] for i in negative], nsq), strict=True
            ):
                powers[i] = inverse
            return powers

        out = pool.map_chunked(work, list(zip(self.ciphertexts, values, strict=True)))
        return self._new(out, check_scale(self.scale_bits + extra))

    def sum(self) -> EncryptedVector:
        """The encrypted sum of all entries, as a vector of length 1."""
        nsq = self.public_key.nsquare
        # An empty sum is 1, the encryption of 0 with r = 1 (deterministic, like any sum).
        acc = mpz(1)
        for c in self.ciphertexts:
            acc = acc * c % nsq
        return self._new([acc])

    def rerandomize(self, rng: random.Random | None = None) -> EncryptedVector:
        """Same plaintexts, fresh DJN randomness ``hs**x``: unlinkable to this vector's
        ciphertexts for anyone but the key's owner.

        The fast path, only for a receiver that is NOT the key's owner: the owner chose ``hs``
        and may strip its powers (security review F6). Before the owner decrypts, use
        :meth:`rerandomize_for_owner`.
        """
        nsq = self.public_key.nsquare
        masks = self.public_key.obfuscators(len(self), rng)
        return self._new([c * r % nsq for c, r in zip(self.ciphertexts, masks, strict=True)])

    def rerandomize_for_owner(self, rng: random.Random | None = None) -> EncryptedVector:
        """Same plaintexts, times ``r**n`` with r uniform in Z*_n (textbook Paillier), for a
        vector that goes to the key's owner.

        The owner then learns the plaintexts only: the randomness is uniform whatever the
        inputs carried and whatever base the owner published. One full exponentiation per
        ciphertext (some fifteen times :meth:`rerandomize`), so pack first.
        """
        nsq = self.public_key.nsquare
        masks = self.public_key.full_obfuscators(len(self), rng)
        return self._new([c * r % nsq for c, r in zip(self.ciphertexts, masks, strict=True)])

    def take(self, indices: Sequence[int] | npt.NDArray[np.integer[Any]]) -> EncryptedVector:
        """The entries at ``indices`` (in that order, repeats allowed)."""
        count = len(self)
        picked: list[Any] = []
        for i in _as_ints(indices):
            if not -count <= i < count:
                raise CryptoError(f"index {i} out of range for a vector of length {count}")
            picked.append(self.ciphertexts[i])
        return self._new(picked)

    def concat(self, *others: EncryptedVector) -> EncryptedVector:
        """This vector followed by ``others`` (same key and scale; lengths may differ)."""
        joined = list(self.ciphertexts)
        for other in others:
            if not isinstance(other, EncryptedVector) or other.public_key != self.public_key:
                raise CryptoError("concat needs EncryptedVectors under the same key")
            if other.scale_bits != self.scale_bits:
                raise CryptoError(
                    f"concat needs one scale (2**{self.scale_bits} vs 2**{other.scale_bits})"
                )
            joined.extend(other.ciphertexts)
        return self._new(joined)


_MPZ = type(mpz(0))


def _as_ints(values: Iterable[Any]) -> list[int]:
    if isinstance(values, np.ndarray):
        if values.ndim != 1 or values.dtype.kind not in "iu":
            raise CryptoError(f"expected a 1-D integer array, got {values.dtype} {values.shape}")
        return [int(v) for v in values.tolist()]
    out: list[int] = []
    for v in values:
        if isinstance(v, bool) or (not isinstance(v, int | np.integer) and type(v) is not _MPZ):
            raise CryptoError(f"expected integers, got {type(v).__name__}")
        out.append(int(v))
    return out


def concat(first: EncryptedVector, *others: EncryptedVector) -> EncryptedVector:
    """Join vectors under one key and scale (``first.concat(*others)``)."""
    return first.concat(*others)


def encrypt_ints(
    public_key: PublicKey,
    ints: Sequence[int],
    scale_bits: int,
    *,
    rng: random.Random | None = None,
) -> EncryptedVector:
    """Encrypt integers already mod n (or signed, reduced here) at ``scale_bits``."""
    n, nsq = public_key.n, public_key.nsquare
    if rng is None and randomness_stock():
        # DJN randomness computed ahead while the pool was idle (fedcredit.crypto.stock).
        pairs = list(zip(ints, public_key.obfuscators(len(ints)), strict=True))
        return EncryptedVector(
            public_key,
            pool.map_chunked(
                lambda part: [(1 + n * (mpz(m) % n)) * r % nsq for m, r in part], pairs
            ),
            scale_bits,
        )
    # Exponents are drawn here, in the caller's thread, so an injected rng stays deterministic
    # whichever executor (threads, Ray) computes the ciphertexts.
    exponents = public_key.random_exponents(len(ints), rng)
    cts = current_executor().encrypt(public_key.table, n, ints, exponents)
    return EncryptedVector(public_key, cts, scale_bits)


def encrypt_ints_for_owner(
    public_key: PublicKey,
    ints: Sequence[int],
    scale_bits: int,
    *,
    rng: random.Random | None = None,
) -> EncryptedVector:
    """Encrypt integers with textbook randomness ``r**n`` (never ``hs``), for values that end
    up, after homomorphic steps, at the key's owner: a base the owner chose may be no n-th
    residue, and ``hs**x`` would then add a value it can read."""
    n, nsq = public_key.n, public_key.nsquare
    masks = public_key.full_obfuscators(len(ints), rng)
    cts = [(1 + n * (mpz(m) % n)) * r % nsq for m, r in zip(ints, masks, strict=True)]
    return EncryptedVector(public_key, cts, scale_bits)


def encrypt_vector(
    public_key: PublicKey,
    values: npt.ArrayLike,
    scale_bits: int,
    *,
    rng: random.Random | None = None,
) -> EncryptedVector:
    """Encrypt float64 values at one scale ``2**scale_bits`` with fresh DJN randomness.

    The receiver learns the length and the scale only. ``rng`` is for deterministic tests.
    """
    return encrypt_ints(public_key, encode(values, scale_bits, public_key.n), scale_bits, rng=rng)


def decrypt_ints(private_key: PrivateKey, ev: EncryptedVector) -> list[int]:
    """Raw plaintexts in ``[0, n)`` (CRT, threads); checks the key matches."""
    if ev.public_key != private_key.public_key:
        raise CryptoError(
            f"vector is under key {ev.public_key.fingerprint}, not "
            f"{private_key.public_key.fingerprint}"
        )
    return private_key.raw_decrypt_many(ev.ciphertexts)


def decrypt_vector(private_key: PrivateKey, ev: EncryptedVector) -> npt.NDArray[np.float64]:
    """float64 values of ``ev`` (for tests and key owners; the coordinator uses packing)."""
    return decode(decrypt_ints(private_key, ev), ev.scale_bits, private_key.public_key.n)
