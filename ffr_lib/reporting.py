"""What the reports and benchmarks print figures with: markdown tables and latency percentiles.

One definition each, so the evaluation report, the assets' metadata and the benchmark scripts
agree (the same percentile definition behind every "p95", the same table layout). Plain Python,
below every other layer: anything may use it, :mod:`ffr_lib.settings` included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def markdown_table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> list[str]:
    """The lines of a markdown table; a cell is ``str(value)``, None an empty cell."""

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join("" if c is None else str(c) for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(row) for row in rows)]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linearly interpolated between the closest
    ranks (``numpy.percentile``'s default, without numpy); NaN when there are no values."""
    ordered = sorted(float(v) for v in values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


__all__ = ["markdown_table", "percentile"]
