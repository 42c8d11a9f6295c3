"""fedcredit.crypto: Paillier (DJN encryption, CRT decryption) over fixed-point vectors.

The safe API other packages import is listed in ``__all__``; raw primitives
(``PublicKey.raw_encrypt``, ``PrivateKey.raw_decrypt``) are for this package and its tests.
"""

from fedcredit.crypto.codec import decode, encode
from fedcredit.crypto.digits import (
    DigitPacked,
    decrypt_digit_numbers,
    decrypt_digits,
    digits_from_bytes,
    digits_per_ciphertext,
    digits_to_bytes,
    mask_and_pack_digits,
)
from fedcredit.crypto.histograms import bin_sums
from fedcredit.crypto.keys import (
    PrivateKey,
    PublicKey,
    check_peer_key,
    generate_keypair,
    load_private_key,
    save_private_key,
)
from fedcredit.crypto.multiexp import matvec_t, weighted_sum
from fedcredit.crypto.packing import (
    PackedCiphertexts,
    decrypt_packed,
    encrypt_packed,
    mask_and_pack,
    mask_packed,
    packed_count,
    unmask,
)
from fedcredit.crypto.pool import get_workers, set_workers
from fedcredit.crypto.serde import (
    packed_from_bytes,
    packed_to_bytes,
    vector_from_bytes,
    vector_to_bytes,
)
from fedcredit.crypto.vector import (
    EncryptedVector,
    decrypt_vector,
    encrypt_ints_for_owner,
    encrypt_vector,
)

__all__ = [
    "DigitPacked",
    "EncryptedVector",
    "PackedCiphertexts",
    "PrivateKey",
    "PublicKey",
    "bin_sums",
    "check_peer_key",
    "decode",
    "decrypt_digit_numbers",
    "decrypt_digits",
    "decrypt_packed",
    "decrypt_vector",
    "digits_from_bytes",
    "digits_per_ciphertext",
    "digits_to_bytes",
    "encode",
    "encrypt_ints_for_owner",
    "encrypt_packed",
    "encrypt_vector",
    "generate_keypair",
    "get_workers",
    "load_private_key",
    "mask_and_pack",
    "mask_and_pack_digits",
    "mask_packed",
    "matvec_t",
    "packed_count",
    "packed_from_bytes",
    "packed_to_bytes",
    "save_private_key",
    "set_workers",
    "unmask",
    "vector_from_bytes",
    "vector_to_bytes",
    "weighted_sum",
]
