"""What the fine-stage reader knows of each utterance for a query: cheap, model-agnostic signals
of the utterance and of its neighbours.

Per utterance, two base signals, each z-scored within the dialogue (so one scale fits a 20-turn
chat and a 600-turn meeting): BM25 over the rendered utterance ("speaker: text [image: caption |
ocr]", so an image is matched through its caption and OCR text) and the cosine of the dense
encoder (the FEM). Around each utterance, their max and mean over windows of +-2, +-5, +-12, +-25
and +-50 turns: relevant utterances come in runs, a short reply ("yes, that one") is relevant
through its neighbours, and a meeting discusses one subject for dozens of turns (QMSum's gold spans
average 57 turns; the two widest windows raise its val micro F1 from 0.33 to 0.36). Then local shape: the length of the turn, its position, whether its speaker is
named in the query, whether it sent an image, and how many query words the image's caption/OCR
text shares.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ffr_lib.data.model import Dialogue
from ffr_lib.mldr.difficulty import bm25_scores
from ffr_lib.mldr.text import content_stems, tokens, utterance_render

WINDOWS: tuple[int, ...] = (2, 5, 12, 25, 50)
BASE_SIGNALS: tuple[str, ...] = ("bm25", "dense")


def feature_names() -> list[str]:
    names = ["bm25_z", "dense_z", "dense_cos"]
    for signal in BASE_SIGNALS:
        for w in WINDOWS:
            names += [f"{signal}_max{w}", f"{signal}_mean{w}"]
    names += [
        "log_tokens",
        "position",
        "log_turns",
        "speaker_named",
        "has_image",
        "image_overlap",
        "bm25_is_zero",
    ]
    return names


FEATURES: tuple[str, ...] = tuple(feature_names())


def _z(values: np.ndarray) -> np.ndarray:
    std = float(values.std())
    if std < 1e-9:
        return np.zeros_like(values)
    return (values - float(values.mean())) / std


def _window(values: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Max and mean of ``values`` over [i - radius, i + radius] for every i (clipped at ends)."""
    n = len(values)
    padded_max = np.full(n + 2 * radius, -np.inf)
    padded_max[radius : radius + n] = values
    stacked = np.lib.stride_tricks.sliding_window_view(padded_max, 2 * radius + 1)
    maxima = stacked.max(axis=1)
    sums = np.concatenate([[0.0], np.cumsum(values)])
    lo = np.clip(np.arange(n) - radius, 0, n)
    hi = np.clip(np.arange(n) + radius + 1, 0, n)
    means = (sums[hi] - sums[lo]) / (hi - lo)
    return maxima, means


def utterance_texts(dialogue: Dialogue) -> list[str]:
    """What the dense encoder reads of each utterance (the same rendering BM25 reads)."""
    return [utterance_render(dialogue, i) for i in range(len(dialogue.utterances))]


def dialogue_features(
    query: str,
    dialogue: Dialogue,
    utterance_vectors: np.ndarray,
    query_vector: np.ndarray,
    bm25: np.ndarray | None = None,
) -> np.ndarray:
    """[n utterances, len(FEATURES)] features of ``dialogue`` for ``query``. ``utterance_vectors``
    are the unit vectors of :func:`utterance_texts`; ``bm25`` may pass precomputed scores."""
    n = len(dialogue.utterances)
    if n == 0:
        return np.zeros((0, len(FEATURES)), np.float32)
    bm25 = bm25_scores(query, dialogue) if bm25 is None else np.asarray(bm25, float)
    cosine = np.asarray(utterance_vectors, float) @ np.asarray(query_vector, float)
    base = {"bm25": _z(bm25), "dense": _z(cosine)}
    columns: list[np.ndarray] = [base["bm25"], base["dense"], cosine]
    for signal in BASE_SIGNALS:
        for w in WINDOWS:
            columns += list(_window(base[signal], w))
    query_words = {t.lower() for t in tokens(query)}
    query_stems = content_stems(query)
    lengths, named, has_image, overlap = (np.zeros(n) for _ in range(4))
    for i, utterance in enumerate(dialogue.utterances):
        lengths[i] = np.log1p(len(tokens(utterance.text)))
        named[i] = float(utterance.speaker.lower() in query_words)
        images = dialogue.images_of(i)
        has_image[i] = float(bool(images))
        if images and query_stems:
            caption_stems: set[str] = set()
            for image in images:
                caption_stems |= content_stems(image.content_text())
            overlap[i] = len(caption_stems & query_stems) / len(query_stems)
    columns += [
        lengths,
        np.arange(n) / max(n - 1, 1),
        np.full(n, np.log1p(n)),
        named,
        has_image,
        overlap,
        (bm25 <= 0).astype(float),
    ]
    return np.stack(columns, axis=1).astype(np.float32)


