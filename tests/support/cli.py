"""The ``fedcredit`` command in a child process, and a small demo federation for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fedcredit.cli.demo import write_demo_federation
from fedcredit.data.synthetic import write_institutions


def fedcredit(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m fedcredit ARGS`` with its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "fedcredit", *args], capture_output=True, text=True, timeout=timeout
    )


def small_federation(
    folder: Path, *, customers: int = 1500, epochs: int = 2, key_bits: int = 1024, batch: int = 400
) -> Path:
    """The demo's federation file over ``customers`` synthetic customers, without binning noise."""
    data = write_institutions(folder / "data", customers, seed=5)
    path = write_demo_federation(folder, data, key_bits=key_bits, epochs=epochs)
    text = path.read_text().replace("batch_size = 4096", f"batch_size = {batch}")
    # Binning noise is fresh every run; without it two runs of the same job are comparable.
    text = text.replace("[binning]\n", "[binning]\nnoise_epsilon = 0.0\n")
    path.write_text(text)
    return path
