"""Cheap-retriever hints written into the F2RVLM prompt, so that a small generator refines a
ranking instead of searching the whole window on its own.

Each utterance line gets a relevance bucket ``(r0)`` .. ``(rK)`` from a cheap scorer of
(query, utterance text + captions of its images): word overlap (no model), MiniLM cosine, or
both added (``combined``). The buckets are normalised over the WHOLE dialogue (not the window),
so a window far from the answer shows only low buckets and the model can learn to answer "none"
there.

Candidate pre-selection (``preselect_top``): instead of reading the dialogue in sliding windows,
the model reads ONE prompt holding the ``preselect_top`` best-scored utterances, each with
``preselect_context`` neighbours on both sides, in dialogue order (local ids 0..). Generation
then refines a short list instead of searching every window, and the per-window abstentions
and union merge of sliding windows disappear (one answer per query).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ffr_lib.data.model import Dialogue
from ffr_lib.mldr.text import content_stems, stem
from ffr_lib.models.encoder import get_text_encoder

HintMethod = Literal["none", "overlap", "minilm", "combined"]
Embedder = Callable[[list[str]], np.ndarray]

# What a query says about itself ("the chat where the photo of ... was talked about") matches
# every line with an image or the same framing: no topical signal, on top of the stop words.
QUERY_FRAMING = frozenset(
    stem(w)
    for w in (
        *("chat", "done", "image", "photo", "picture", "query", "talk", "talked"),
        *("may", "might", "must", "shall", "us"),
    )
)


class HintSettings(BaseModel):
    """Which cheap scorer annotates the lines, and how coarsely."""

    model_config = ConfigDict(extra="forbid")

    method: HintMethod = Field(
        "overlap",
        description="scorer: none | overlap (share of query content words in the line) | minilm "
        "(MiniLM cosine) | combined (the two added)",
    )
    buckets: int = Field(3, ge=1, description="relevance levels above 0")
    template: str = Field("(r{level})", description="annotation text; {level} field")
    annotate: bool = Field(True, description="write the buckets into the lines")
    preselect_top: int | None = Field(
        None,
        ge=1,
        description="read only the N best-scored utterances (plus context) in one prompt "
        "instead of sliding windows; None = sliding windows over the whole dialogue",
    )
    preselect_context: int = Field(
        1, ge=0, description="neighbours shown on each side of a pre-selected utterance"
    )

    @model_validator(mode="after")
    def _check(self) -> HintSettings:
        if self.preselect_top is not None and self.method == "none":
            raise ValueError("preselect_top needs a hint scorer (method != none)")
        return self


def hint_terms(text: str) -> set[str]:
    """The stems a hint matches on: the content stems of the MLDR text helpers (one stop list,
    one stemmer for queries, baselines and hints) less the query framing."""
    return content_stems(text) - QUERY_FRAMING


def utterance_texts(dialogue: Dialogue) -> list[str]:
    """Text of each utterance plus the caption/OCR text of the images sent with it."""
    texts = [u.text for u in dialogue.utterances]
    for image in dialogue.images:
        texts[image.utterance_index] += " " + image.content_text()
    return texts


def overlap_scores(query: str, texts: Sequence[str]) -> np.ndarray:
    """Fraction of the query's content words found in each text."""
    q = hint_terms(query)
    if not q:
        return np.zeros(len(texts))
    return np.array([len(q & hint_terms(t)) / len(q) for t in texts], dtype=float)


def embedding_scores(query: str, texts: Sequence[str], embed: Embedder) -> np.ndarray:
    """Cosine similarity of query and each text under ``embed`` (clipped at 0)."""
    if not texts:
        return np.zeros(0)
    vectors = np.asarray(embed([query, *texts]), dtype=float)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return np.clip(vectors[1:] @ vectors[0], 0.0, None)


def relevance_scores(
    dialogue: Dialogue, query: str, settings: HintSettings, embed: Embedder | None = None
) -> np.ndarray:
    """One score per utterance of ``dialogue`` (0 everywhere for method ``none``)."""
    texts = utterance_texts(dialogue)
    if settings.method == "none":
        return np.zeros(len(texts))
    if settings.method == "overlap":
        return overlap_scores(query, texts)
    if embed is None:
        raise ValueError(f"hint method {settings.method!r} needs an embed function")
    dense = embedding_scores(query, texts, embed)
    if settings.method == "combined":
        return dense + overlap_scores(query, texts)
    return dense


def needs_embedder(settings: HintSettings) -> bool:
    return settings.method in ("minilm", "combined")


def default_embedder(settings: HintSettings) -> Embedder | None:
    """The MiniLM text encoder when the hint scorer needs one, else None."""
    if not needs_embedder(settings):
        return None
    encoder = get_text_encoder()
    return lambda texts: np.asarray(encoder.encode(list(texts)))


def preselect_ids(scores: np.ndarray, top: int, context: int) -> list[int]:
    """Utterance ids shown by candidate pre-selection: the ``top`` best scores (earlier first on
    ties) and ``context`` neighbours on each side, in dialogue order."""
    n = len(scores)
    best = [int(i) for i in np.argsort(-np.asarray(scores), kind="stable")[:top]]
    shown = {j for i in best for j in range(max(0, i - context), min(n, i + context + 1))}
    return sorted(shown)


def buckets(scores: np.ndarray, levels: int) -> list[int]:
    """Scores -> levels 0..levels relative to the best score of the dialogue (0 stays 0)."""
    top = float(scores.max()) if scores.size else 0.0
    if top <= 0:
        return [0] * len(scores)
    return [0 if s <= 0 else max(1, int(np.ceil(levels * s / top - 1e-9))) for s in scores]


def annotations_from_scores(scores: np.ndarray, settings: HintSettings) -> dict[int, str] | None:
    """Annotation per GLOBAL utterance id from precomputed scores; None when hints are off or
    not written into the lines."""
    if settings.method == "none" or not settings.annotate:
        return None
    levels = buckets(scores, settings.buckets)
    return {i: settings.template.format(level=level) for i, level in enumerate(levels)}


def hint_annotations(
    dialogue: Dialogue, query: str, settings: HintSettings, embed: Embedder | None = None
) -> dict[int, str] | None:
    """Annotation per GLOBAL utterance id for ``render_prompt(annotations=...)``; None when
    hints are off."""
    if settings.method == "none" or not settings.annotate:
        return None
    return annotations_from_scores(relevance_scores(dialogue, query, settings, embed), settings)
