"""Corpus-style variants of single-dialogue queries, for a fair corpus-mode evaluation.

MLDR queries are written for one given dialogue: "What did Maya say about food?" has one answer
in Maya's chat, but across a corpus of a hundred chats several may fit, and no system can know
which one the asker meant. Scoring corpus mode on such queries measures the ambiguity of the
queries more than the retrievers (every system scores low).

A person searching a whole chat history says which chat they mean. The variant here does the
same, from the dialogue's own description: who talked, and what else the chat was about
(the categories of its other topics, from the MLDR builder's ``topics`` metadata):

    In the chat between Maya and Tom that also covered pets and travel: What did Maya say about food?

A variant is kept only when that description fits no other dialogue of the corpus (same two
speakers and all the named categories among its topics), so each kept query has exactly one
right dialogue by construction, judged on the builder's metadata and not on any system's output.
Negative queries are left out: across a corpus another chat may well answer them. Gold ids are
unchanged. Datasets without topic metadata (LoCoMo, user data) get no variants.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.gold import gold_items
from ffr_lib.data.model import Dialogue, Query, QueryType
from ffr_lib.mldr.lexicon import by_name

SUFFIX = "corpus-style"


def _topics(dialogue: Dialogue) -> list[dict[str, Any]]:
    topics = dialogue.metadata.get("topics")
    if not isinstance(topics, list):
        return []
    return [t for t in topics if isinstance(t, dict) and "start" in t and "end" in t]


def _categories(topics: Sequence[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for topic in topics:
        for name in topic.get("categories") or []:
            seen[str(name)] = None
    return list(seen)


def _phrase(category: str) -> str:
    found = by_name().get(category)
    return found.phrases[0] if found and found.phrases else category.replace("_", " ")


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _fits(dialogue: Dialogue, speakers: set[str], categories: Sequence[str]) -> bool:
    return speakers <= set(dialogue.speakers) and set(categories) <= set(
        _categories(_topics(dialogue))
    )


def _descriptions(others: list[str], every: list[str], most: int = 3):
    """Candidate category lists, shortest first: subsets of ``others`` of up to ``most``
    categories, then all of ``others``, then all of ``every``."""
    from itertools import combinations

    for size in range(1, min(most, len(others)) + 1):
        for subset in combinations(others, size):
            yield list(subset), " also"
    if len(others) > most:
        yield others, " also"
    if every and set(every) != set(others):
        yield every, ""


def corpus_variant(query: Query, dialogue: Dialogue, corpus: Sequence[Dialogue]) -> Query | None:
    """The corpus-style variant of ``query``, or None when its dialogue cannot be described
    uniquely within ``corpus`` (or the query is negative, or there is no topic metadata)."""
    topics = _topics(dialogue)
    if query.type is QueryType.NEGATIVE or not topics or len(dialogue.speakers) < 2:
        return None
    gold = gold_items(query, dialogue)
    others = [t for t in topics if not any(t["start"] <= u < t["end"] for u in gold)]
    speakers = set(dialogue.speakers[:2])
    # The fewest categories of the other topics that single the dialogue out (they add what the
    # query lacks, as a person would: "the chat with Tom where we also talked about pets"); all
    # the dialogue's topics when the other topics cannot.
    for categories, also in _descriptions(_categories(others), _categories(topics)):
        rivals = [d for d in corpus if d.id != dialogue.id and _fits(d, speakers, categories)]
        if rivals:
            continue
        a, b = dialogue.speakers[:2]
        context = f"In the chat between {a} and {b} that{also} covered " + _join(
            [_phrase(c) for c in categories]
        )
        return query.model_copy(
            update={
                "id": f"{query.id}#{SUFFIX}",
                "text": f"{context}: {query.text}",
                "metadata": {
                    **query.metadata,
                    "variant": SUFFIX,
                    "original_text": query.text,
                    "context_categories": categories,
                },
            }
        )
    return None


def corpus_style(dataset: Dataset) -> tuple[Dataset, dict[str, int]]:
    """Variants of every query of ``dataset`` that can have one (see the module docstring), and
    counts: ``queries`` (all), ``negative`` (left out), ``ambiguous`` (no unique description),
    ``kept``."""
    by_id = dataset.dialogue_by_id()
    kept: list[Query] = []
    counts = {"queries": 0, "negative": 0, "ambiguous": 0, "kept": 0}
    for query in dataset.queries:
        dialogue = by_id.get(query.dialogue_id or "")
        if dialogue is None:
            continue
        counts["queries"] += 1
        if query.type is QueryType.NEGATIVE:
            counts["negative"] += 1
            continue
        variant = corpus_variant(query, dialogue, dataset.dialogues)
        if variant is None:
            counts["ambiguous"] += 1
            continue
        kept.append(variant)
    counts["kept"] = len(kept)
    metadata = {**dataset.metadata, "variant": SUFFIX, "variant_counts": counts}
    return Dataset(dialogues=dataset.dialogues, queries=kept, metadata=metadata), counts
