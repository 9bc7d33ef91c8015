"""Batched greedy generation with the shared prompt prefix computed once (KV cache reuse)."""

from __future__ import annotations

import numpy as np
import pytest

from ffr_lib.data.format.prompt import render_prompt
from ffr_lib.data.model import Dialogue, Utterance
from ffr_lib.f2rvlm.profiles import get_profile
from ffr_lib.f2rvlm.retriever import (
    F2RVLMRetriever,
    chat_messages,
    generate,
    prompt_config,
    shared_prefix_length,
)


def test_shared_prefix_length_hand_computed() -> None:
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    # At least one token of every row stays uncached.
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_prefix_length([[7, 1], [8, 1]]) == 0
    assert shared_prefix_length([]) == 0


def _messages(profile) -> list:
    texts = [f"line {i} about topic {i % 5} and more words" for i in range(24)]
    dialogue = Dialogue(
        id="d",
        source="test",
        utterances=[
            Utterance(index=i, speaker="A" if i % 2 else "B", text=t) for i, t in enumerate(texts)
        ],
    )
    config = prompt_config(profile)
    # FFRS-style candidates: fragments of different lengths, same query.
    spans = [[0, 1, 2], [3, 4, 5, 6, 7], [8], [9, 10, 11, 12], [13, 14]]
    return [chat_messages(render_prompt(dialogue, "topic 3", config, s), False) for s in spans]


@pytest.mark.slow
def test_shared_prefix_generation_matches_uncached() -> None:
    profile = get_profile("tiny")
    retriever = F2RVLMRetriever.from_base(profile)
    messages = _messages(profile)
    tokenizer = retriever.backbone.tokenizer
    rows = [
        tokenizer(
            retriever.backbone.processor.apply_chat_template(
                m, tokenize=False, add_generation_prompt=True
            ),
            add_special_tokens=False,
        )["input_ids"]
        for m in messages
    ]
    assert shared_prefix_length(rows) >= 16  # system prompt + instruction are shared
    plain = generate(
        retriever.backbone, messages, 6, with_logprobs=True, batch_size=2, share_prefix=False
    )
    cached = generate(
        retriever.backbone, messages, 6, with_logprobs=True, batch_size=2, share_prefix=True
    )
    assert [t for t, _ in cached] == [t for t, _ in plain]
    for (_, a), (_, b) in zip(cached, plain, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)
