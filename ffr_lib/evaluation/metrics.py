"""Evaluation metrics of METHOD.md ("Evaluation") plus per-query and ranking metrics.

Set metrics (single-dialogue retrieval). Per sample and modality (utterances, images): TP, FP,
FN and TN, where TN counts the ids 0..n-1 of the prompt (n = number of utterances / images the
model was given) that are neither predicted nor gold. Predicted ids outside 0..n-1 are FPs.
Counts are summed over the set (micro average); per modality precision, recall, F1 and MCC come
from the sums. Joint precision / recall = harmonic mean of the two modalities, joint F1 and joint
MCC = plain mean.

Division-by-zero conventions (documented because they decide edge cases):

- precision = TP / (TP + FP); with no predictions it is 1 if there was nothing to find (FN = 0),
  else 0. Recall = TP / (TP + FN); with no gold it is 1 if nothing was predicted (FP = 0), else
  0. F1 = 2PR / (P + R), 0 if P + R = 0. So a set with no gold and no prediction scores 1, as
  "F1 of two empty sets is 1" in the rewards.
- MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)); when a factor is 0 it is 1 if the
  predictions agree with the gold everywhere (FP = FN = 0), else 0.
- A modality that never occurs in the set (all four counts 0: no images in any prompt and none
  predicted) is *absent*: it is reported with ``present = False`` and left out of the joint
  figures, which then equal the other modality's. The harmonic mean of two zeros is 0.

Per query: F1 per modality (two empty sets score 1, as above) averaged over queries (macro), a
joint per-query F1 over the pooled set of utterance and image ids, and exact-set match (both
predicted sets equal the gold sets).

Ranking metrics (corpus retrieval), for a ranked list of items against a gold set: duplicates in
the list count only at their first position. Recall@K = |top-K ∩ gold| / |gold|; hit@K = 1 if any
gold item is in the top K; MRR = 1 / rank of the first gold item (0 if none); nDCG@K with binary
gains and log2(rank + 1) discounts, ideal DCG over min(|gold|, K) items. Queries with empty gold
have no defined recall and are skipped by :func:`ranking_metrics` (it reports how many).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from ffr_lib.data.gold import set_f1
from ffr_lib.data.model import Dialogue, Query


@dataclass(frozen=True)
class Counts:
    """Confusion counts of one modality."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def present(self) -> bool:
        return bool(self.tp or self.fp or self.fn or self.tn)

    @property
    def precision(self) -> float:
        if self.tp + self.fp == 0:
            return 1.0 if self.fn == 0 else 0.0
        return self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> float:
        if self.tp + self.fn == 0:
            return 1.0 if self.fp == 0 else 0.0
        return self.tp / (self.tp + self.fn)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    @property
    def mcc(self) -> float:
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        denominator = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
        if denominator == 0:
            return 1.0 if fp == 0 and fn == 0 else 0.0
        return (tp * tn - fp * fn) / math.sqrt(denominator)


def set_counts(pred: Iterable[int], gold: Iterable[int], n: int) -> Counts:
    """Counts of one sample and modality over the universe 0..n-1."""
    p, g = set(pred), set(gold)
    tp = len(p & g)
    fp = len(p - g)
    fn = len(g - p)
    inside = sum(1 for i in p | g if 0 <= i < n)
    return Counts(tp, fp, fn, max(0, n - inside))


@dataclass(frozen=True)
class SetSample:
    """Prediction and gold of one query over one given dialogue (or window/fragment)."""

    pred_utt: Sequence[int]
    pred_img: Sequence[int]
    gold_utt: Sequence[int]
    gold_img: Sequence[int]
    n_utterances: int
    n_images: int

    @classmethod
    def for_query(
        cls,
        query: Query,
        dialogue: Dialogue,
        pred_utt: Sequence[int],
        pred_img: Sequence[int],
    ) -> SetSample:
        """A single-dialogue query answered over its whole dialogue (the TN universe)."""
        return cls(
            pred_utt=list(pred_utt),
            pred_img=list(pred_img),
            gold_utt=list(query.gold_utterance_ids),
            gold_img=list(query.gold_image_ids),
            n_utterances=len(dialogue.utterances),
            n_images=len(dialogue.images),
        )


