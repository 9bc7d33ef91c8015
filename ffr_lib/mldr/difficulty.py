"""Two cheap baselines that measure how hard a query family is: BM25 over utterances and a
word-overlap sliding window. A family that they solve teaches a retriever little.

Both see what a model sees: each utterance rendered as "speaker: text [image: caption]". The
images an approach predicts are the images of the utterances it predicts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from ffr_lib.data.gold import gold_items, set_f1
from ffr_lib.data.model import Dialogue, Query
from ffr_lib.mldr.text import STOPWORDS, stem, tokens, utterance_render


def _terms(text: str) -> list[str]:
    return [stem(t) for t in tokens(text) if t not in STOPWORDS]


def bm25_scores(query: str, dialogue: Dialogue) -> np.ndarray:
    """BM25 score of every utterance of ``dialogue`` for ``query``."""
    import bm25s

    docs = [
        _terms(utterance_render(dialogue, i)) or ["<empty>"]
        for i in range(len(dialogue.utterances))
    ]
    if not docs:
        return np.zeros(0)
    retriever = bm25s.BM25()
    retriever.index(docs, show_progress=False)
    q = _terms(query)
    if not q:
        return np.zeros(len(docs))
    return np.asarray(retriever.get_scores(q), dtype=float)


def bm25_predict(query: str, dialogue: Dialogue, k: int = 3) -> tuple[list[int], list[int]]:
    """Top-``k`` utterances with a positive BM25 score (empty when no query word occurs), and the
    images they own."""
    scores = bm25_scores(query, dialogue)
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > 0][:k]
    utts = sorted(order)
    imgs = [im.index for im in dialogue.images if im.utterance_index in set(utts)]
    return utts, imgs


def bm25_rank(query: str, dialogue: Dialogue) -> list[int]:
    """Utterance ids by descending BM25 score (ties in dialogue order)."""
    scores = bm25_scores(query, dialogue)
    return [int(i) for i in np.argsort(-scores, kind="stable")]


def overlap_window_predict(
    query: str, dialogue: Dialogue, max_window: int = 10
) -> tuple[list[int], list[int]]:
    """The window of consecutive utterances (length 1..``max_window``) sharing the most distinct
    query words, the shortest and earliest on ties; empty when no query word occurs at all."""
    q = set(_terms(query))
    sets = [set(_terms(utterance_render(dialogue, i))) & q for i in range(len(dialogue.utterances))]
    best: tuple[int, int, int] = (0, 0, 0)  # (overlap, -length, -start) maximised
    best_span: tuple[int, int] | None = None
    for start in range(len(sets)):
        covered: set[str] = set()
        for end in range(start, min(len(sets), start + max_window)):
            covered |= sets[end]
            key = (len(covered), -(end - start + 1), -start)
            if key > best:
                best, best_span = key, (start, end + 1)
    if best_span is None or best[0] == 0:
        return [], []
    utts = list(range(*best_span))
    imgs = [im.index for im in dialogue.images if best_span[0] <= im.utterance_index < best_span[1]]
    return utts, imgs


def query_f1(
    pred_utts: Sequence[int],
    pred_imgs: Sequence[int],
    gold_utts: Sequence[int],
    gold_imgs: Sequence[int],
) -> float:
    """F1 over the modalities the gold uses (mean of utterance and image F1 for multimodal gold);
    for a negative query 1 when nothing is predicted, else 0."""
    parts = []
    if gold_utts:
        parts.append(set_f1(pred_utts, gold_utts))
    if gold_imgs:
        parts.append(set_f1(pred_imgs, gold_imgs))
    if not parts:
        return 1.0 if not pred_utts and not pred_imgs else 0.0
    return float(np.mean(parts))


class FamilyScore(BaseModel):
    family: str
    queries: int
    bm25_f1: float = Field(description="mean query_f1 of BM25 top-k")
    bm25_f1_utt: float = Field(description="mean utterance-set F1 of BM25 top-k")
    bm25_recall_at_10: float | None = Field(
        description="gold utterances in BM25 top 10 (None: no gold)"
    )
    window_f1: float = Field(description="mean query_f1 of the word-overlap window")
    window_f1_utt: float


def family_difficulty(
    queries: Sequence[Query], dialogues: Sequence[Dialogue], k: int = 3, max_window: int = 10
) -> dict[str, FamilyScore]:
    """Per-family F1 / Recall@10 of BM25 and of the word-overlap window (lower = harder).

    Recall@10 counts gold utterances among BM25's top 10 and an image gold as found when its
    utterance is there; it is averaged over queries that have gold.
    """
    by_id = {d.id: d for d in dialogues}
    rows: dict[str, list[tuple[float, float, float | None, float, float]]] = defaultdict(list)
    for q in queries:
        d = by_id[q.dialogue_id]
        bu, bi = bm25_predict(q.text, d, k)
        wu, wi = overlap_window_predict(q.text, d, max_window)
        gold = gold_items(q, d)
        recall = None
        if gold:
            top = set(bm25_rank(q.text, d)[:10])
            recall = len(gold & top) / len(gold)
        b_utt, w_utt = set_f1(bu, q.gold_utterance_ids), set_f1(wu, q.gold_utterance_ids)
        b_f1 = query_f1(bu, bi, q.gold_utterance_ids, q.gold_image_ids)
        w_f1 = query_f1(wu, wi, q.gold_utterance_ids, q.gold_image_ids)
        rows[q.family or "unknown"].append((b_f1, b_utt, recall, w_f1, w_utt))
    out: dict[str, FamilyScore] = {}
    for family, values in sorted(rows.items()):
        recalls = [r[2] for r in values if r[2] is not None]
        out[family] = FamilyScore(
            family=family,
            queries=len(values),
            bm25_f1=float(np.mean([r[0] for r in values])),
            bm25_f1_utt=float(np.mean([r[1] for r in values])),
            bm25_recall_at_10=float(np.mean(recalls)) if recalls else None,
            window_f1=float(np.mean([r[3] for r in values])),
            window_f1_utt=float(np.mean([r[4] for r in values])),
        )
    return out
