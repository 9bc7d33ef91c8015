"""Difficulty-aware curriculum on hand-built inputs whose classes are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ffr_lib.f2rvlm.curriculum import (
    CurriculumConfig,
    CurriculumSample,
    Difficulty,
    build_curriculum,
    classify,
    normalised_entropy,
)

E, M, C, H = Difficulty.EASY, Difficulty.MIDDLE, Difficulty.CONFUSING, Difficulty.HARD

# 9 samples: with linear quantiles, Q25/Q50/Q75 are the 3rd/5th/7th smallest values.
# F1 sorted 0, .1, .2, .3, .5, .6, .7, .8, .9 -> Q25 .2, Q50 .5, Q75 .7
# H  sorted .1 ... .9                         -> Q25 .3, Q50 .5, Q75 .7
TABLE = [
    # (F1, H, expected class, why)
    (0.9, 0.1, E, "F1 >= .7 and H <= .3"),
    (0.8, 0.3, E, "boundaries are inclusive"),
    (0.7, 0.4, M, "F1 >= .7 but H > .3; F1 >= .5 and H <= .5"),
    (0.6, 0.5, M, "F1 >= .5 and H <= .5"),
    (0.5, 0.2, M, "low entropy but F1 < .7"),
    (0.3, 0.6, C, "F1 >= .2 and H <= .7"),
    (0.2, 0.7, C, "both on the boundary"),
    (0.1, 0.8, H, "F1 < .2"),
    (0.0, 0.9, H, "the rest"),
]


def samples(empty: set[int] = frozenset()) -> list[CurriculumSample]:
    # F1 = (F1_utt + F1_img) / 2: split each F1 unevenly to check the averaging
    return [
        CurriculumSample(
            f1_utt=min(1.0, 2 * f), f1_img=2 * f - min(1.0, 2 * f), entropy=h, gold_empty=i in empty
        )
        for i, (f, h, _, _) in enumerate(TABLE)
    ]


def test_classes_and_thresholds() -> None:
    f1 = np.array([t[0] for t in TABLE])
    h = np.array([t[1] for t in TABLE])
    classes, thresholds = classify(f1, h)
    assert classes == [t[2] for t in TABLE]
    assert thresholds == pytest.approx(
        {
            "f1_q25": 0.2,
            "f1_q50": 0.5,
            "f1_q75": 0.7,
            "entropy_q25": 0.3,
            "entropy_q50": 0.5,
            "entropy_q75": 0.7,
        }
    )


def test_selection_and_order() -> None:
    result = build_curriculum(samples())
    assert result.classes == [t[2] for t in TABLE]
    # easy: all (0, 1); middle {2, 3, 4}: ceil(10% of 3) = 1, best F1 -> 2;
    # confusing {5, 6}: ceil(50% of 2) = 1 -> 5; hard: all (7, 8)
    assert result.order == [0, 1, 2, 5, 7, 8]
    assert result.class_counts == {"easy": 2, "middle": 3, "confusing": 2, "hard": 2}
    assert result.kept_counts == {"easy": 2, "middle": 1, "confusing": 1, "hard": 2}
    meta = result.metadata()
    assert meta["n_samples"] == 9 and meta["n_kept"] == 6 and meta["middle_kept"] == 1


def test_empty_gold_drops_only_easy_and_middle() -> None:
    # 0 (easy), 2 (middle, the best middle) and 7 (hard) have empty gold
    result = build_curriculum(samples(empty={0, 2, 7}))
    # easy keeps 1; middle {3, 4}: one kept, best F1 -> 3; hard keeps 7 although its gold is empty
    assert result.order == [1, 3, 5, 7, 8]
    assert result.dropped_empty == {"easy": 1, "middle": 1, "confusing": 0, "hard": 0}
    # the class of a dropped sample is still reported
    assert result.classes[0] is E


def test_fractions_and_ties() -> None:
    items = [CurriculumSample(f1_utt=1.0, f1_img=1.0, entropy=0.0)] * 5  # 0-4
    items += [CurriculumSample(f1_utt=0.0, f1_img=0.0, entropy=1.0)] * 5  # 5-9
    # 10-19: all F1 0.6, entropies .50, .49, ..., .41 (sample 10 + k has H = .50 - .01k)
    items += [CurriculumSample(f1_utt=0.6, f1_img=0.6, entropy=0.5 - 0.01 * k) for k in range(10)]
    result = build_curriculum(items)
    # n = 20, linear quantiles at positions 4.75 / 9.5 / 14.25 of the sorted values:
    # F1: Q25 = .75 * .6 = .45, Q50 = .6, Q75 = .6 + .25 * .4 = .7
    # H:  Q25 = .75 * .41 = .3075, Q50 = (.45 + .46) / 2 = .455, Q75 = .5 + .25 * .5 = .625
    assert result.thresholds["f1_q25"] == pytest.approx(0.45)
    assert result.thresholds["entropy_q50"] == pytest.approx(0.455)
    assert result.thresholds["entropy_q75"] == pytest.approx(0.625)
    # 0-4 easy; 5-9 hard; 15-19 (H <= .455) middle; 10-14 (.455 < H <= .625) confusing
    assert result.classes == [E] * 5 + [H] * 5 + [C] * 5 + [M] * 5
    # middle: ceil(.1 * 5) = 1, F1 ties -> lowest entropy: 19 (H .41)
    # confusing: ceil(.5 * 5) = 3, F1 ties -> lowest entropies 14, 13, 12, in dataset order
    assert result.order == [0, 1, 2, 3, 4, 19, 12, 13, 14, 5, 6, 7, 8, 9]
    everything = build_curriculum(items, CurriculumConfig(middle_keep=1.0, confusing_keep=0.0))
    assert everything.order == [0, 1, 2, 3, 4, 15, 16, 17, 18, 19, 5, 6, 7, 8, 9]


def test_entropy_of_normalised_probabilities() -> None:
    assert normalised_entropy([0.5, 0.5]) == pytest.approx(math.log(2))
    assert normalised_entropy([0.2, 0.2, 0.2, 0.2]) == pytest.approx(math.log(4))  # scale-free
    assert normalised_entropy([1.0]) == 0.0
    assert normalised_entropy([]) == 0.0
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert normalised_entropy([0.9, 0.3]) == pytest.approx(expected)
    from_probs = CurriculumSample(f1_utt=0, f1_img=0, token_probs=[0.9, 0.3])
    from_logprobs = CurriculumSample(
        f1_utt=0, f1_img=0, token_logprobs=[math.log(0.9), math.log(0.3)]
    )
    assert from_probs.h() == pytest.approx(expected) and from_logprobs.h() == pytest.approx(
        expected
    )
    with pytest.raises(ValueError):
        CurriculumSample(f1_utt=0, f1_img=0)
    with pytest.raises(ValueError):
        CurriculumSample(f1_utt=0, f1_img=0, entropy=1.0, token_probs=[0.5])
    with pytest.raises(ValueError):
        normalised_entropy([0.5, -0.1])


def test_empty_input() -> None:
    result = build_curriculum([])
    assert result.order == [] and result.kept_counts["hard"] == 0
