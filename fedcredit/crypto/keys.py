"""Paillier keys with DJN encryption, CRT decryption, phe interop and JSON files.

Raw primitives here (``raw_encrypt``, ``raw_decrypt``) take and return integers mod n; only
``fedcredit.crypto`` and its tests should call them. The safe API is in ``vector.py``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gmpy2
import phe
from gmpy2 import mpz

from fedcredit.crypto.djn import FixedBaseTable, LazyTable
from fedcredit.crypto.executors.base import current_executor
from fedcredit.crypto.stock import Stock, StockRegistry, randomness_stock
from fedcredit.errors import CryptoError

#: Smallest modulus ``generate_keypair`` makes without ``allow_small=True``.
MIN_KEY_BITS = 2048
#: Below this even ``allow_small`` refuses: packing and codec margins stop making sense.
ABSOLUTE_MIN_KEY_BITS = 512
#: Largest modulus accepted: beyond it key generation alone would take hours (a peer's
#: absurd request must not tie up a node).
MAX_KEY_BITS = 8192
#: Shortest exponent ``short_exponent_bits`` accepts.
MIN_SHORT_EXPONENT_BITS = 256
#: A peer's modulus must have no prime factor below this.
SMALL_FACTOR_BOUND = 1 << 16

_SYSTEM_RANDOM = random.SystemRandom()
_PUBLIC_KIND = "fedcredit.paillier.public"
_PRIVATE_KIND = "fedcredit.paillier.private"


def system_random() -> random.Random:
    """The operating system's CSPRNG (``random.SystemRandom``), the default randomness."""
    return _SYSTEM_RANDOM


def _make_djn_base(n: Any, nsquare: Any, rng: random.Random) -> Any:
    # h = -y**2 mod n for a random unit y; hs = h**n mod n**2 is a random n-th residue.
    while True:
        y = mpz(rng.randrange(2, int(n)))
        if gmpy2.gcd(y, n) == 1:
            break
    h = (-(y * y)) % n
    return gmpy2.powmod(h, n, nsquare)


def _units(n: Any, count: int, source: random.Random) -> list[Any]:
    """``count`` values r uniform in Z*_n."""
    bases: list[Any] = []
    while len(bases) < count:
        r = mpz(source.randrange(1, int(n)))
        if gmpy2.gcd(r, n) == 1:
            bases.append(r)
    return bases


def _full_obfuscators(n: Any, nsquare: Any, count: int, source: random.Random) -> list[Any]:
    """``count`` values ``r**n mod n**2``: the r drawn here, in the caller's thread (an injected
    rng stays deterministic), the powers on the current executor (a Ray partner's cluster;
    fewer than its minimum block on this process's threads)."""
    return current_executor().powers(_units(n, count, source), n, nsquare)


def _one_full_obfuscator(n: Any, nsquare: Any) -> Any:
    """One ``r**n mod n**2`` in the calling thread: the stock's refill, which never submits to
    an executor (a background thread must not outlive, or race, a cluster being closed)."""
    return gmpy2.powmod(_units(n, 1, _SYSTEM_RANDOM)[0], n, nsquare)


#: Textbook obfuscators kept ready per key (enough for sequential online requests).
FULL_STOCK = 4
_FULL_STOCKS = StockRegistry()
_DJN_STOCKS = StockRegistry()


