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
from ffr_lib.reader.features import dialogue_signals, query_evidence
from ffr_lib.reader.model import HeadOutputs, ReaderWeights


@dataclass
class Run:
    """One contiguous run of the answer: [start, end] inclusive, its mean probability and the
    images sent in it."""

    start: int
    end: int
    score: float
    image_ids: list[int] = field(default_factory=list)
    #: False when the query wants the run's image, not its lines: the lines are context only.
    utterances_answered: bool = True

    @property
    def utterance_ids(self) -> list[int]:
        return list(range(self.start, self.end + 1))


@dataclass
class Scored:
    """One dialogue scored for one query: per-utterance probabilities, encoder cosines and BM25
    scores, and the query's vector (what the query-level heads read)."""

    probabilities: np.ndarray
    cosine: np.ndarray
    bm25: np.ndarray
    query_vector: np.ndarray


@dataclass
class ReaderAnswer:
    utterance_ids: list[int] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    probabilities: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: How likely the dialogue answers the query: the answer head's probability, else the best
    #: utterance's (comparable across dialogues, so FFRS can rank the dialogues it read).
    confidence: float = 0.0

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

    def score(self, query: str, dialogue: Dialogue) -> Scored:
        """Every utterance's probability, and what the query-level heads read."""
        if not dialogue.utterances:
            return Scored(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
        signals = dialogue_signals(query, dialogue, self.encoder)
        return Scored(
            self.weights.probabilities(signals.features),
            signals.cosine,
            signals.bm25,
            signals.query_vector,
        )

    def probabilities(self, query: str, dialogue: Dialogue) -> np.ndarray:
        return self.score(query, dialogue).probabilities

    def read(self, query: str, dialogue: Dialogue) -> ReaderAnswer:
        scored = self.score(query, dialogue)
        p = scored.probabilities
        ids = decode(p, self.weights.decoding_for(len(p)))
        outputs = (
            self.weights.heads.outputs(
                scored.query_vector,
                lambda: query_evidence(query, dialogue, p, scored.cosine, scored.bm25),
            )
            if len(p)
            else HeadOutputs()
        )
        utterance_ids, image_ids = self.weights.heads.compose(
            ids, p, {im.index: im.utterance_index for im in dialogue.images}, outputs
        )
        # The runs shown are those the answer came from (an image-only answer keeps its run as
        # the context that located the image).
        runs = runs_of(list(ids) if (utterance_ids or image_ids) else [], p, dialogue)
        named = set(image_ids)
        for run in runs:
            run.image_ids = [j for j in run.image_ids if j in named]
            run.utterances_answered = bool(utterance_ids)
        elsewhere = sorted(named - {j for run in runs for j in run.image_ids})
        if elsewhere and runs:  # an image the runs did not send: it answers with the best run
            runs[0].image_ids = sorted(runs[0].image_ids + elsewhere)
        confidence = outputs.answerable
        if confidence is None:
            confidence = float(p.max()) if len(p) else 0.0
        return ReaderAnswer(utterance_ids, image_ids, runs, p, confidence)
