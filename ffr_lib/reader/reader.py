"""The trained fine-stage reader at work: one dialogue (or the dialogue of a recalled fragment)
and a query in, the exact utterance and image ids out, with each run's score.

Images are named through the utterance that sent them; their caption/OCR text is part of what
both BM25 and the encoder read of that utterance, so an image whose content matches the query
raises its utterance."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ffr_lib.data.model import Dialogue
from ffr_lib.models.encoder import TextEncoder
from ffr_lib.reader.decode import decode
from ffr_lib.reader.features import dialogue_features, utterance_texts
from ffr_lib.reader.model import ReaderWeights


@dataclass
class Run:
    """One contiguous run of the answer: [start, end] inclusive, its mean probability and the
    images sent in it."""

    start: int
    end: int
    score: float
    image_ids: list[int] = field(default_factory=list)

    @property
    def utterance_ids(self) -> list[int]:
        return list(range(self.start, self.end + 1))


@dataclass
class ReaderAnswer:
    utterance_ids: list[int] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    probabilities: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def score(self) -> float:
        return max((r.score for r in self.runs), default=0.0)


def consecutive_runs(ids: list[int]) -> list[list[int]]:
    """Sorted ``ids`` split into maximal runs of consecutive ids."""
    runs: list[list[int]] = []
    for i in sorted(ids):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def runs_of(
    ids: list[int], probabilities: np.ndarray, dialogue: Dialogue | None = None
) -> list[Run]:
    """The maximal contiguous runs of ``ids`` with their mean probability (and the images
    ``dialogue`` sent in them), best first."""
    runs = []
    for ids_run in consecutive_runs(ids):
        start, end = ids_run[0], ids_run[-1]
        images = [
            im.index
            for im in (dialogue.images if dialogue else [])
            if start <= im.utterance_index <= end
        ]
        runs.append(Run(start, end, float(probabilities[start : end + 1].mean()), images))
    return sorted(runs, key=lambda r: (-r.score, r.start))


class Reader:
    """Scores every utterance of a dialogue with the checkpoint's features and decodes the
    answer. Utterance vectors are computed once per distinct text (the encoder's memo)."""

    def __init__(self, weights: ReaderWeights, encoder: Any = None) -> None:
        self.weights = weights
        self.encoder = encoder or TextEncoder.get(weights.encoder)

    @classmethod
    def load(cls, path: str | Path, encoder: Any = None) -> Reader:
        folder = Path(path)
        return cls(
            ReaderWeights.load(folder / "reader.json" if folder.is_dir() else folder), encoder
        )

    def probabilities(self, query: str, dialogue: Dialogue) -> np.ndarray:
        if not dialogue.utterances:
            return np.zeros(0)
        vectors = self.encoder.encode(utterance_texts(dialogue))
        query_vector = self.encoder.encode([query])[0]
        features = dialogue_features(query, dialogue, vectors, query_vector)
        return self.weights.probabilities(features)

    def read(self, query: str, dialogue: Dialogue) -> ReaderAnswer:
        p = self.probabilities(query, dialogue)
        ids = decode(p, self.weights.decoding_for(len(p)))
        runs = runs_of(ids, p, dialogue)
        images = sorted(i for run in runs for i in run.image_ids)
        return ReaderAnswer(ids, images, runs, p)