#: What the answer head reads of one (query, dialogue): how strongly the best utterance matches
#: (the scorer, the encoder, BM25) and how many of the query's content words occur in the
#: dialogue at all (speaker names aside): a chat that never mentions the query's subject is
#: unlikely to answer it.
EVIDENCE: tuple[str, ...] = ("max_probability", "max_cosine", "max_bm25", "coverage", "log_turns")


_STEMS: OrderedDict[tuple[str, int, str], frozenset[str]] = OrderedDict()


def dialogue_stems(dialogue: Dialogue, cache_size: int = 256) -> frozenset[str]:
    """Every content stem the dialogue contains (remembered for the last ``cache_size``
    dialogues: every query read against a 600-turn meeting needs the same set)."""
    last = dialogue.utterances[-1].text if dialogue.utterances else ""
    key = (dialogue.id, len(dialogue.utterances), last)
    found = _STEMS.get(key)
    if found is None:
        said: set[str] = set()
        for text in utterance_texts(dialogue):
            said |= content_stems(text)
        found = _STEMS[key] = frozenset(said)
        while len(_STEMS) > cache_size:
            _STEMS.popitem(last=False)
    _STEMS.move_to_end(key)
    return found


def query_evidence(
    query: str,
    dialogue: Dialogue,
    probabilities: np.ndarray,
    cosine: np.ndarray,
    bm25: np.ndarray,
) -> np.ndarray:
    """[len(EVIDENCE)] evidence that ``dialogue`` answers ``query``."""
    n = len(dialogue.utterances)
    if n == 0:
        return np.zeros(len(EVIDENCE), np.float32)
    speakers = {u.speaker.lower() for u in dialogue.utterances}
    asked = {s for s in content_stems(query) if s not in speakers}
    said = dialogue_stems(dialogue)
    coverage = len(asked & said) / len(asked) if asked else 1.0
    return np.array(
        [
            float(np.max(probabilities)),
            float(np.max(cosine)),
            float(np.max(bm25)),
            coverage,
            float(np.log1p(n)),
        ],
        np.float32,
    )


@dataclass
class Signals:
    """One dialogue against one query: its feature rows, each utterance's encoder cosine and
    BM25 score, and the query's vector (what the scorer and the query-level heads read)."""

    features: np.ndarray
    cosine: np.ndarray
    bm25: np.ndarray
    query_vector: np.ndarray


def dialogue_signals(query: str, dialogue: Dialogue, encoder: Any) -> Signals:
    """The :class:`Signals` of a dialogue with at least one utterance. The query is embedded
    through the encoder's memo: FFRS reads several dialogues for one query."""
    vectors = np.asarray(encoder.encode(utterance_texts(dialogue)), float)
    query_vector = np.asarray(encoder.encode([query], memo=True)[0], float)
    bm25 = bm25_scores(query, dialogue)
    features = dialogue_features(query, dialogue, vectors, query_vector, bm25=bm25)
    return Signals(features, vectors @ query_vector, bm25, query_vector)


def gold_mask(n: int, gold: Sequence[int]) -> np.ndarray:
    """1.0 where the utterance is gold."""
    mask = np.zeros(n, np.float32)
    for i in gold:
        if 0 <= i < n:
            mask[i] = 1.0
    return mask
