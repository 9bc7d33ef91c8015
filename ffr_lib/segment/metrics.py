"""Segmentation metrics Pk (Beeferman et al. 1999) and WindowDiff (Pevzner & Hearst 2002).

A segmentation of ``n`` units is given by its boundaries: the unit ids that start a new segment
(0 excluded). Lower is better for both; 0 is a perfect match.
"""

from __future__ import annotations

from collections.abc import Sequence


def _labels(boundaries: Sequence[int], n: int) -> list[int]:
    cuts = {b for b in boundaries if 0 < b < n}
    labels, seg = [], 0
    for i in range(n):
        if i in cuts:
            seg += 1
        labels.append(seg)
    return labels


def default_k(reference: Sequence[int], n: int) -> int:
    """Half the mean reference segment length, rounded, at least 1 (the usual choice)."""
    segments = len({b for b in reference if 0 < b < n}) + 1
    return max(1, round(n / segments / 2))


def pk(reference: Sequence[int], hypothesis: Sequence[int], n: int, k: int | None = None) -> float:
    """Share of probes (i, i+k) on which reference and hypothesis disagree about whether both
    units lie in the same segment."""
    k = k or default_k(reference, n)
    if n <= k:
        return 0.0
    ref, hyp = _labels(reference, n), _labels(hypothesis, n)
    errors = sum((ref[i] == ref[i + k]) != (hyp[i] == hyp[i + k]) for i in range(n - k))
    return errors / (n - k)


def window_diff(
    reference: Sequence[int], hypothesis: Sequence[int], n: int, k: int | None = None
) -> float:
    """Share of windows (i, i+k] in which the two segmentations have a different number of
    boundaries."""
    k = k or default_k(reference, n)
    if n <= k:
        return 0.0
    ref = {b for b in reference if 0 < b < n}
    hyp = {b for b in hypothesis if 0 < b < n}
    errors = 0
    for i in range(n - k):
        r = sum(1 for b in ref if i < b <= i + k)
        h = sum(1 for b in hyp if i < b <= i + k)
        errors += r != h
    return errors / (n - k)
