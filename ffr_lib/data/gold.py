"""What a query's gold answer covers, and how well a predicted id set matches it."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.model import Dialogue, Query


def gold_items(query: Query, dialogue: Dialogue) -> set[int]:
    """The gold utterance ids of ``query`` plus the utterances that own its gold images (an
    image's gold counts as the utterance it was sent with)."""
    owners = {dialogue.images[j].utterance_index for j in query.gold_image_ids}
    return set(query.gold_utterance_ids) | owners


def answerable(dataset: Dataset) -> Iterator[tuple[Query, Dialogue, set[int]]]:
    """``(query, its dialogue, gold_items)`` for every query of ``dataset`` that names one of
    its dialogues and has gold there (negative and corpus queries have none: skipped)."""
    by_id = dataset.dialogue_by_id()
    for query in dataset.queries:
        dialogue = by_id.get(query.dialogue_id or "")
        if dialogue is None:
            continue
        gold = gold_items(query, dialogue)
        if gold:
            yield query, dialogue, gold


def set_f1(pred: Iterable[Hashable], gold: Iterable[Hashable]) -> float:
    """F1 of two sets; two empty sets score 1."""
    p, g = set(pred), set(gold)
    if not p and not g:
        return 1.0
    return 2 * len(p & g) / (len(p) + len(g))
