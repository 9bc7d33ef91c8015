"""The shared report helpers: one markdown table layout, one percentile, one even spread."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ffr_lib.data.sampling import spread
from ffr_lib.reporting import markdown_table, percentile


def test_markdown_table_lines() -> None:
    assert markdown_table(["a", "b"], [[1, None], ["x", 0.5]]) == [
        "| a | b |",
        "|---|---|",
        "| 1 |  |",
        "| x | 0.5 |",
    ]
    assert markdown_table(["only"], []) == ["| only |", "|---|"]


@pytest.mark.parametrize("n", [1, 2, 5, 20])
def test_percentile_is_numpys_linear_percentile(n: int) -> None:
    values = list(np.random.default_rng(n).random(n))
    for q in (0, 25, 50, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert math.isnan(percentile([], 95))
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # order does not matter


def test_spread_takes_every_nth_from_the_first() -> None:
    assert spread(list(range(10)), 3) == [0, 3, 6]
    assert spread([1, 2], 5) == [1, 2] and spread([1, 2], None) == [1, 2]
    assert spread([1, 2, 3], 0) == [1, 2, 3]  # 0 = all, like None
