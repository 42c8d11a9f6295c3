"""The executor seam: who runs the heavy kernels, and the one this process uses now.

Five kernels carry almost all of an epoch's work: DJN encryption, ``X.T @ [[d]]``, weighted
sums, the Horner packing of ``mask_and_pack`` (and of ``pack_for_owner`` and the digit packing)
and CRT decryption; a sixth, the encrypted bin sums, carries the trees' and the binning's
histograms, and a seventh, ``powers``, the textbook randomizers ``r**n`` of what goes to a key's
owner. ``fedcredit.crypto`` hands
each of them, as plain numbers, to the current :class:`Executor`: the thread pool
(:class:`~fedcredit.crypto.executors.threads.ThreadExecutor`, the default) or a Ray cluster
(:class:`~fedcredit.crypto.executors.ray_executor.RayExecutor`). Every executor runs the same
functions on the same numbers (``fedcredit.crypto.executors.threads``' block functions), and
every result is the unique residue in ``[0, modulus)``, so the choice never changes a bit of a
ciphertext. Randomness is never drawn by an executor: exponents and masks come from the caller,
so an injected rng gives the same ciphertexts everywhere.

Light per-item work of another package (the PSI's hashing and X25519 blinding, 10 to 50 us an
id) goes through :meth:`Executor.map_blocks`: the caller owns the block functions (module-level,
so a worker process loads them by name) and its own local path; the executor only ships blocks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from fedcredit.crypto.djn import FixedBaseTable
from fedcredit.crypto.executors.threads import ThreadExecutor

#: A packing group: ciphertexts and their masks, first slot high.
Group = tuple[Sequence[Any], Sequence[int]]
#: A block function: ``fn(*args) -> bytes`` for one block, defined at module level.
BlockFunction = Callable[..., bytes]
#: ``args(start, end)``: the block function's arguments for items ``start .. end`` of a call.
BlockArgs = Callable[[int, int], tuple[Any, ...]]


class PublicNumbers(Protocol):
    """What an executor reads of a public key: ``n`` and the DJN base ``hs``."""

    n: Any
    nsquare: Any
    hs: Any


class Decryptor(Protocol):
    """What an executor needs of a private key (``fedcredit.crypto.keys.PrivateKey``)."""

    p: Any
    q: Any

    @property
    def public_key(self) -> PublicNumbers: ...

    def raw_decrypt(self, ciphertext: Any) -> Any: ...

    def decrypt_half(self, c: Any, use_p: bool) -> Any: ...

    def combine_halves(self, mp: Any, mq: Any) -> Any: ...


class Executor(Protocol):
    """Runs the heavy kernels; every method returns exactly what the thread pool returns."""

    name: str

    def encrypt(
        self, table: FixedBaseTable, n: Any, plaintexts: Sequence[int], exponents: Sequence[int]
    ) -> list[Any]:
        """``[(1 + n (m mod n)) * hs**x mod n**2]`` for the table's base ``hs``."""
        ...

    def matvec_t(self, nsq: Any, ciphertexts: Sequence[Any], x: npt.NDArray[np.int64]) -> list[Any]:
        """``[prod_i c_i ** X[i, j] mod nsq for each column j]`` (signed X)."""
        ...

    def weighted_sum(self, nsq: Any, ciphertexts: Sequence[Any], weights: Sequence[int]) -> Any:
        """``prod_i c_i ** w_i mod nsq`` for signed Python-int weights."""
        ...

    def pack(self, n: Any, nsq: Any, slot_bits: int, groups: Sequence[Group]) -> list[Any]:
        """Per group: Horner ``acc = acc**(2**slot_bits) * c`` times ``1 + n M`` (packed masks)."""
        ...

    def decrypt(self, key: Decryptor, ciphertexts: Sequence[Any]) -> list[Any]:
        """``[key.raw_decrypt(c) for c in ciphertexts]``."""
        ...

    def close(self) -> None:
        """Release what the executor holds (threads, cluster connection)."""
        ...

    def bin_sums(
        self, nsq: Any, ciphertexts: Sequence[Any], codes: npt.NDArray[np.int64],
        n_bins: Sequence[int],
    ) -> list[list[Any]]:  # fmt: skip
        """Per column j, per bin ``b < n_bins[j]``: ``prod of c_i with codes[i, j] == b mod
        nsq`` (1 for an empty bin); ``codes`` has one row per ciphertext, each in range."""

    def map_blocks(self, fn: BlockFunction, count: int, args: BlockArgs) -> list[bytes] | None:
        """``[fn(*args(a, b)) for each block a .. b of range(count)]``, in order, on the
        executor's workers; ``None`` when the caller should run the work itself in this process
        (always on the thread pool; on the others, calls too small for a worker). An error
        ``fn`` raises is raised here as it is, the one of the lowest block first."""
        ...

    def powers(self, bases: Sequence[Any], exponent: Any, modulus: Any) -> list[Any]:
        """``[b**exponent mod modulus for b in bases]`` (a non-negative ``exponent``): the
        textbook randomizers ``r**n mod n**2`` of ciphertexts for the key's owner; a call
        under the executor's minimum block stays on this process's threads."""
        ...


_lock = threading.Lock()
_current: Executor | None = None


def current_executor() -> Executor:
    """The executor crypto kernels run on in this process (the thread pool unless set)."""
    global _current
    with _lock:
        if _current is None:
            _current = ThreadExecutor()
        return _current


def set_executor(executor: Executor | None) -> Executor | None:
    """Make ``executor`` the current one (``None``: back to the thread pool); returns the old
    one, which the caller closes if it is done with it."""
    global _current
    with _lock:
        old, _current = _current, executor
    return old
