"""Statistics of a built dataset: counts, histograms, query-type and family mix."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ffr_lib.data.dataset import Dataset


def histogram(values: list[int], bins: list[int]) -> dict[str, int]:
    """Counts per bin ``[bins[k], bins[k+1])``; the last bin is open-ended (``"b+"``)."""
    out: dict[str, int] = {}
    for k, low in enumerate(bins):
        high = bins[k + 1] if k + 1 < len(bins) else None
        label = f"{low}-{high - 1}" if high is not None else f"{low}+"
        out[label] = sum(1 for v in values if v >= low and (high is None or v < high))
    return out


def dataset_stats(dataset: Dataset) -> dict:
    """Counts, turn and image histograms, query-type and family mix, gold-size figures."""
    turns = [len(d.utterances) for d in dataset.dialogues]
    images = [len(d.images) for d in dataset.dialogues]
    topics = [len(d.metadata.get("topics") or []) for d in dataset.dialogues]
    types = Counter(str(q.type) for q in dataset.queries)
    families = Counter(q.family or "unknown" for q in dataset.queries)
    gold_utts = [len(q.gold_utterance_ids) for q in dataset.queries if q.gold_utterance_ids]
    scattered = sum(1 for q in dataset.queries if q.metadata.get("gold_runs", 0) > 1)
    n_queries = len(dataset.queries)
    return {
        "dialogues": len(dataset.dialogues),
        "queries": n_queries,
        "utterances": int(sum(turns)),
        "images": int(sum(images)),
        "turns_mean": float(np.mean(turns)) if turns else 0.0,
        "images_mean": float(np.mean(images)) if images else 0.0,
        "topics_mean": float(np.mean(topics)) if topics else 0.0,
        "turn_histogram": histogram(turns, [0, 10, 20, 30, 40, 60, 100, 200, 300]),
        "image_histogram": histogram(images, [0, 1, 2, 3, 4, 5, 10]),
        "query_types": dict(sorted(types.items())),
        "query_type_share": {k: v / n_queries for k, v in sorted(types.items())}
        if n_queries
        else {},
        "query_families": dict(sorted(families.items())),
        "gold_utterances_mean": float(np.mean(gold_utts)) if gold_utts else 0.0,
        "scattered_gold_queries": scattered,
    }
