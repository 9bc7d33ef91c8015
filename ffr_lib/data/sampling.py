"""Deterministic samples of a list: a small sample that still covers the whole of it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def spread(items: Sequence[T], limit: int | None) -> list[T]:
    """``limit`` of ``items`` taken evenly (every n-th, from the first), so a small sample of
    queries still covers many dialogues, query types and families instead of the first few
    dialogues only; all of them when ``limit`` is None (or 0) or not smaller."""
    if not limit or limit >= len(items):
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


__all__ = ["spread"]
