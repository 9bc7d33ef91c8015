"""Result types shared by FFRS, the baselines and the evaluation harness.

Every retrieval system answers with a :class:`Prediction`: the dialogues it found, ranked, each
with its exact (global) utterance and image ids, the ranked units it retrieved (fragments, or
single utterances for utterance-level systems; used for the ranking metrics), the time spent per
stage and the number of prompt tokens a generator read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RankedFragment:
    """One retrieved unit (a fragment, a window or a single utterance) in GLOBAL ids.

    ``picked_*`` is what the second stage (F2RVLM) chose inside the unit; None when no second
    stage ran, in which case the whole unit counts.
    """

    dialogue_id: str
    utterance_ids: list[int]
    image_ids: list[int]
    score: float
    fragment_id: str | None = None
    text: str = ""
    picked_utterance_ids: list[int] | None = None
    picked_image_ids: list[int] | None = None
    confidence: float | None = None  # the fine stage's own score of its pick (the reader's)

    @property
    def read(self) -> bool:
        """Whether a second stage read this unit."""
        return self.picked_utterance_ids is not None or self.picked_image_ids is not None

    def effective(self) -> tuple[list[int], list[int]]:
        """The ids this unit contributes: the second stage's pick, or the whole unit."""
        if self.read:
            return list(self.picked_utterance_ids or []), list(self.picked_image_ids or [])
        return list(self.utterance_ids), list(self.image_ids)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dialogue_id": self.dialogue_id,
            "fragment_id": self.fragment_id,
            "utterance_ids": self.utterance_ids,
            "image_ids": self.image_ids,
            "score": self.score,
            "picked_utterance_ids": self.picked_utterance_ids,
            "picked_image_ids": self.picked_image_ids,
        }


@dataclass
class DialogueResult:
    """The answer inside one dialogue: merged ids of all its contributing units."""

    dialogue_id: str
    utterance_ids: list[int]
    image_ids: list[int]
    score: float
    fragments: list[RankedFragment] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dialogue_id": self.dialogue_id,
            "utterance_ids": self.utterance_ids,
            "image_ids": self.image_ids,
            "score": self.score,
            "fragments": [f.as_dict() for f in self.fragments],
        }


@dataclass
class Prediction:
    """What a system returns for one query. ``dialogues`` is ranked best first; empty means the
    system found nothing (the right answer to a negative query). ``answers``: how many of the
    answers a generator wrote for this query were exact, recovered or malformed
    (``ffr_lib.data.format.answer.status_counts``); empty for systems that do not generate."""

    dialogues: list[DialogueResult] = field(default_factory=list)
    units: list[RankedFragment] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    tokens_read: int = 0
    answers: dict[str, int] = field(default_factory=dict)

    @property
    def dialogue_id(self) -> str | None:
        return self.dialogues[0].dialogue_id if self.dialogues else None

    @property
    def utterance_ids(self) -> list[int]:
        return list(self.dialogues[0].utterance_ids) if self.dialogues else []

    @property
    def image_ids(self) -> list[int]:
        return list(self.dialogues[0].image_ids) if self.dialogues else []

    @property
    def is_empty(self) -> bool:
        return not self.utterance_ids and not self.image_ids

    def as_dict(self) -> dict[str, Any]:
        return {
            "dialogues": [d.as_dict() for d in self.dialogues],
            "units": [u.as_dict() for u in self.units],
            "timings": self.timings,
            "tokens_read": self.tokens_read,
            "answers": self.answers,
        }


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Add the wall time of the block to ``timings[stage]`` (seconds)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def merge_per_dialogue(units: Sequence[RankedFragment]) -> list[DialogueResult]:
    """Merge ranked units into one result per dialogue, ranked.

    A dialogue's ids are the union of what its units contribute (:meth:`RankedFragment.effective`);
    its score is the best score among the units that contribute something. Units read by a second
    stage that picked nothing contribute nothing, and a dialogue left with no id is dropped (that
    is how FFRS says "not here"). Ties keep the order of first appearance.
    """
    order: list[str] = []
    merged: dict[str, tuple[set[int], set[int], float, list[RankedFragment]]] = {}
    for unit in units:
        utt, img = unit.effective()
        if not utt and not img:
            continue
        if unit.dialogue_id not in merged:
            order.append(unit.dialogue_id)
            merged[unit.dialogue_id] = (set(), set(), unit.score, [])
        u, i, score, frags = merged[unit.dialogue_id]
        u.update(utt)
        i.update(img)
        frags.append(unit)
        merged[unit.dialogue_id] = (u, i, max(score, unit.score), frags)
    position = {d: k for k, d in enumerate(order)}
    ranked = sorted(order, key=lambda d: (-merged[d][2], position[d]))
    return [
        DialogueResult(d, sorted(merged[d][0]), sorted(merged[d][1]), merged[d][2], merged[d][3])
        for d in ranked
    ]
