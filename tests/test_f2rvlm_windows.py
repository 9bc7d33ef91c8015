"""Sliding windows: cutting by utterances and tokens, local -> global mapping, merging."""

from __future__ import annotations

import pytest

from ffr_lib.data.format.answer import parse_answer
from ffr_lib.data.format.prompt import render_prompt
from ffr_lib.data.model import Dialogue, Image, Utterance
from ffr_lib.f2rvlm.windows import Window, WindowConfig, merge_window_answers, plan_windows


def dialogue(n: int, image_owners: list[int]) -> Dialogue:
    return Dialogue(
        id="long",
        source="t",
        utterances=[Utterance(index=i, speaker="A", text=f"utterance {i}") for i in range(n)],
        images=[
            Image(index=k, utterance_index=u, path=f"{k}.jpg") for k, u in enumerate(image_owners)
        ],
    )


def test_single_window_when_it_fits() -> None:
    d = dialogue(5, [1])
    (w,) = plan_windows(d, WindowConfig(max_utterances=10, overlap=2))
    assert w.utterance_ids == (0, 1, 2, 3, 4) and w.image_ids == (0,)
    assert plan_windows(dialogue(0, []), WindowConfig()) == []


def test_windows_by_utterance_count() -> None:
    d = dialogue(10, [1, 4, 4, 8])
    windows = plan_windows(d, WindowConfig(max_utterances=4, overlap=1))
    assert [w.utterance_ids for w in windows] == [(0, 1, 2, 3), (3, 4, 5, 6), (6, 7, 8, 9)]
    assert [w.image_ids for w in windows] == [(0,), (1, 2), (3,)]
    # every utterance is covered
    assert set().union(*(w.utterance_ids for w in windows)) == set(range(10))


def test_windows_by_token_budget() -> None:
    d = dialogue(6, [])
    # token counter = number of characters of the rendered line; all lines have the same length
    lengths = [len(x) for x in render_prompt(d, "q").user.splitlines() if x.startswith("<|utt_id")]
    assert len(set(lengths)) == 1
    per_line = lengths[0]
    config = WindowConfig(max_utterances=None, max_tokens=2 * per_line, overlap=0)
    windows = plan_windows(d, config, token_counter=len)
    assert [w.utterance_ids for w in windows] == [(0, 1), (2, 3), (4, 5)]
    # images add their fixed cost: the window with the image holds fewer utterances
    d_img = dialogue(4, [0])
    line0, line1 = [
        x for x in render_prompt(d_img, "q").user.splitlines() if x.startswith("<|utt_id")
    ][:2]
    assert "<image>" in line0
    budget = len(line0) + len(line1)
    free = WindowConfig(max_utterances=None, max_tokens=budget, overlap=0)
    assert plan_windows(d_img, free, token_counter=len)[0].utterance_ids == (0, 1)
    costly = WindowConfig(max_utterances=None, max_tokens=budget, overlap=0, image_token_cost=5)
    assert plan_windows(d_img, costly, token_counter=len)[0].utterance_ids == (0,)
    # an utterance larger than the budget still gets a window of its own
    tiny = WindowConfig(max_utterances=None, max_tokens=1, overlap=0)
    assert [w.utterance_ids for w in plan_windows(d, tiny, token_counter=len)] == [
        (i,) for i in range(6)
    ]
    with pytest.raises(ValueError):
        plan_windows(d, WindowConfig(max_utterances=None, max_tokens=10))


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        WindowConfig(max_utterances=4, overlap=4)
    with pytest.raises(ValueError):
        WindowConfig(max_utterances=None, max_tokens=None)


def test_window_maps_local_ids_and_prompt_agrees() -> None:
    d = dialogue(10, [1, 4, 4, 8])
    w = plan_windows(d, WindowConfig(max_utterances=4, overlap=1))[1]  # utterances 3..6
    rendered = render_prompt(d, "q", utterance_ids=w.utterance_ids)
    assert rendered.utterance_ids == list(w.utterance_ids)
    assert rendered.image_ids == list(w.image_ids)
    assert w.to_global([0, 1, 9], [1, 5]) == ([3, 4], [2])
    assert w.to_local([0, 4, 6], [2, 3]) == ([1, 3], [1])


def test_merge_union_and_unanimous() -> None:
    w1 = Window((0, 1, 2, 3), (0,))
    w2 = Window((3, 4, 5, 6), (1, 2))
    w3 = Window((6, 7, 8, 9), (3,))
    answers = [
        parse_answer("<|utt_ids_start|>[2, 3]<|utt_ids_end|>;<|img_ids_start|>[]<|img_ids_end|>"),
        parse_answer("<|utt_ids_start|>[1, 2]<|utt_ids_end|>;<|img_ids_start|>[0]<|img_ids_end|>"),
        ([0, 12], [0]),  # local 12 is outside the window: dropped
    ]
    # w1: global 2, 3; w2: global 4, 5 and image 1; w3: global 6 and image 3
    assert merge_window_answers([w1, w2, w3], answers) == ([2, 3, 4, 5, 6], [1, 3])
    # utterance 3 is in w1 and w2 but only w1 predicted it; 6 is in w2 and w3, only w3 did
    assert merge_window_answers([w1, w2, w3], answers, policy="unanimous") == ([2, 4, 5], [1, 3])
    with pytest.raises(ValueError):
        merge_window_answers([w1], [])


def test_windows_over_a_subset_of_utterances_keep_dialogue_ids() -> None:
    d = dialogue(20, [6, 12])
    windows = plan_windows(
        d, WindowConfig(max_utterances=4, overlap=1), utterance_ids=[9, 5, 6, 7, 8, 10, 11, 12]
    )
    assert [w.utterance_ids for w in windows] == [(5, 6, 7, 8), (8, 9, 10, 11), (11, 12)]
    assert [w.image_ids for w in windows] == [(0,), (), (1,)]
    assert plan_windows(d, WindowConfig(max_utterances=4, overlap=1), utterance_ids=[]) == []
    with pytest.raises(ValueError, match="outside 0..19"):
        plan_windows(d, WindowConfig(), utterance_ids=[3, 20])