class PublicKey:
    """A Paillier public key ``n`` with ``g = n + 1`` and the DJN base ``hs``.

    Encryption is ``(1 + n m) * hs**x mod n**2`` with ``x`` uniform on n/2 bits (the choice of
    Damgård-Jurik-Nielsen 2010 and HEU). ``short_exponent_bits`` (opt-in, e.g. 448) draws
    ``x`` from that many bits instead; this is faster but its semantic security rests on an
    extra assumption besides DCR: that discrete logarithms with short exponents in the group
    of n-th residues are hard (DJN's "short exponent" assumption, Damgård, Jurik and Nielsen,
    "A generalization of Paillier's public-key system with applications to electronic voting",
    Int. J. Inf. Secur. 9(6), 2010). ``comb_window`` trades table memory for speed: the table has
    ``ceil(exponent_bits / w) * 2**w`` entries of n**2 size (w = 8: 16 MiB at 2048 bits;
    w = 10: 54 MiB and about 20% faster). Equality is by ``n``: keys differing only in ``hs`` or the
    exponent length encrypt for the same private key.
    """

    def __init__(
        self,
        n: int | Any,
        hs: int | Any | None = None,
        *,
        short_exponent_bits: int | None = None,
        comb_window: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.n: Any = mpz(n)
        if self.n < 15 or self.n % 2 == 0:
            raise CryptoError("Paillier modulus must be an odd integer of at least 4 bits")
        self.nsquare: Any = self.n * self.n
        self.g: Any = self.n + 1
        self.bits: int = int(self.n.bit_length())
        self.max_int: Any = self.n // 3
        self.hs: Any = (
            _make_djn_base(self.n, self.nsquare, rng or _SYSTEM_RANDOM) if hs is None else mpz(hs)
        )
        if not 0 < self.hs < self.nsquare or gmpy2.gcd(self.hs, self.n) != 1:
            raise CryptoError("DJN base hs must be a unit modulo n**2")
        full = (self.bits + 1) // 2
        if short_exponent_bits is not None and not (
            MIN_SHORT_EXPONENT_BITS <= short_exponent_bits <= full
        ):
            raise CryptoError(
                f"short_exponent_bits must be in [{MIN_SHORT_EXPONENT_BITS}, {full}], "
                f"got {short_exponent_bits}"
            )
        if comb_window is not None and not 2 <= comb_window <= 16:
            raise CryptoError(f"comb_window must be 2..16 bits, got {comb_window}")
        self.short_exponent_bits = short_exponent_bits
        self.exponent_bits: int = short_exponent_bits or full
        digest = hashlib.sha256(int(self.n).to_bytes((self.bits + 7) // 8, "big")).hexdigest()
        self.fingerprint: str = digest[:32]
        self._table = LazyTable(self.hs, self.nsquare, self.exponent_bits, comb_window)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and self.n == other.n

    def __hash__(self) -> int:
        return hash(("PublicKey", int(self.n)))

    def __repr__(self) -> str:
        return f"PublicKey(bits={self.bits}, fingerprint={self.fingerprint!r})"

    @property
    def table(self) -> FixedBaseTable:
        """The fixed-base comb table for ``hs``, built on first use."""
        return self._table.get()

    def random_exponents(self, count: int, rng: random.Random | None = None) -> list[int]:
        """``count`` DJN exponents, each uniform on ``exponent_bits`` bits."""
        source = rng or _SYSTEM_RANDOM
        return [source.getrandbits(self.exponent_bits) for _ in range(count)]

    def obfuscators(self, count: int, rng: random.Random | None = None) -> list[Any]:
        """``count`` fresh values ``hs**x mod n**2`` (threads, fixed-base table).

        DJN's fast path, for ciphertexts whose receiver is NOT the key's owner. The owner chose
        ``hs`` and knows p and q: it can pick a base whose powers it strips (``hs = 1``, or a root
        of small order), so ``hs**x`` hides nothing from it. Use :meth:`full_obfuscators` for
        anything the owner decrypts.
        """
        if rng is None and randomness_stock():
            return self._djn_stock().take(count)
        # An encryption of zero is exactly hs**x: the executor (threads or Ray) computes them,
        # with the exponents drawn here so an injected rng gives the same values on either.
        exponents = self.random_exponents(count, rng)
        return current_executor().encrypt(self.table, self.n, [0] * count, exponents)

    def _djn_stock(self) -> Stock:
        def make() -> Stock:
            return Stock(
                lambda: self.table.pow(_SYSTEM_RANDOM.getrandbits(self.exponent_bits)),
                lambda k: self.table.pow_many(self.random_exponents(k)),
                randomness_stock(),
                idle_only=True,
                name="djn-randomness",
            )

        return _DJN_STOCKS.get(self.n, make)

    def full_obfuscators(self, count: int, rng: random.Random | None = None) -> list[Any]:
        """``count`` fresh values ``r**n mod n**2`` with r uniform in Z*_n (textbook Paillier).

        For every ciphertext that goes to the key's owner. Multiplying by one makes the
        randomness of the result uniform whatever the inputs carried and whatever ``hs`` is, so
        the owner who decrypts learns the plaintext only, not which ciphertexts went into it
        (under an honest n: gcd(n, phi(n)) = 1). One full exponentiation each, some fifteen DJN
        obfuscators' worth; ``r`` is drawn in the caller's thread so an injected rng stays
        deterministic.
        """
        if rng is None:
            # Drawn ahead by a background thread, so an online request does not wait for the
            # exponentiation (each value is used once, then dropped).
            n, nsq = self.n, self.nsquare
            stock = _FULL_STOCKS.get(
                n,
                lambda: Stock(
                    lambda: _one_full_obfuscator(n, nsq),
                    lambda k: _full_obfuscators(n, nsq, k, _SYSTEM_RANDOM),
                    FULL_STOCK,
                    idle_only=False,
                    name="obfuscators",
                ),
            )
            return stock.take(count)
        return _full_obfuscators(self.n, self.nsquare, count, rng)

    def raw_encrypt(self, plaintext: int, r: int) -> Any:
        """Textbook Paillier ``(1 + n m) * r**n mod n**2`` with a caller-given ``r``.

        This is phe's ``raw_encrypt(m, r_value=r)``; it exists for known-answer tests.
        """
        m = mpz(plaintext) % self.n
        return (1 + self.n * m) * gmpy2.powmod(mpz(r), self.n, self.nsquare) % self.nsquare

    def raw_encrypt_djn(self, plaintext: int, x: int) -> Any:
        """DJN encryption ``(1 + n m) * hs**x mod n**2`` with a caller-given exponent ``x``."""
        m = mpz(plaintext) % self.n
        return (1 + self.n * m) * gmpy2.powmod(self.hs, mpz(x), self.nsquare) % self.nsquare

    def to_phe(self) -> phe.PaillierPublicKey:
        """The same key as a ``phe.PaillierPublicKey`` (ciphertexts are interchangeable)."""
        return phe.PaillierPublicKey(int(self.n))

    @classmethod
    def from_phe(
        cls, public_key: phe.PaillierPublicKey, *, rng: random.Random | None = None
    ) -> PublicKey:
        """Wrap a phe key; a fresh DJN base is drawn since phe has none."""
        return cls(int(public_key.n), rng=rng)

    def to_json(self) -> str:
        """JSON text with ``n`` and ``hs`` as decimal strings."""
        return json.dumps(self._json_fields())

    def _json_fields(self) -> dict[str, Any]:
        return {"kind": _PUBLIC_KIND, "version": 1, "n": str(self.n), "hs": str(self.hs)}

    @classmethod
    def from_json(cls, text: str | bytes, *, short_exponent_bits: int | None = None) -> PublicKey:
        """Parse :meth:`to_json` output; CryptoError when malformed."""
        fields = _parse_json(text, _PUBLIC_KIND)
        return cls(
            _int_field(fields, "n"),
            _int_field(fields, "hs"),
            short_exponent_bits=short_exponent_bits,
        )


class PrivateKey:
    """The factors ``p < q`` of ``n`` with the CRT constants for fast decryption."""

    def __init__(self, public_key: PublicKey, p: int | Any, q: int | Any) -> None:
        p, q = mpz(p), mpz(q)
        if p * q != public_key.n:
            raise CryptoError("p * q does not equal the public key's n")
        if p == q:
            raise CryptoError("p and q must differ")
        if q < p:
            p, q = q, p
        self.public_key = public_key
        self.p: Any = p
        self.q: Any = q
        self.psquare: Any = p * p
        self.qsquare: Any = q * q
        self.p_inverse: Any = gmpy2.invert(p, q)
        self.hp: Any = self._h(p, self.psquare)
        self.hq: Any = self._h(q, self.qsquare)

    def _h(self, prime: Any, prime_square: Any) -> Any:
        # Every exponent made of p or q goes through GMP's constant-time mpz_powm_sec: the
        # plain powmod's sliding window would show the exponent's bits to a timing attacker.
        lifted = gmpy2.powmod_sec(self.public_key.g, prime - 1, prime_square)
        return gmpy2.invert((lifted - 1) // prime, prime)

    def __repr__(self) -> str:
        return f"PrivateKey(fingerprint={self.public_key.fingerprint!r})"

    def raw_decrypt(self, ciphertext: int | Any) -> Any:
        """Plaintext in ``[0, n)`` of one ciphertext, by CRT over ``p**2`` and ``q**2``."""
        c = mpz(ciphertext)
        return self.combine_halves(self.decrypt_half(c, True), self.decrypt_half(c, False))

    def decrypt_half(self, c: Any, use_p: bool) -> Any:
        """The plaintext mod p (``use_p``) or mod q of ``c``: half of a CRT decryption."""
        prime, square, h = (
            (self.p, self.psquare, self.hp) if use_p else (self.q, self.qsquare, self.hq)
        )
        return (gmpy2.powmod_sec(c, prime - 1, square) - 1) // prime * h % prime

    def combine_halves(self, mp: Any, mq: Any) -> Any:
        """The plaintext mod n from its halves mod p and mod q."""
        return mp + (mq - mp) * self.p_inverse % self.q * self.p

    def raw_decrypt_many(self, ciphertexts: Sequence[Any]) -> list[Any]:
        """``[raw_decrypt(c) for c in ciphertexts]`` on the current executor (the thread pool
        unless the node runs on Ray, ``fedcredit.crypto.executors``).

        On threads, fewer ciphertexts than twice the workers (a packed gradient is often one)
        are split into their mod-p and mod-q halves so that every core still has work.
        """
        return current_executor().decrypt(self, ciphertexts)

    # The names benchmarks/crypto.py times the halves by.
    _half = decrypt_half
    _crt = combine_halves

    def to_phe(self) -> phe.PaillierPrivateKey:
        """The same key as a ``phe.PaillierPrivateKey``."""
        return phe.PaillierPrivateKey(self.public_key.to_phe(), int(self.p), int(self.q))

    @classmethod
    def from_phe(
        cls, private_key: phe.PaillierPrivateKey, *, rng: random.Random | None = None
    ) -> PrivateKey:
        """Wrap a phe private key (and its public key, with a fresh DJN base)."""
        public = PublicKey.from_phe(private_key.public_key, rng=rng)
        return cls(public, int(private_key.p), int(private_key.q))

    def to_json(self) -> str:
        """JSON text with the public fields plus ``p`` and ``q``; keep it secret."""
        fields = self.public_key._json_fields()
        fields.update(kind=_PRIVATE_KIND, p=str(self.p), q=str(self.q))
        return json.dumps(fields)

    @classmethod
    def from_json(cls, text: str | bytes) -> PrivateKey:
        """Parse :meth:`to_json` output, checking that p and q are primes with p q = n."""
        fields = _parse_json(text, _PRIVATE_KIND)
        public = PublicKey(_int_field(fields, "n"), _int_field(fields, "hs"))
        p, q = _int_field(fields, "p"), _int_field(fields, "q")
        if not (gmpy2.is_prime(p) and gmpy2.is_prime(q)):
            raise CryptoError("private key file: p and q must be primes")
        return cls(public, p, q)


def _parse_json(text: str | bytes, kind: str) -> dict[str, Any]:
    try:
        fields = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CryptoError(f"key JSON is not valid JSON: {exc}") from exc
    if not isinstance(fields, dict) or fields.get("kind") != kind:
        raise CryptoError(f"key JSON must be an object of kind {kind!r}")
    if fields.get("version") != 1:
        raise CryptoError(f"unsupported key JSON version {fields.get('version')!r}")
    return fields


def _int_field(fields: dict[str, Any], name: str) -> int:
    value = fields.get(name)
    if not isinstance(value, str) or not value.isdigit():
        raise CryptoError(f"key JSON field {name!r} must be a decimal string")
    return int(value)


def _random_prime(bits: int, rng: random.Random) -> Any:
    while True:
        # The top two bits set make the product of two such primes exactly 2*bits long.
        candidate = mpz(rng.getrandbits(bits)) | (mpz(3) << (bits - 2)) | 1
        prime = gmpy2.next_prime(candidate)
        if prime.bit_length() == bits:
            return prime


def generate_keypair(
    bits: int = MIN_KEY_BITS, *, allow_small: bool = False, rng: random.Random | None = None
) -> tuple[PublicKey, PrivateKey]:
    """A fresh key pair with an n of exactly ``bits`` bits and a random DJN base.

    ``bits < 2048`` is refused unless ``allow_small`` (for tests); ``rng`` defaults to the OS
    CSPRNG and is injectable only so tests can be deterministic.
    """
    if not isinstance(bits, int) or bits % 2:
        raise CryptoError(f"key size must be an even number of bits, got {bits!r}")
    if bits < MIN_KEY_BITS and not allow_small:
        raise CryptoError(f"key size {bits} is below {MIN_KEY_BITS} bits; refusing")
    if bits < ABSOLUTE_MIN_KEY_BITS:
        raise CryptoError(f"key size {bits} is below {ABSOLUTE_MIN_KEY_BITS} bits even for tests")
    if bits > MAX_KEY_BITS:
        raise CryptoError(f"key size {bits} is above {MAX_KEY_BITS} bits; refusing")
    source = rng or _SYSTEM_RANDOM
    half = bits // 2
    while True:
        p, q = _random_prime(half, source), _random_prime(half, source)
        if p != q and (p * q).bit_length() == bits:
            break
    public = PublicKey(p * q, rng=source)
    return public, PrivateKey(public, p, q)


@functools.cache
def _small_primes() -> Any:
    # The product of every prime below SMALL_FACTOR_BOUND (about 94,000 bits): one gcd tests them.
    return gmpy2.primorial(SMALL_FACTOR_BOUND - 1)


def check_peer_key(
    key: PublicKey, *, allow_small: bool = False, party: str = "a peer"
) -> PublicKey:
    """``key`` when it meets the policy for a key a peer gives us, else CryptoError naming
    ``party`` (one line, safe to show the peer).

    Every receiver applies it where a peer's key arrives (the job key, the scoring key, a
    lender's binning key, a loan-stacking lender's key):

    - ``2048 <= bits <= 8192``; ``allow_small`` (the test-only switch) lowers the floor to 512;
    - n odd, not prime (anyone could decrypt), not a perfect power, no prime factor below 2**16;
    - the DJN base ``hs`` of full size (above n) with ``hs mod n`` not 1 or n - 1: that rules out
      ``hs = 1``, ``n**2 - 1`` and every ``+-(1 + n)**k``, under which ``hs**x`` hides nothing or
      carries a plaintext anyone can strip.

    What no check can see without the factors: whether ``hs`` is an n-th residue of large
    order, or whether gcd(n, phi(n)) = 1. Hence whoever re-randomizes a ciphertext that goes to
    the key's owner uses :meth:`PublicKey.full_obfuscators`, which does not depend on ``hs``.
    """
    refused = f"the Paillier key from {party} is refused"
    bits = key.bits
    floor = ABSOLUTE_MIN_KEY_BITS if allow_small else MIN_KEY_BITS
    if bits < floor:
        hint = "even in tests" if allow_small else "outside tests"
        raise CryptoError(f"{refused}: {bits} bits, below the {floor} required {hint}")
    if bits > MAX_KEY_BITS:
        raise CryptoError(f"{refused}: {bits} bits, above the {MAX_KEY_BITS} accepted")
    n, hs = key.n, key.hs
    if gmpy2.gcd(n, _small_primes()) != 1:
        raise CryptoError(f"{refused}: n has a prime factor below {SMALL_FACTOR_BOUND}")
    if gmpy2.is_power(n) or gmpy2.is_prime(n):
        raise CryptoError(f"{refused}: n is a prime or a perfect power, not a product of primes")
    if hs <= n or hs % n in (1, n - 1):
        raise CryptoError(
            f"{refused}: its DJN base hs is degenerate (hs = +-(1 + n)**k or below n), "
            "so encryptions under it would hide nothing"
        )
    return key


def save_private_key(path: str | os.PathLike[str], private_key: PrivateKey) -> None:
    """Write the key as JSON, atomically (temp file then rename), readable by owner only."""
    target = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".fedcredit-key-", dir=target.parent)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(private_key.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise CryptoError(f"cannot write private key to {target}: {exc}") from exc


def load_private_key(path: str | os.PathLike[str]) -> PrivateKey:
    """Read a key written by :func:`save_private_key`; CryptoError when unreadable or bad."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CryptoError(f"cannot read private key {path}: {exc}") from exc
    return PrivateKey.from_json(text)
