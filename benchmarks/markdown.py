"""Markdown cells and tables shared by the report's sections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
