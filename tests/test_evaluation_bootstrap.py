"""Bootstrap intervals of the headline F1: the resampled figure is exactly set_metrics' micro F1,
intervals hold the estimate, narrow with more queries, are reproducible from the seed, and the
paired difference shares its resampled queries (a system against itself is exactly 0)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ffr_lib.evaluation.bootstrap import (
    f1_interval,
    micro_f1,
    paired_f1_difference,
    sample_counts,
)
from ffr_lib.evaluation.metrics import SetSample, set_metrics


@st.composite
def _sample(draw: st.DrawFn) -> SetSample:
    n_utt = draw(st.integers(0, 8))
    n_img = draw(st.sampled_from([0, 0, 1, 3]))  # often no image at all: the absent modality
    ids = st.lists(st.integers(-2, 10), max_size=4)  # outside 0..n-1 too (false positives)
    return SetSample(
        pred_utt=draw(ids),
        pred_img=draw(ids),
        gold_utt=draw(st.lists(st.integers(0, max(0, n_utt - 1)), max_size=n_utt)),
        gold_img=draw(st.lists(st.integers(0, max(0, n_img - 1)), max_size=n_img)),
        n_utterances=n_utt,
        n_images=n_img,
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(_sample(), min_size=1, max_size=6))
def test_micro_f1_of_summed_counts_is_set_metrics_f1_exactly(samples: list[SetSample]) -> None:
    assert float(micro_f1(sample_counts(samples).sum(axis=0))) == set_metrics(samples).f1


def _samples(n: int, seed: int, hit_rate: float = 0.5) -> list[SetSample]:
    """``n`` queries over 20-turn dialogues with 2 images: gold utterances 5-7 and image 0; a
    query is answered right with probability ``hit_rate``, else with utterances 10-11."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        hit = rng.random() < hit_rate
        out.append(
            SetSample(
                pred_utt=[5, 6, 7] if hit else [10, 11],
                pred_img=[0] if hit else [],
                gold_utt=[5, 6, 7],
                gold_img=[0],
                n_utterances=20,
                n_images=2,
            )
        )
    return out


def test_interval_holds_the_estimate_and_narrows_with_more_queries() -> None:
    few = _samples(30, seed=1)
    interval = f1_interval(few)
    assert interval.estimate == set_metrics(few).f1
    assert interval.low < interval.estimate < interval.high
    assert interval.n == 30
    # The same queries ten times over: same F1, a bootstrap spread about sqrt(10) smaller.
    many = f1_interval(few * 10)
    assert many.estimate == pytest.approx(interval.estimate)
    assert many.low < many.estimate < many.high
    assert (many.high - many.low) < 0.5 * (interval.high - interval.low)


def test_interval_is_reproducible_from_the_seed() -> None:
    rng = random.Random(2)
    # Partial answers of every size, so the resampled F1 takes many values.
    samples = [
        SetSample(rng.sample(range(20), rng.randint(0, 6)), [], [5, 6, 7], [0], 20, 2)
        for _ in range(40)
    ]
    first, again = f1_interval(samples, seed=7), f1_interval(samples, seed=7)
    assert (first.low, first.high) == (again.low, again.high)
    other = f1_interval(samples, seed=8)
    assert (other.low, other.high) != (first.low, first.high)
    # A narrower level gives a narrower interval inside the wider one.
    narrow = f1_interval(samples, seed=7, level=0.5)
    assert first.low <= narrow.low <= narrow.high <= first.high


def test_all_queries_alike_give_a_point_interval() -> None:
    right = _samples(12, seed=3, hit_rate=1.0)
    interval = f1_interval(right)
    assert interval.estimate == interval.low == interval.high == 1.0


def test_paired_difference_of_a_system_with_itself_is_exactly_zero() -> None:
    samples = _samples(50, seed=4)
    diff = paired_f1_difference(samples, samples)
    assert (diff.estimate, diff.low, diff.high) == (0.0, 0.0, 0.0)


def test_paired_difference_shares_the_resampled_queries() -> None:
    base = _samples(60, seed=5)
    # One query better than the baseline, the rest identical: a small, certain gain.
    better = list(base)
    i = next(k for k, s in enumerate(base) if not s.pred_img)
    better[i] = _samples(1, seed=0, hit_rate=1.0)[0]
    diff = paired_f1_difference(better, base)
    assert diff.estimate == set_metrics(better).f1 - set_metrics(base).f1 > 0
    # Paired, the gain never turns negative; the two F1 intervals alone overlap widely, so an
    # unpaired comparison (independent draws) could not tell the systems apart.
    assert 0 <= diff.low <= diff.estimate <= diff.high
    mine, theirs = f1_interval(better), f1_interval(base)
    assert mine.low < theirs.high
    assert diff.high - diff.low < 0.25 * (theirs.high - theirs.low)
    # Swapping the systems mirrors the interval.
    swapped = paired_f1_difference(base, better)
    assert swapped.estimate == -diff.estimate
    assert np.isclose(swapped.low, -diff.high) and np.isclose(swapped.high, -diff.low)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="no samples"):
        f1_interval([])
    with pytest.raises(ValueError, match="baseline samples"):
        paired_f1_difference(_samples(3, seed=0), _samples(2, seed=0))
    with pytest.raises(ValueError, match="level"):
        f1_interval(_samples(3, seed=0), level=1.0)
