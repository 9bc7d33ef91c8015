"""Rewards on hand-computed cases (values worked out in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ffr_lib.data.format.answer import format_answer, format_compact
from ffr_lib.f2rvlm.profiles import PROFILES, GRPOSettings
from ffr_lib.f2rvlm.rewards import (
    DEFAULT_REWARDS,
    REWARDS,
    RewardWeights,
    build_rewards,
    f1_reward,
    format_reward,
    make_f1_reward,
    make_format_reward,
    make_fragment_reward,
    needs_embed,
)
from ffr_lib.registry import UnknownNameError

GOLD = format_answer([3, 4, 5], [1])


def ans(u: list[int], i: list[int]) -> str:
    return format_answer(u, i)


def test_registry_every_name_builds_with_its_weight() -> None:
    assert REWARDS.names() == DEFAULT_REWARDS == ("f1", "fragment", "format")
    assert all(REWARDS.descriptions().values())
    assert set(REWARDS) <= set(RewardWeights.model_fields)  # each reward has its weight field
    for name in REWARDS:
        funcs, weights = build_rewards(embed=FakeEmbedder(), names=[name])
        assert len(funcs) == 1 and callable(funcs[0])
        assert weights == [getattr(RewardWeights(), name)]
    assert REWARDS.factory("f1") is make_f1_reward
    assert REWARDS.factory("fragment") is make_fragment_reward
    assert make_format_reward()([GOLD]) == format_reward([GOLD])


def test_unknown_reward_is_one_error_listing_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown reward 'f2'; known: f1, fragment, format"):
        build_rewards(names=["f1", "f2"])
    with pytest.raises(ValueError, match="known: f1, fragment, format"):  # from the profile too
        GRPOSettings(rewards=["f1", "coherence"])


def test_profiles_name_the_default_rewards() -> None:
    assert GRPOSettings().rewards == list(DEFAULT_REWARDS)
    for profile in PROFILES.values():
        assert profile.grpo.rewards == list(DEFAULT_REWARDS)
    # The cpu profiles weigh R_Fragment 0: built without it, so they need no encoder.
    cpu = PROFILES["cpu-small"].grpo
    assert not needs_embed(cpu.rewards, cpu.reward_weights)
    assert needs_embed(DEFAULT_REWARDS) and not needs_embed(["f1", "format"])
    funcs, weights = build_rewards(cpu.reward_weights, names=cpu.rewards)
    assert [f.__name__ for f in funcs] == ["f1_reward", "format_reward"] and weights == [1.0, 0.3]


def test_f1_reward_hand_computed() -> None:
    completions = [
        GOLD,  # perfect: 0.5 * 1 + 0.5 * 1
        ans([3, 4], [1]),  # utt F1 = 2*2/(2+3) = 0.8, penalty 0.95^1 -> 0.76; img 1 -> 0.88
        ans([3, 4, 5, 6, 7], []),  # utt F1 = 6/8 = 0.75 * 0.95^2 = 0.676875; img 0 -> 0.3384375
        ans([], []),  # both modalities miss: 0
        "<|utt_ids_start|>[3, 3, 4, 5]<|utt_ids_end|>;<|img_ids_start|>[1]<|img_ids_end|>",  # dup
        "3, 4, 5",  # not the format: 0
        ans([0], [1]),  # utt F1 0; img 1 -> 0.5
    ]
    got = f1_reward(completions, solution=[GOLD] * len(completions))
    assert got == pytest.approx([1.0, 0.88, 0.3384375, 0.0, 1.0, 0.0, 0.5])


def test_f1_reward_empty_gold_and_columns_and_chat_completions() -> None:
    # negative query: two empty sets score F1 1 in both modalities
    assert f1_reward([ans([], [])], solution=[ans([], [])]) == [1.0]
    # predicting something for a negative query: F1 0 for utt, img empty-empty = 1 -> 0.5
    assert f1_reward([ans([2], [])], solution=[ans([], [])]) == [0.5]
    chat = [[{"role": "assistant", "content": ans([3, 4, 5], [])}]]
    parts = [[{"role": "assistant", "content": [{"type": "text", "text": ans([3, 4, 5], [1])}]}]]
    # utt 1; img: pred empty vs gold {1} -> 0  => 0.5
    assert f1_reward(chat, gold_utterance_ids=[[3, 4, 5]], gold_image_ids=[[1]]) == [0.5]
    assert f1_reward(parts, gold_utterance_ids=[[3, 4, 5]], gold_image_ids=[[1]]) == [1.0]
    # trl passes extra keyword arguments: they are ignored
    assert f1_reward(
        [GOLD], solution=[GOLD], prompts=["p"], completion_ids=[[1]], trainer_state=None
    ) == [1.0]
    with pytest.raises(ValueError):
        f1_reward([GOLD])


def test_format_reward() -> None:
    completions = [
        GOLD,
        "<think>the lake is in 3-5</think>" + GOLD,
        "<|utt_ids_start|>[3, 3]<|utt_ids_end|>;<|img_ids_start|>[]<|img_ids_end|>",
        "Answer: " + GOLD,
        GOLD + " done",
        "",
    ]
    assert format_reward(completions) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_compact_form_rewards() -> None:
    f1c, fmtc = make_f1_reward("compact"), make_format_reward("compact")
    completions = [format_compact([3, 4], [1]), GOLD]
    assert fmtc(completions) == [1.0, 0.0]
    # gold may be stored in either form
    assert f1c(completions, solution=[GOLD, GOLD]) == pytest.approx([0.88, 0.0])
    assert f1c(completions, solution=[format_compact([3, 4, 5], [1])] * 2) == pytest.approx(
        [0.88, 0.0]
    )


# Fake frozen encoder: fixed 2-d vectors whose cosines are known.
VECTORS = {
    "u0": [1.0, 0.0],
    "u1": [1.0, 0.0],
    "u2": [0.0, 1.0],
    "u3": [1.0, 1.0],  # cos with u0 = 1/sqrt(2)
    "u4": [-2.0, 0.0],  # cos with u0 = -1
    "i0": [0.0, 3.0],
    "i1": [5.0, 0.0],  # mean(i0, i1) = (2.5, 1.5)
    "i2": [0.0, 0.0],  # zero vector: cosine 0
}


class FakeEmbedder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([VECTORS[t] for t in texts])


COLUMNS = {
    "utterance_texts": ["u0", "u1", "u2", "u3", "u4"],
    "image_texts": ["i0", "i1", "i2"],
    "image_owner": [1, 1, 3],
}


def columns(n: int, gold: str = GOLD) -> dict[str, list]:
    return {k: [v] * n for k, v in COLUMNS.items()} | {"solution": [gold] * n}


def test_fragment_reward_hand_computed() -> None:
    embed = FakeEmbedder()
    reward = make_fragment_reward(embed)
    cos_u1_mean01 = 2.5 / math.hypot(2.5, 1.5)  # (1,0) vs (2.5,1.5)
    cases = [
        (ans([0, 1], []), 1.0),  # u0, u1: cos 1
        (ans([0, 2], []), 0.0),  # orthogonal
        (ans([2, 3], []), 1 / math.sqrt(2)),
        (ans([0, 4], []), -1.0),  # opposite directions
        # u0, u1, mean(i0, i1): cos(u0,u1) = 1, cos(u1, mean) = 2.5/sqrt(8.5)
        (ans([0], [0, 1]), (1.0 + cos_u1_mean01) / 2),
        # image 1 alone pulls in its owner u1: [u1, i1] -> cos 1
        (ans([], [1]), 1.0),
        # u1, mean(i0) = (0,3): cos 0; then u3, its image i2 (zero vector): cos 0 -> (0 + c + 0) / 3
        # where c = cos((0,3), u3 = (1,1)) = 1/sqrt(2)
        (ans([], [0, 2]), (0.0 + 1 / math.sqrt(2) + 0.0) / 3),
        (ans([3], []), 0.5),  # a single element
        (ans([0, 99], []), 0.5),  # 99 is outside the dialogue: ignored, one element left
        (ans([], []), 0.0),  # empty prediction, non-empty gold
        ("garbage", 0.0),  # not parseable
    ]
    got = reward([c for c, _ in cases], **columns(len(cases)))
    assert got == pytest.approx([v for _, v in cases])
    # one embedding call for the whole batch, each text once
    assert len(embed.calls) == 1 and len(embed.calls[0]) == len(set(embed.calls[0]))


def test_fragment_reward_empty_gold() -> None:
    embed = FakeEmbedder()
    reward = make_fragment_reward(embed)
    empty = ans([], [])
    assert reward([empty, ans([0, 1], [])], **columns(2, gold=empty)) == [1.0, 0.0]
    assert embed.calls == []  # nothing needed embedding
    with pytest.raises(ValueError):
        reward([empty], solution=[empty])  # dialogue columns missing


def test_build_rewards() -> None:
    funcs, weights = build_rewards(embed=FakeEmbedder())
    assert [f.__name__ for f in funcs] == ["f1_reward", "fragment_reward", "format_reward"]
    assert weights == [1.0, 1.0, 0.3]
    funcs, weights = build_rewards(RewardWeights(fragment=0.0))
    assert [f.__name__ for f in funcs] == ["f1_reward", "format_reward"] and weights == [1.0, 0.3]
    with pytest.raises(ValueError):
        build_rewards()
    funcs, weights = build_rewards(names=["format", "f1"])  # the profile's names and order
    assert [f.__name__ for f in funcs] == ["format_reward", "f1_reward"] and weights == [0.3, 1.0]
