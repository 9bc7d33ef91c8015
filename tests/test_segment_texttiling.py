"""The embedding topic segmenter: covers every utterance once and beats fixed windows when topics
are clearly separated (deterministic bag-of-words embedder, no model)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from ffr_lib.data.model import Dialogue, Image, Utterance
from ffr_lib.mldr.builder import BuilderConfig, build_long_dialogues
from ffr_lib.mldr.lexicon import CATEGORIES, categories_of_word
from ffr_lib.mldr.synthetic import synthetic_sources
from ffr_lib.mldr.text import content_stems
from ffr_lib.segment.evaluate import compare_segmenters
from ffr_lib.segment.texttiling import (
    TextTilingConfig,
    TextTilingSegmenter,
    depth_scores,
    utterance_texts,
)
from ffr_lib.segment.windows import FixedWindowSegmenter, WindowConfig

_CATEGORIES = [c.name for c in CATEGORIES]


def topic_embed(texts: list[str]) -> np.ndarray:
    """Deterministic stand-in for a sentence encoder: counts of lexicon categories of the content
    words (so "soup" and "dinner" are close) plus a small hashed bag of words."""
    dim = len(_CATEGORIES) + 64
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in content_stems(text):
            for c in categories_of_word(word):
                out[row, _CATEGORIES.index(c)] += 1.0
            out[row, len(_CATEGORIES) + int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 0.3
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1, norms)


def _built() -> list[Dialogue]:
    sources = synthetic_sources(60, seed=4, turns=10)
    return build_long_dialogues(sources, BuilderConfig(seed=2))


def test_each_utterance_in_exactly_one_fragment_images_with_it() -> None:
    segmenter = TextTilingSegmenter(topic_embed)
    for d, frags in zip(_built(), segmenter.segment_many(_built()), strict=True):
        ids = [i for f in frags for i in f.utterance_ids]
        assert ids == list(range(len(d.utterances)))
        for f in frags:
            assert f.image_ids == [
                im.index for im in d.images if im.utterance_index in f.utterance_ids
            ]
            assert f.utterance_ids == list(range(f.start, f.end))


def test_beats_fixed_windows_on_separated_topics() -> None:
    dialogues = _built()
    result = compare_segmenters(
        dialogues,
        {
            "texttiling": TextTilingSegmenter(topic_embed),
            "windows": FixedWindowSegmenter(WindowConfig(size=8)),
        },
    )
    tt, win = result["texttiling"], result["windows"]
    assert tt["dialogues"] == len(dialogues) == 20
    assert tt["pk"] < win["pk"] and tt["window_diff"] < win["window_diff"]
    assert tt["pk"] < 0.15


def test_contentless_photo_turn_uses_caption_and_short_dialogue_is_one_fragment() -> None:
    d = Dialogue(
        id="s",
        source="t",
        utterances=[
            Utterance(index=0, speaker="a", text="hi"),
            Utterance(index=1, speaker="b", text=""),
        ],
        images=[Image(index=0, utterance_index=1, caption="a red boat")],
    )
    assert utterance_texts(d) == ["hi", "a red boat"]
    frags = TextTilingSegmenter(topic_embed).segment(d)
    assert len(frags) == 1 and frags[0].image_ids == [0]


def test_depth_scores_peak_at_valley() -> None:
    depths = depth_scores(np.array([0.9, 0.8, 0.2, 0.7, 0.9]))
    assert int(np.argmax(depths)) == 2
    assert depths[2] == pytest.approx(1.4)


def test_min_segment_respected() -> None:
    config = TextTilingConfig(min_segment=4)
    for d, b in zip(
        _built(), TextTilingSegmenter(topic_embed, config).boundaries_many(_built()), strict=True
    ):
        edges = [0, *b, len(d.utterances)]
        assert all(y - x >= 4 for x, y in zip(edges, edges[1:], strict=False))
