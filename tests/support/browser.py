"""A page rendered by headless Chromium (Debian's ``chromium`` package), when it is installed.

CI does not install it: a test using ``screenshot`` is skipped with ``CHROMIUM_MISSING`` then.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_MISSING = f"{CHROMIUM} is not installed (apt-get install chromium)"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
#: matplotlib's default blue ("tab:blue"), the colour of the ROC curve and the monitoring bars.
TAB_BLUE = (31, 119, 180)

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=CHROMIUM_MISSING)


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 4000) -> np.ndarray:
    """``page`` (a local file) rendered at ``width`` x ``height``, saved to ``out`` and returned
    as an RGB array. Fails the test when Chromium does not write the PNG."""
    profile = Path(tempfile.mkdtemp(prefix="fedcredit-chromium-"))
    try:
        done = subprocess.run(
            [
                str(CHROMIUM),
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={out}",
                f"--window-size={width},{height}",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert out.is_file(), f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr}"
    with Image.open(out) as image:
        return np.asarray(image.convert("RGB"))


def ink_share(pixels: np.ndarray) -> float:
    """The share of pixels that are not (near) white: 0 for a blank page."""
    return float(np.mean(pixels.min(axis=2) < 245))


def colour_pixels(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    """How many pixels are within ``tolerance`` of ``colour`` on every channel."""
    return int(np.all(np.abs(pixels.astype(np.int64) - colour) <= tolerance, axis=2).sum())
