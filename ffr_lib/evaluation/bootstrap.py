"""Bootstrap intervals of the headline F1 over queries (percentile bootstrap, numpy).

The headline F1 is the reference micro joint F1 of :func:`ffr_lib.evaluation.metrics.set_metrics`:
confusion counts summed over the queries, F1 per modality from the sums, joint = their mean (or
the present modality's alone). It is not a mean over queries, so the bootstrap resamples the
queries with replacement, sums their counts per resample and recomputes the F1 from the sums,
with exactly set_metrics' conventions (:func:`micro_f1`). Each query's counts are computed once;
a resample is a vector of draw counts per query, so B resamples cost one (B x n) @ (n x 8)
product instead of B calls of set_metrics.

- :func:`f1_interval`: the 2.5 / 97.5 percentiles (for ``level`` 0.95) of the resampled F1.
- :func:`paired_f1_difference`: F1(system) - F1(baseline) over the queries both scored, the SAME
  resampled queries for both in each resample (a paired bootstrap), so the interval reflects the
  difference on the same queries rather than two independent spreads; a system against itself
  gives exactly [0, 0].

Defaults: :data:`RESAMPLES` resamples with seed :data:`SEED` (``HarnessConfig.bootstrap_resamples``
/ ``bootstrap_seed``); the same seed, queries and predictions give the same interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ffr_lib.evaluation.metrics import SetSample, set_counts

#: Resamples per interval, and the seed of their draws.
RESAMPLES = 1000
SEED = 0
#: Bound on the (resamples x queries) draw matrix held at once (about 32 MB of int64).
_CELLS = 4_000_000


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap interval (``low`` / ``high`` percentiles)."""

    estimate: float
    low: float
    high: float
    n: int  # queries resampled


def sample_counts(samples: Sequence[SetSample]) -> np.ndarray:
    """Per query, as set_metrics sums them: utterance TP, FP, FN, TN, then image TP, FP, FN, TN
    (an ``(n, 8)`` int64 array)."""
    rows = []
    for s in samples:
        u = set_counts(s.pred_utt, s.gold_utt, s.n_utterances)
        i = set_counts(s.pred_img, s.gold_img, s.n_images)
        rows.append((u.tp, u.fp, u.fn, u.tn, i.tp, i.fp, i.fn, i.tn))
    return np.array(rows, dtype=np.int64).reshape(len(rows), 8)


def _modality_f1(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F1 and presence of one modality from summed ``(..., 4)`` counts (``Counts`` conventions:
    no prediction -> precision 1 iff nothing to find; no gold -> recall 1 iff nothing predicted)."""
    tp, fp, fn, tn = (c[..., k].astype(np.float64) for k in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp == 0, (fn == 0).astype(np.float64), tp / (tp + fp))
        recall = np.where(tp + fn == 0, (fp == 0).astype(np.float64), tp / (tp + fn))
        f1 = np.where(precision + recall == 0, 0.0, 2 * precision * recall / (precision + recall))
    return f1, (tp + fp + fn + tn) > 0


def micro_f1(summed: np.ndarray) -> np.ndarray:
    """The joint micro F1 of summed counts ``(..., 8)``, as ``set_metrics(...).f1``: the mean of
    the two modalities' F1, or the present one's alone when the other never occurs."""
    f1_u, present_u = _modality_f1(summed[..., :4])
    f1_i, present_i = _modality_f1(summed[..., 4:])
    both = (f1_u + f1_i) / 2  # also when neither is present, as set_metrics does
    return np.where(
        present_u & present_i, both, np.where(present_u, f1_u, np.where(present_i, f1_i, both))
    )


def _resampled_sums(counts: Sequence[np.ndarray], resamples: int, seed: int) -> list[np.ndarray]:
    """Per counts matrix (all with the same n rows, aligned by query), the ``(resamples, 8)``
    sums of each resample; every matrix sees the same drawn queries (what pairs them)."""
    n = len(counts[0])
    rng = np.random.default_rng(seed)
    out = [np.empty((resamples, 8), dtype=np.int64) for _ in counts]
    chunk = max(1, _CELLS // max(1, n))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        drawn = rng.integers(0, n, size=(size, n))
        # How often each query is drawn in each resample: sums become one matrix product.
        offsets = (drawn + n * np.arange(size)[:, None]).ravel()
        weights = np.bincount(offsets, minlength=size * n).reshape(size, n)
        for sums, c in zip(out, counts, strict=True):
            sums[start : start + size] = weights @ c
    return out


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _check(n: int, resamples: int, level: float) -> None:
    if n == 0:
        raise ValueError("no samples to bootstrap")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def f1_interval(
    samples: Sequence[SetSample],
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = 0.95,
) -> Interval:
    """The headline F1 of ``samples`` with its percentile bootstrap interval over queries."""
    _check(len(samples), resamples, level)
    counts = sample_counts(samples)
    (sums,) = _resampled_sums([counts], resamples, seed)
    low, high = _percentiles(micro_f1(sums), level)
    return Interval(float(micro_f1(counts.sum(axis=0))), low, high, len(samples))


def paired_f1_difference(
    samples: Sequence[SetSample],
    baseline: Sequence[SetSample],
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = 0.95,
) -> Interval:
    """F1(``samples``) - F1(``baseline``) with its paired bootstrap interval; ``samples[i]`` and
    ``baseline[i]`` must be the same query (the caller aligns them)."""
    if len(samples) != len(baseline):
        raise ValueError(f"{len(samples)} samples but {len(baseline)} baseline samples")
    _check(len(samples), resamples, level)
    mine, theirs = sample_counts(samples), sample_counts(baseline)
    sums_mine, sums_theirs = _resampled_sums([mine, theirs], resamples, seed)
    low, high = _percentiles(micro_f1(sums_mine) - micro_f1(sums_theirs), level)
    estimate = micro_f1(mine.sum(axis=0)) - micro_f1(theirs.sum(axis=0))
    return Interval(float(estimate), low, high, len(samples))
