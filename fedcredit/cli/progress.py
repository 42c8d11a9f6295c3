"""Progress on a terminal (rounds, rows, seconds left); silence in --json mode."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO


class Progress:
    """Prints what a long job is doing to stderr; quiet when ``quiet`` (the --json mode)."""

    def __init__(self, *, quiet: bool, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._open_line = False

    def __call__(self, kind: str, info: Mapping[str, Any]) -> None:
        if self.quiet:
            return
        epoch_word, batch_word = info.get("units", ("epoch", "batch"))
        if kind == "batch":
            if self.tty:
                self._write(
                    f"\r  {epoch_word} {info['epoch']}/{info['epochs']}"
                    f"  {batch_word} {info['batch']}/{info['batches']}",
                    newline=False,
                )
            return
        if kind == "align_step":
            if self.tty:
                left = info["seconds_left"]
                self._write(
                    f"\r  alignment step {info['done']}/{info['steps']}, {info['seconds']:.0f} s"
                    + (f", about {left:.0f} s left" if left > 0 else ""),
                    newline=False,
                )
            return
        if kind == "epoch":
            loss = info.get("train_taylor_loss")
            val = info.get("validation_log_loss")
            parts = [f"{epoch_word} {info['epoch']}/{info['epochs']}"]
            if val is not None:
                parts.append(f"validation log-loss {val:.4f}")
            if loss is not None:
                # What the encrypted protocol can compute on training rows: the Taylor loss,
                # which grows with |z| even while the true log-loss falls.
                parts.append(f"Taylor loss (train) {loss:.4f}")
            parts.append(f"{info['seconds']:.1f} s")
            if info["seconds_left"] > 0:
                parts.append(f"about {info['seconds_left']:.0f} s left")
            self._write("  " + ", ".join(parts))
            return
        if kind == "aligned":
            sizes = ", ".join(f"{k} {v:,}" for k, v in info["sizes"].items())
            self._write(f"  aligned {info['common']:,} common customers ({sizes})")
            return
        self._write(f"{info.get('message', kind)}")

    def _write(self, text: str, *, newline: bool = True) -> None:
        if self._open_line and newline:
            self.stream.write("\r\033[K" if self.tty else "\n")
        self.stream.write(text + ("\n" if newline else ""))
        self.stream.flush()
        self._open_line = not newline


def say(text: str, *, quiet: bool) -> None:
    """A line of narration on stderr, unless in --json mode."""
    if not quiet:
        print(text, file=sys.stderr, flush=True)
