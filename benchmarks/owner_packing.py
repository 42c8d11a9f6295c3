"""What a party sends to a key's owner, on the threads and on a local Ray cluster: the textbook
randomizers ``r**n mod n**2`` (``Executor.powers``) and the loan stacking's digit packing
(``mask_and_pack_digits``, the executor's ``pack`` plus one ``r**n`` per ciphertext).

``python benchmarks/owner_packing.py [--bits 2048] [--count 19] [--digits 480] [--repeat 3]``
prints seconds per call as JSON; every executor gives the same bits (checked here).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fedcredit.crypto import encrypt_vector, generate_keypair, mask_and_pack_digits
from fedcredit.crypto.executors import ThreadExecutor, set_executor
from fedcredit.crypto.executors.ray_executor import RayExecutor
from fedcredit.crypto.keys import _full_obfuscators


def _timed(executor: Any, fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    set_executor(executor)
    try:
        seconds, result = [], None
        for _ in range(repeat):
            started = time.perf_counter()
            result = fn()
            seconds.append(round(time.perf_counter() - started, 3))
        return seconds, result
    finally:
        set_executor(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--count", type=int, default=19, help="r**n values a call")
    parser.add_argument("--digits", type=int, default=480, help="80-bit values packed a call")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    public, _ = generate_keypair(args.bits, allow_small=args.bits < 2048, rng=random.Random(1))
    group = (args.bits - 2 - 80) // 80
    values = encrypt_vector(public, np.zeros(args.digits), 0, rng=random.Random(2))
    values = values.add_plain_ints([random.Random(3).randrange(1 << 64)] * args.digits)
    kernels = {
        "powers": lambda: _full_obfuscators(public.n, public.nsquare, args.count, random.Random(4)),
        "digit_packing": lambda: mask_and_pack_digits(values, 80, group, rng=random.Random(5)),
    }
    ray = RayExecutor("local", workers=2)
    out: dict[str, Any] = {"bits": args.bits, "count": args.count, "digits": args.digits,
                           "ciphertexts": -(-args.digits // group)}  # fmt: skip
    try:
        for name, fn in kernels.items():
            threads, expected = _timed(ThreadExecutor(), fn, args.repeat)
            on_ray, got = _timed(ray, fn, args.repeat)
            if got != expected:
                raise SystemExit(f"{name}: Ray and the threads gave different bits")
            out[name] = {"threads_s": threads, "ray_2_workers_s": on_ray}
    finally:
        ray.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
