"""Category codes: a text cell as an exact float, so categorical columns travel with the numbers.

A party's raw columns are one float matrix; a text column becomes codes (``category_code``) when
its file is read. The code is stable across files (no per-file vocabulary), so a model part
fitted on one file scores rows of another. Both binning and logistic regression's one-hot
encoding read the codes back (``category_label``). Family-neutral: nothing here is a model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

MISSING_CODE = 0.0
_CODE_BYTES = 6
_HASHED = 7


def category_code(text: str) -> float:
    """An exact float code for a category: its bytes when short, else a 48-bit hash; 0 = missing.

    The code is stable across files (no per-file vocabulary), so a model part fitted on one file
    scores rows of another; ``category_label`` reads a short code back.
    """
    value = text.strip()
    if not value:
        return MISSING_CODE
    raw = value.encode("utf-8")
    if len(raw) <= _CODE_BYTES:
        return float((len(raw) << 48) | int.from_bytes(raw, "big"))
    digest = int.from_bytes(hashlib.sha256(raw).digest()[:_CODE_BYTES], "big")
    return float((_HASHED << 48) | digest)


def category_label(code: float) -> str:
    """The category a code stands for (``#`` and 12 hex digits for a long, hashed one)."""
    number = int(code)
    length, body = number >> 48, number & ((1 << 48) - 1)
    if length == _HASHED:
        return f"#{body:012x}"
    return body.to_bytes(length, "big").decode("utf-8", errors="replace") if length else ""


def label_code(label: str) -> float:
    """Inverse of ``category_label``."""
    if len(label) == 13 and label.startswith("#") and len(label.encode("utf-8")) > _CODE_BYTES:
        return float((_HASHED << 48) | int(label[1:], 16))
    return category_code(label)


def with_category_codes(
    x: np.ndarray, names: Sequence[str], categorical: Mapping[str, Sequence[str]]
) -> tuple[np.ndarray, list[str]]:
    """Append the categorical columns (strings) as code columns after the numeric ones."""
    if not categorical:
        return x, list(names)
    codes = np.column_stack(
        [
            np.array([category_code(v) for v in cells], dtype=np.float64)
            for cells in categorical.values()
        ]
    )
    return np.hstack([np.asarray(x, dtype=np.float64).reshape(len(codes), -1), codes]), [
        *names,
        *categorical,
    ]
