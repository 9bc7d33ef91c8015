"""An embedding-based topic segmenter in the style of TextTiling (Hearst 1997).

For every gap between utterances, the cosine similarity of the mean embedding of the ``block``
utterances before and after it; the curve is smoothed; a gap's depth is how far it lies below the
nearest peaks on both sides; gaps deeper than the threshold (default: mean - std/2 of the depths,
as in TextTiling) become boundaries, deepest first, never closer than ``min_segment``.

The embedder is any ``Callable[[list[str]], np.ndarray]``: tests pass a cheap deterministic one,
production passes the FEM text encoder. An image's caption/OCR text counts as part of its
utterance, so a photo turn with no words still has content.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel, Field

from ffr_lib.data.model import Dialogue
from ffr_lib.segment.fragments import Fragment, fragments_from_boundaries

Embed = Callable[[list[str]], np.ndarray]


class TextTilingConfig(BaseModel):
    block: int = Field(3, ge=1, description="utterances on each side of a gap")
    smoothing: int = Field(1, ge=0, description="moving-average radius over gap similarities")
    threshold: float | None = Field(
        None, description="depth threshold; None = mean - std/2 of the depths"
    )
    threshold_std: float = Field(-0.5, description="the std multiplier of the automatic threshold")
    min_segment: int = Field(4, ge=1, description="no fragment shorter than this")
    max_segments: int | None = Field(None, ge=1, description="keep at most this many fragments")


def utterance_texts(dialogue: Dialogue) -> list[str]:
    """What is embedded per utterance: its text plus the content of its images."""
    texts = []
    for u in dialogue.utterances:
        parts = [u.text.strip()] + [im.content_text() for im in dialogue.images_of(u.index)]
        texts.append(" ".join(p for p in parts if p))
    return texts


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


def gap_similarities(embeddings: np.ndarray, block: int) -> np.ndarray:
    """Cosine similarity across each of the ``n - 1`` gaps between blocks of ``block`` units."""
    n = len(embeddings)
    sims = np.zeros(max(0, n - 1))
    for g in range(1, n):
        left = embeddings[max(0, g - block) : g].mean(axis=0)
        right = embeddings[g : min(n, g + block)].mean(axis=0)
        sims[g - 1] = float(_normalise(left) @ _normalise(right))
    return sims


def smooth(values: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0 or len(values) == 0:
        return values.copy()
    out = np.empty_like(values)
    for i in range(len(values)):
        out[i] = values[max(0, i - radius) : i + radius + 1].mean()
    return out


def depth_scores(sims: np.ndarray) -> np.ndarray:
    """TextTiling depth: climb to the highest point on each side while the curve rises."""
    depths = np.zeros_like(sims)
    for i, s in enumerate(sims):
        left = s
        for j in range(i - 1, -1, -1):
            if sims[j] < left:
                break
            left = sims[j]
        right = s
        for j in range(i + 1, len(sims)):
            if sims[j] < right:
                break
            right = sims[j]
        depths[i] = (left - s) + (right - s)
    return depths


def boundaries_from_embeddings(embeddings: np.ndarray, config: TextTilingConfig) -> list[int]:
    """Boundaries (utterance ids starting a new segment) for one dialogue's embeddings."""
    n = len(embeddings)
    if n < 2 * config.min_segment:
        return []
    sims = smooth(gap_similarities(_normalise(embeddings), config.block), config.smoothing)
    depths = depth_scores(sims)
    threshold = config.threshold
    if threshold is None:
        threshold = float(depths.mean() - config.threshold_std * depths.std())
    candidates = sorted(
        (g for g in range(len(depths)) if depths[g] > max(threshold, 1e-9)),
        key=lambda g: (-depths[g], g),
    )
    chosen: list[int] = []
    for g in candidates:
        b = g + 1  # gap g lies between utterance g and g + 1
        if b < config.min_segment or n - b < config.min_segment:
            continue
        if any(abs(b - c) < config.min_segment for c in chosen):
            continue
        chosen.append(b)
        if config.max_segments is not None and len(chosen) >= config.max_segments - 1:
            break
    return sorted(chosen)


def _fill_empty(vectors: np.ndarray, empty: Sequence[bool]) -> np.ndarray:
    """Give a contentless utterance its previous (else next) neighbour's vector."""
    out = vectors.copy()
    last = None
    for i, e in enumerate(empty):
        if e and last is not None:
            out[i] = out[last]
        elif not e:
            last = i
    nxt = None
    for i in range(len(empty) - 1, -1, -1):
        if empty[i] and (i == 0 or empty[i - 1]) and nxt is not None and not out[i].any():
            out[i] = out[nxt]
        elif not empty[i]:
            nxt = i
    return out


class TextTilingSegmenter:
    """Topic segmenter over utterance embeddings."""

    def __init__(self, embed: Embed, config: TextTilingConfig | None = None) -> None:
        self.embed = embed
        self.config = config or TextTilingConfig()

    def embeddings(self, dialogues: Sequence[Dialogue]) -> list[np.ndarray]:
        """One matrix per dialogue, embedded in a single batch."""
        texts = [utterance_texts(d) for d in dialogues]
        flat = [t for ts in texts for t in ts if t]
        vectors = np.asarray(self.embed(flat), dtype=np.float32) if flat else np.zeros((0, 1))
        dim = vectors.shape[1] if vectors.ndim == 2 and len(vectors) else 1
        out, k = [], 0
        for ts in texts:
            m = np.zeros((len(ts), dim), dtype=np.float32)
            for i, t in enumerate(ts):
                if t:
                    m[i] = vectors[k]
                    k += 1
            out.append(_fill_empty(m, [not t for t in ts]))
        return out

    def boundaries_many(self, dialogues: Sequence[Dialogue]) -> list[list[int]]:
        return [boundaries_from_embeddings(m, self.config) for m in self.embeddings(dialogues)]

    def boundaries(self, dialogue: Dialogue) -> list[int]:
        return self.boundaries_many([dialogue])[0]

    def segment(self, dialogue: Dialogue) -> list[Fragment]:
        return fragments_from_boundaries(dialogue, self.boundaries(dialogue))

    def segment_many(self, dialogues: Sequence[Dialogue]) -> list[list[Fragment]]:
        return [
            fragments_from_boundaries(d, b)
            for d, b in zip(dialogues, self.boundaries_many(dialogues), strict=True)
        ]
