"""Superseded by benchmarks/quality.py, which runs the binned (scorecard) pipeline of every
dataset next to the plain one; this runs only its binned cases of the UCI and FATE splits.

    python benchmarks/quality_binned.py --json OUT.json [--key-bits 2048]

Any other option of quality.py is passed on (a later ``--cases`` overrides this one).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "--cases", "uci:binned,fate:binned", *sys.argv[1:]]
    raise SystemExit(quality.main())
