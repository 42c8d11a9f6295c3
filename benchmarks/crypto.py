"""fedcredit.crypto against plain phe, on the same key and data.

    python benchmarks/crypto.py --json OUT.json [--quick]

phe is written the way a phe user writes it (list comprehensions of ``encrypt``,
``decrypt``, ``+``, ``*``) and timed on a subset; every rate is per value (per
multiply-accumulate for the matrix product). ``--quick`` runs 2048-bit keys only.
Single-core rows use one worker; ``multi`` rows use every core. Times are wall clock;
the load average at start is recorded because the numbers mean little on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gmpy2
import numpy as np
import phe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedcredit.crypto import (
    PublicKey,
    decrypt_packed,
    decrypt_vector,
    encrypt_vector,
    generate_keypair,
    mask_and_pack,
    matvec_t,
    set_workers,
    unmask,
)
from fedcredit.crypto.djn import table_bytes
from fedcredit.crypto.stock import set_randomness_stock

ROWS, FEATURES = 4096, 10
Z_SCALE, X_SCALE = 24, 16


def timed(fn: Callable[[], Any], repeat: int = 1, *, cpu: bool = True) -> float:
    """Best time of ``repeat`` runs: process CPU time for single-threaded code (robust to
    other processes on the machine), wall time (``cpu=False``) for multi-threaded code."""
    clock = time.process_time if cpu else time.perf_counter
    best = float("inf")
    for _ in range(repeat):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best


def row(op: str, bits: int, fc_rate: float, phe_rate: float, **extra: Any) -> dict[str, Any]:
    out = {
        "op": op,
        "key_bits": bits,
        "fedcredit_per_s": round(fc_rate, 1),
        "phe_per_s": round(phe_rate, 1),
        "ratio": round(fc_rate / phe_rate, 2),
    }
    out.update(extra)
    return out


def fixed(x: np.ndarray, bits: int) -> np.ndarray:
    return np.rint(np.ldexp(x, bits)).astype(np.int64)


def variable_time_decrypt(private: Any, c: Any) -> Any:
    """The CRT decryption as it was before F18: ``gmpy2.powmod`` with the secret p - 1, q - 1."""
    halves = []
    for prime, square, h in (
        (private.p, private.psquare, private.hp),
        (private.q, private.qsquare, private.hq),
    ):
        halves.append((gmpy2.powmod(c, prime - 1, square) - 1) // prime * h % prime)
    return private._crt(*halves)


def bench_key(bits: int, quick: bool, cores: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(bits)
    public, private = generate_keypair(bits)
    php, phs = public.to_phe(), private.to_phe()
    start = time.perf_counter()
    public.table  # noqa: B018  (build the fixed-base table once, outside the timings)
    table_s = time.perf_counter() - start
    print(f"[{bits}] fixed-base table built in {table_s:.2f} s", file=sys.stderr)

    n_fc = 512 if quick else 1024
    n_phe = (24 if quick else 32) if bits <= 2048 else 12
    values = rng.normal(size=ROWS)
    results: list[dict[str, Any]] = []

    # Encrypt: phe on a subset, then fedcredit single and multi on the same values.
    phe_enc = timed(lambda: [php.encrypt(float(v)) for v in values[:n_phe]], 3) / n_phe
    set_workers(1)
    fc_single = timed(lambda: encrypt_vector(public, values[:n_fc], Z_SCALE), 3) / n_fc
    short = PublicKey(public.n, public.hs, short_exponent_bits=448)
    short.table  # noqa: B018
    fc_short = timed(lambda: encrypt_vector(short, values[:n_fc], Z_SCALE), 3) / n_fc
    set_workers(cores)
    fc_multi = timed(lambda: encrypt_vector(public, values[:n_fc], Z_SCALE), cpu=False) / n_fc
    fc_short_multi = timed(lambda: encrypt_vector(short, values[:n_fc], Z_SCALE), cpu=False) / n_fc
    results += [
        row("encrypt_single", bits, 1 / fc_single, 1 / phe_enc, table_build_s=round(table_s, 2)),
        row("encrypt_multi", bits, 1 / fc_multi, 1 / phe_enc, workers=cores),
        row("encrypt_single_short448", bits, 1 / fc_short, 1 / phe_enc, opt_in=True),
        row("encrypt_multi_short448", bits, 1 / fc_short_multi, 1 / phe_enc, opt_in=True),
    ]

    ev = encrypt_vector(public, values, Z_SCALE)
    phe_cts = [php.encrypt(float(v)) for v in values[:n_phe]]
    phe_dec = timed(lambda: [phs.decrypt(c) for c in phe_cts], 3) / n_phe
    small = ev.take(list(range(n_fc // 4)))
    set_workers(1)
    fc_dec1 = timed(lambda: decrypt_vector(private, small), 3) / len(small)
    set_workers(cores)
    fc_decm = timed(lambda: decrypt_vector(private, small), cpu=False) / len(small)
    # The CRT halves exponentiate with p - 1 and q - 1 through the constant-time powmod_sec
    # (security review F18); the same CRT with the variable-time powmod, for its cost.
    cts = small.ciphertexts
    var_dec = timed(lambda: [variable_time_decrypt(private, c) for c in cts], 3) / len(small)
    results.append(
        row(
            "decrypt_single",
            bits,
            1 / fc_dec1,
            1 / phe_dec,
            variable_time_powmod_per_s=round(1 / var_dec, 1),
            constant_time_cost=round(fc_dec1 / var_dec, 2),
        )
    )
    results.append(row("decrypt_multi", bits, 1 / fc_decm, 1 / phe_dec, workers=cores))
    set_workers(1)

    # Ciphertext + ciphertext on all 4096 values for both (same memory footprint): phe
    # EncryptedNumbers wrap fedcredit's ciphertexts (exponent -6 is scale 2**24 in base 16).
    phe_all = [phe.EncryptedNumber(php, int(c), exponent=-Z_SCALE // 4) for c in ev.ciphertexts]
    phe_add = timed(lambda: [a + b for a, b in zip(phe_all, phe_all, strict=True)], 3) / ROWS
    fc_add = timed(lambda: ev.add(ev), 3) / ROWS
    results.append(row("add_single", bits, 1 / fc_add, 1 / phe_add))
    set_workers(cores)
    fc_add_multi = timed(lambda: ev.add(ev), 3, cpu=False) / ROWS
    set_workers(1)
    results.append(row("add_multi", bits, 1 / fc_add_multi, 1 / phe_add, workers=cores))
    factors = rng.normal(size=ROWS)
    # Ciphertext * plaintext (phe: floats, the way users write it).
    n_mul = 4 * n_phe
    phe_mul = (
        timed(lambda: [c * float(f) for c, f in zip(phe_all, factors[:n_mul], strict=False)])
        / n_mul
    )
    ints = fixed(factors, X_SCALE)
    fc_mul = timed(lambda: ev.mul_plain_ints(ints, X_SCALE)) / ROWS
    results.append(
        row("mul_plain_single", bits, 1 / fc_mul, 1 / phe_mul, fedcredit_factor_bits=X_SCALE)
    )

    if bits == 2048:
        results.extend(bench_windows(bits, public, values[:n_fc], 1 / phe_enc, quick))
        results.append(bench_stocked(bits, public, values[:n_fc], 1 / phe_enc))
    results.extend(bench_matvec(bits, quick, public, php, ev, rng, cores))
    results.extend(bench_gradient(bits, public, private, php, phs, rng, cores))
    return results


def bench_windows(
    bits: int, public: Any, values: np.ndarray, phe_rate: float, quick: bool
) -> list[dict[str, Any]]:
    """Encryption on one core for each comb window, with its table's memory and build time
    (issue 16: the window is chosen from a memory budget, ``set_table_budget``). The windows
    are measured interleaved, twice each, and the better run kept, so machine load hits all."""
    windows = (6, 8, 10) if quick else (6, 8, 10, 12)
    keys, built = {}, {}
    for window in windows:
        key = PublicKey(public.n, public.hs, comb_window=window)
        start = time.perf_counter()
        key.table  # noqa: B018
        built[window] = time.perf_counter() - start
        keys[window] = key
    set_workers(1)
    best = dict.fromkeys(windows, float("inf"))
    for _ in range(2):
        for window in windows:
            seconds = timed(lambda k=keys[window]: encrypt_vector(k, values, Z_SCALE))
            best[window] = min(best[window], seconds / len(values))
    out = []
    for window in windows:
        size = table_bytes(public.exponent_bits, int(public.nsquare.bit_length()), window)
        out.append(
            row(
                f"encrypt_single_window{window}",
                bits,
                1 / best[window],
                phe_rate,
                window=window,
                table_mib=round(size / 2**20, 1),
                table_build_s=round(built[window], 2),
            )
        )
    return out


def bench_stocked(bits: int, public: Any, values: np.ndarray, phe_rate: float) -> dict[str, Any]:
    """Encryption on one core when the DJN randomness was computed ahead while the pool was
    idle (``set_randomness_stock``): what a party gains from the time it waits for its peers."""
    set_workers(1)
    set_randomness_stock(len(values))
    try:
        public.obfuscators(1)  # makes the key's stock; it fills while nothing else runs
        stock = public._djn_stock()
        deadline = time.monotonic() + 120
        while len(stock) < len(values) and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = len(stock)
        seconds = timed(lambda: encrypt_vector(public, values, Z_SCALE), cpu=False) / len(values)
    finally:
        set_randomness_stock(0)
    return row("encrypt_single_stocked", bits, 1 / seconds, phe_rate, stocked=ready)


def bench_matvec(
    bits: int, quick: bool, public: Any, php: Any, ev: Any, rng: Any, cores: int
) -> list[dict[str, Any]]:
    """``X.T @ [[d]]`` for X of 4096 x 10 standardized features (|x| < 8)."""
    x = np.clip(rng.normal(size=(ROWS, FEATURES)), -7.9, 7.9)
    sub = 16 if quick else 32
    d_phe = [php.encrypt(float(v)) for v in rng.normal(size=sub)]
    macs = sub * FEATURES

    def phe_matvec(matrix: Any) -> list[Any]:
        return [sum(matrix[i][j] * d_phe[i] for i in range(sub)) for j in range(FEATURES)]

    phe_float = macs / timed(lambda: phe_matvec(x))
    out = []
    for x_bits in (16, 12, 8):
        x_int = fixed(x, x_bits - 4)  # x_bits signed bits in all, since |x| < 8 = 2**3
        lists = x_int.tolist()
        phe_same = macs / timed(lambda lists=lists: phe_matvec(lists))
        set_workers(1)
        single = ROWS * FEATURES / timed(lambda xi=x_int, s=x_bits - 4: matvec_t(xi, s, ev))
        set_workers(cores)
        multi = (
            ROWS * FEATURES / timed(lambda xi=x_int, s=x_bits - 4: matvec_t(xi, s, ev), cpu=False)
        )
        set_workers(1)
        common = {
            "x_bits": x_bits,
            "ratio_same_precision": round(single / phe_same, 2),
            "phe_same_precision_per_s": round(phe_same, 1),
            "seconds_per_matvec": round(ROWS * FEATURES / single, 3),
        }
        name = "matvec_t" if x_bits == 16 else f"matvec_t_x{x_bits}"
        out.append(row(name + "_single", bits, single, phe_float, **common))
        common.update(
            ratio_same_precision=round(multi / phe_same, 2),
            seconds_per_matvec=round(ROWS * FEATURES / multi, 3),
            workers=cores,
        )
        out.append(row(name + "_multi", bits, multi, phe_float, **common))
    return out


def bench_gradient(
    bits: int, public: Any, private: Any, php: Any, phs: Any, rng: Any, cores: int
) -> list[dict[str, Any]]:
    """Decrypt a 10-value gradient: phe decrypts 10 ciphertexts, fedcredit one packed one."""
    grad = rng.normal(size=FEATURES) * 100
    ev = encrypt_vector(public, grad, Z_SCALE + X_SCALE)
    phe_g = [php.encrypt(float(v)) for v in grad]
    phe_rate = FEATURES / timed(lambda: [phs.decrypt(c) for c in phe_g], 15)
    value_bits = 64

    def pipeline() -> Any:
        packed, masks = mask_and_pack(ev, value_bits)
        return unmask(decrypt_packed(private, packed), masks, Z_SCALE + X_SCALE)

    packed, _ = mask_and_pack(ev, value_bits)
    out = []
    for workers in (1, cores):
        set_workers(workers)
        cpu = workers == 1
        coordinator = FEATURES / timed(lambda: decrypt_packed(private, packed), 15, cpu=cpu)
        end_to_end = FEATURES / timed(pipeline, 15, cpu=cpu)
        tag = "single" if cpu else "multi"
        out.append(
            row(
                f"gradient_decrypt_packed_{tag}",
                bits,
                coordinator,
                phe_rate,
                value_bits=value_bits,
                workers=workers,
                note="coordinator's decrypt_packed",
            )
        )
        out.append(
            row(
                f"gradient_mask_pack_decrypt_unmask_{tag}",
                bits,
                end_to_end,
                phe_rate,
                value_bits=value_bits,
                workers=workers,
                note="owner + coordinator, end to end",
            )
        )
    set_workers(1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--quick", action="store_true", help="2048-bit keys only, smaller runs")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    results: list[dict[str, Any]] = []
    for bits in (2048,) if args.quick else (2048, 3072):
        results.extend(bench_key(bits, args.quick, cores))
    set_workers(None)
    summary = {
        "cores": cores,
        "load_average_at_start": round(load, 2),
        "python": platform.python_version(),
        "phe": phe.__version__ if hasattr(phe, "__version__") else "1.5.0",
        "quick": args.quick,
        "results": results,
    }
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{'op':36} {'bits':>5} {'fedcredit/s':>12} {'phe/s':>10} {'ratio':>7}")
    for r in results:
        rates = f"{r['fedcredit_per_s']:>12.1f} {r['phe_per_s']:>10.1f} {r['ratio']:>7.2f}"
        print(f"{r['op']:36} {r['key_bits']:>5} {rates}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