class ModalityMetrics(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tp: int
    fp: int
    fn: int
    tn: int
    precision: float
    recall: float
    f1: float
    mcc: float
    present: bool


class SetMetrics(BaseModel):
    """Micro (reference) and per-query metrics over a set of samples."""

    model_config = ConfigDict(extra="forbid")

    n: int
    utterance: ModalityMetrics
    image: ModalityMetrics
    precision: float
    recall: float
    f1: float
    mcc: float
    macro_f1_utterance: float
    macro_f1_image: float
    macro_f1: float
    exact_match: float

    def flat(self, prefix: str = "") -> dict[str, float]:
        """Flat figures for MLflow / metrics.json."""
        out: dict[str, float] = {}
        for name, m in (("utt", self.utterance), ("img", self.image)):
            for key in ("tp", "fp", "fn", "tn", "precision", "recall", "f1", "mcc"):
                out[f"{prefix}{name}_{key}"] = float(getattr(m, key))
        for key in (
            "n",
            "precision",
            "recall",
            "f1",
            "mcc",
            "macro_f1_utterance",
            "macro_f1_image",
            "macro_f1",
            "exact_match",
        ):
            out[f"{prefix}{key}"] = float(getattr(self, key))
        return out


def _modality(c: Counts) -> ModalityMetrics:
    return ModalityMetrics(
        tp=c.tp,
        fp=c.fp,
        fn=c.fn,
        tn=c.tn,
        precision=c.precision,
        recall=c.recall,
        f1=c.f1,
        mcc=c.mcc,
        present=c.present,
    )


def harmonic_mean(a: float, b: float) -> float:
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def set_metrics(samples: Sequence[SetSample]) -> SetMetrics:
    """The reference micro metrics plus macro F1 and exact match (see the module docstring)."""
    if not samples:
        raise ValueError("no samples to evaluate")
    utt, img = Counts(), Counts()
    f1_u = f1_i = f1_joint = exact = 0.0
    for s in samples:
        utt += set_counts(s.pred_utt, s.gold_utt, s.n_utterances)
        img += set_counts(s.pred_img, s.gold_img, s.n_images)
        f1_u += set_f1(s.pred_utt, s.gold_utt)
        f1_i += set_f1(s.pred_img, s.gold_img)
        pooled_pred = {("u", i) for i in s.pred_utt} | {("i", i) for i in s.pred_img}
        pooled_gold = {("u", i) for i in s.gold_utt} | {("i", i) for i in s.gold_img}
        f1_joint += set_f1(pooled_pred, pooled_gold)
        exact += float(set(s.pred_utt) == set(s.gold_utt) and set(s.pred_img) == set(s.gold_img))
    mu, mi = _modality(utt), _modality(img)
    present = [m for m in (mu, mi) if m.present] or [mu, mi]
    if len(present) == 2:
        precision = harmonic_mean(mu.precision, mi.precision)
        recall = harmonic_mean(mu.recall, mi.recall)
        f1 = (mu.f1 + mi.f1) / 2
        mcc = (mu.mcc + mi.mcc) / 2
    else:
        (m,) = present
        precision, recall, f1, mcc = m.precision, m.recall, m.f1, m.mcc
    n = len(samples)
    return SetMetrics(
        n=n,
        utterance=mu,
        image=mi,
        precision=precision,
        recall=recall,
        f1=f1,
        mcc=mcc,
        macro_f1_utterance=f1_u / n,
        macro_f1_image=f1_i / n,
        macro_f1=f1_joint / n,
        exact_match=exact / n,
    )


# ---------------------------------------------------------------- ranking


def _dedupe(ranked: Sequence[Hashable]) -> list[Hashable]:
    return list(dict.fromkeys(ranked))


def recall_at_k(ranked: Sequence[Hashable], gold: Iterable[Hashable], k: int) -> float:
    g = set(gold)
    if not g:
        raise ValueError("recall of an empty gold set is undefined")
    return len(set(_dedupe(ranked)[:k]) & g) / len(g)


def hit_at_k(ranked: Sequence[Hashable], gold: Iterable[Hashable], k: int) -> float:
    g = set(gold)
    return 1.0 if any(item in g for item in _dedupe(ranked)[:k]) else 0.0


def reciprocal_rank(ranked: Sequence[Hashable], gold: Iterable[Hashable]) -> float:
    g = set(gold)
    for rank, item in enumerate(_dedupe(ranked), start=1):
        if item in g:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[Hashable], gold: Iterable[Hashable], k: int = 10) -> float:
    g = set(gold)
    if not g:
        raise ValueError("nDCG of an empty gold set is undefined")
    dcg = sum(
        1.0 / math.log2(rank + 1)
        for rank, item in enumerate(_dedupe(ranked)[:k], start=1)
        if item in g
    )
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(g), k) + 1))
    return dcg / ideal


def ranking_metrics(
    rankings: Sequence[Sequence[Hashable]],
    golds: Sequence[Iterable[Hashable]],
    ks: Sequence[int] = (1, 5, 10, 20),
    ndcg_k: int = 10,
) -> dict[str, float]:
    """Mean Recall@K, hit@K, MRR and nDCG@``ndcg_k`` over the queries with non-empty gold.
    ``n_queries`` counts them, ``n_skipped_empty_gold`` the others; with no scorable query the
    means are NaN."""
    if len(rankings) != len(golds):
        raise ValueError(f"{len(rankings)} rankings but {len(golds)} gold sets")
    sums: dict[str, float] = {f"recall@{k}": 0.0 for k in ks}
    sums.update({f"hit@{k}": 0.0 for k in ks})
    sums["mrr"] = 0.0
    sums[f"ndcg@{ndcg_k}"] = 0.0
    n = skipped = 0
    for ranked, gold in zip(rankings, golds, strict=True):
        g = set(gold)
        if not g:
            skipped += 1
            continue
        n += 1
        for k in ks:
            sums[f"recall@{k}"] += recall_at_k(ranked, g, k)
            sums[f"hit@{k}"] += hit_at_k(ranked, g, k)
        sums["mrr"] += reciprocal_rank(ranked, g)
        sums[f"ndcg@{ndcg_k}"] += ndcg_at_k(ranked, g, ndcg_k)
    out = {key: (value / n if n else math.nan) for key, value in sums.items()}
    out["n_queries"] = float(n)
    out["n_skipped_empty_gold"] = float(skipped)
    return out
