"""Hardening against bad data at the run level: `fedcredit run` with parties that share no
customer, or fewer than the federation's ``min_overlap``, stops after the private alignment
with one clear line and exit code 2, never a traceback (real node processes, mutual TLS,
1024-bit keys)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fedcredit.cli.demo import write_demo_federation
from fedcredit.data.synthetic import write_institutions

pytestmark = pytest.mark.slow


def federation(folder: Path, *, overlap: float, min_overlap: int | None = None) -> Path:
    """Three synthetic institutions; ``overlap`` is the share of customers all three hold."""
    data = write_institutions(folder / "data", 300, overlap=overlap, seed=5)
    path = write_demo_federation(folder, data, key_bits=1024, epochs=1)
    text = path.read_text().replace("batch_size = 4096", "batch_size = 64")
    if min_overlap is not None:
        text = text.replace("key_bits = 1024\n", f"key_bits = 1024\nmin_overlap = {min_overlap}\n")
    path.write_text(text)
    return path


def run(path: Path) -> subprocess.CompletedProcess[str]:
    command = ["run", str(path), "--out", str(path.parent / "run"), "--allow-small-keys"]
    return subprocess.run(
        [sys.executable, "-m", "fedcredit", *command], capture_output=True, text=True, timeout=300
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if "error" in line.lower()]


def test_parties_without_a_common_customer_stop_the_run_with_one_clear_line(
    tmp_path: Path,
) -> None:
    # With overlap 0 every customer is held by one or two of the three parties, never all.
    result = run(federation(tmp_path, overlap=0.0))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert error_lines(result) == [
        "fedcredit: error: no customer is common to all parties: check that every party's id "
        "column holds the same customer ids"
    ]
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_an_overlap_below_min_overlap_stops_the_run_with_one_clear_line(tmp_path: Path) -> None:
    result = run(federation(tmp_path, overlap=0.8, min_overlap=1000))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = error_lines(result)
    assert line.startswith("fedcredit: error: only ")
    assert "customers are common to all parties" in line
    assert "requires at least 1000 (min_overlap in [federation])" in line
    # The count it names is the real overlap, between zero and the configured minimum.
    common = int(line.removeprefix("fedcredit: error: only ").split()[0])
    assert 0 < common < 1000
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_an_overlap_at_min_overlap_is_enough_to_train(tmp_path: Path) -> None:
    # The control: the same data with the minimum set to the overlap the refusal named.
    refused = run(federation(tmp_path / "refused", overlap=0.8, min_overlap=1000))
    common = int(error_lines(refused)[0].removeprefix("fedcredit: error: only ").split()[0])
    result = run(federation(tmp_path / "enough", overlap=0.8, min_overlap=common))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "enough" / "run" / "metrics.json").is_file()
