"""How reports write numbers and counts: percentages, percentage points, sizes, plurals.

Shared by report.md's sections and the CLI; imports nothing, so `edgequant --help` stays fast."""

from __future__ import annotations


def pct(x: float | None) -> str:
    """A fraction as a percentage, or '-' when not measured."""
    return "-" if x is None else f"{x * 100:.2f}%"


def pts(x: float | None) -> str:
    """Percentage points, signed, or '-' when not measured."""
    return "-" if x is None else f"{x:+.2f}"


def kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
