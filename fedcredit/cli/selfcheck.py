"""``fedcredit selfcheck``: the Paillier engine against phe on this machine, in a few seconds."""

from __future__ import annotations

import time

import numpy as np
import phe

from fedcredit.crypto import (
    EncryptedVector,
    PrivateKey,
    PublicKey,
    decrypt_packed,
    decrypt_vector,
    encrypt_vector,
    generate_keypair,
    mask_and_pack,
    matvec_t,
    unmask,
)
from fedcredit.errors import CryptoError


def selfcheck(key_bits: int = 2048) -> None:
    """Encrypt, add, multiply, pack and decrypt; cross-decrypt with phe; print the timings."""
    started = time.perf_counter()
    public, private = generate_keypair(key_bits)
    print(
        f"key: {public.bits} bits, fingerprint {public.fingerprint} ({time.perf_counter() - started:.1f} s)"
    )
    values = np.array([0.0, -1.5, 2.25, 1e-3, -123.456])
    encrypted = encrypt_vector(public, values, 20)
    if not np.allclose(decrypt_vector(private, encrypted), values, atol=1e-6):
        raise CryptoError("selfcheck: decrypt(encrypt(v)) != v")
    x = np.array([[1, -2], [3, 4], [-5, 6], [7, 8], [9, -10]], dtype=np.int64)
    product = matvec_t(x, 0, encrypted)
    packed, masks = mask_and_pack(product, 60)
    got = unmask(decrypt_packed(private, packed), masks, product.scale_bits)
    if not np.allclose(got, x.T @ values, atol=1e-5):
        raise CryptoError("selfcheck: X.T @ [[v]] differs from plaintext")
    phe_private = private.to_phe()
    theirs = PublicKey.from_phe(phe_private.public_key)
    if theirs.n != public.n:
        raise CryptoError("selfcheck: phe key round trip changed n")
    # Integers at exponent 0 in phe are fedcredit's fixed point at scale 0: the same plaintext.
    ciphertext = phe_private.public_key.encrypt(42).ciphertext()
    mine = PrivateKey.from_phe(phe_private)
    if decrypt_vector(mine, EncryptedVector(theirs, [ciphertext], 0))[0] != 42:
        raise CryptoError("selfcheck: a phe ciphertext does not decrypt with fedcredit")
    ours = int(encrypt_vector(public, np.array([7.0]), 0).ciphertexts[0])
    if phe_private.decrypt(phe.EncryptedNumber(phe_private.public_key, ours, 0)) != 7:
        raise CryptoError("selfcheck: a fedcredit ciphertext does not decrypt with phe")
    timer = time.perf_counter()
    encrypt_vector(public, np.zeros(200), 20)
    rate = 200 / (time.perf_counter() - timer)
    print(
        f"ok: encrypt, add, X.T @ [[v]], masked packing and phe interop; {rate:,.0f} encryptions/s"
    )
