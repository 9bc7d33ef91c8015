"""Train the fine-stage reader: utterance features of every (query, dialogue) of the training
sources, labelled by the gold spans, with every other utterance of the same dialogue as a hard
negative; then decoding tuned on dialogues held aside from training.

Sources: MLDR train (synthetic, multi-modal, short chats) and QMSum train (real meetings with
human-marked spans, when the folder is present). Within a source each query weighs the same in
the fit whatever its dialogue's length, and each source weighs the same in total, in the fit and
in the decoding objective: 600-turn meetings do not drown 25-turn chats, nor do 4,700 generated
queries drown 900 human ones (QMSum val micro F1 0.37 -> 0.38 for MLDR val 0.415 -> 0.409,
BENCHMARKS.md).
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.gold import answerable
from ffr_lib.data.model import Dialogue, QueryType
from ffr_lib.data.sampling import spread
from ffr_lib.models.encoder import TextEncoder
from ffr_lib.reader.decode import (
    HEAD_THRESHOLDS,
    DecodeConfig,
    decode,
    joint_f1,
    micro_f1,
    tune_decoding,
)
from ffr_lib.reader.features import (
    dialogue_signals,
    gold_mask,
    query_evidence,
    utterance_texts,
)
from ffr_lib.reader.model import (
    HeadOutputs,
    Logistic,
    QueryHeads,
    ReaderWeights,
    fit_logistic,
    fit_perceptron,
)

log = logging.getLogger(__name__)


class ReaderTrainConfig(BaseModel):
    """Hyper-parameters of the reader (defaults live here; assets override only what they must)."""

    model_config = ConfigDict(extra="forbid")

    encoder: str = Field("minilm", description="dense encoder of the features (alias or folder)")
    hidden_units: int = Field(
        64, ge=0, description="hidden ReLU units of the scorer (0: logistic regression)"
    )
    epochs: int = Field(30, ge=1, description="passes over the training rows (hidden_units > 0)")
    weight_decay: float = Field(1e-3, ge=0, description="Adam weight decay (hidden_units > 0)")
    l2: float = Field(
        1.0,
        ge=0,
        description="L2 penalty of the logistic regressions (scorer with 0 hidden "
        "units, and the query-level heads)",
    )
    holdout_share: float = Field(
        0.15, gt=0, lt=1, description="share of each source's dialogues held aside for decoding"
    )
    max_queries: int | None = Field(
        None, ge=1, description="queries per source (spread over its dialogues; None = all)"
    )

    seed: int = 0


def _split_dialogues(dataset: Dataset, share: float, seed: int) -> tuple[set[str], set[str]]:
    ids = sorted(d.id for d in dataset.dialogues)
    random.Random(seed).shuffle(ids)
    cut = max(1, round(len(ids) * share)) if len(ids) > 1 else 0
    return set(ids[cut:]), set(ids[:cut])


@dataclass
class Example:
    """One training or held-aside query over its dialogue, scored by the features' signals."""

    query: str
    dialogue: Dialogue
    features: np.ndarray
    labels: np.ndarray
    gold: list[int]  # gold utterances plus the senders of gold images (what the scorer learns)
    gold_utterances: list[int]
    gold_images: list[int]
    query_vector: np.ndarray
    cosine: np.ndarray
    bm25: np.ndarray

    @property
    def image_owners(self) -> dict[int, int]:
        return {im.index: im.utterance_index for im in self.dialogue.images}


def _examples(
    dataset: Dataset, dialogue_ids: set[str], encoder: Any, max_queries: int | None, desc: str
) -> list[Example]:
    """One example per query of the chosen dialogues; negative queries (empty gold) are kept:
    they teach the answer head and the abstain threshold."""
    by_id = dataset.dialogue_by_id()
    chosen = spread([q for q in dataset.queries if q.dialogue_id in dialogue_ids], max_queries)
    gold_of = {
        q.id: gold
        for q, _d, gold in answerable(Dataset(dialogues=dataset.dialogues, queries=chosen))
    }
    # Embed every utterance and query in a few large batches (the encoder's memo keeps them for
    # the per-query loop below).
    needed = sorted({q.dialogue_id for q in chosen})
    encoder.encode([t for d in needed for t in utterance_texts(by_id[d])], desc=desc)
    encoder.encode([q.text for q in chosen])
    out = []
    for query in chosen:
        dialogue = by_id[query.dialogue_id]
        negative = query.type == QueryType.NEGATIVE
        gold = [] if negative else sorted(gold_of.get(query.id, set()))
        signals = dialogue_signals(query.text, dialogue, encoder)  # embedded above: memo
        out.append(
            Example(
                query=query.text,
                dialogue=dialogue,
                features=signals.features,
                labels=gold_mask(len(dialogue.utterances), gold),
                gold=gold,
                gold_utterances=[] if negative else list(query.gold_utterance_ids),
                gold_images=[] if negative else list(query.gold_image_ids),
                query_vector=signals.query_vector,
                cosine=signals.cosine,
                bm25=signals.bm25,
            )
        )
    return out


def train_reader(
    sources: dict[str, Dataset], config: ReaderTrainConfig | None = None, encoder: Any = None
) -> ReaderWeights:
    """Fit the reader on ``sources`` (name -> dataset with gold spans) and tune its decoding on
    the dialogues each source holds aside. The returned weights carry per-source figures of
    the held-aside queries in ``metrics``."""
    config = config or ReaderTrainConfig()
    encoder = encoder or TextEncoder.get(config.encoder)
    started = time.perf_counter()
    fit: list[Example] = []
    source_of: list[str] = []
    held: dict[str, list[Example]] = {}
    for name, dataset in sources.items():
        fit_ids, held_ids = _split_dialogues(dataset, config.holdout_share, config.seed)
        rows = _examples(dataset, fit_ids, encoder, config.max_queries, f"reader features {name}")
        fit += rows
        source_of += [name] * len(rows)
        held[name] = _examples(dataset, held_ids, encoder, None, f"reader held-aside {name}")
    taught = [(e, name) for e, name in zip(fit, source_of, strict=True) if e.gold]
    positives = [e for e, _name in taught]  # they teach the scorer
    if not positives:
        raise ValueError("no training query with gold utterances in the reader's sources")
    x = np.concatenate([e.features for e in positives])
    y = np.concatenate([e.labels for e in positives])
    # Each query weighs the same within its source, whatever its dialogue's length; each source
    # weighs the same in total (the mean row weight stays near 1).
    per_source = Counter(name for _e, name in taught)
    share = {name: len(positives) / (len(per_source) * count) for name, count in per_source.items()}
    w = np.concatenate([np.full(len(e.labels), share[n] / len(e.labels)) for e, n in taught])
    w *= len(w) / w.sum()
    weights = _fit_scorer(x, y, w, config)
    probabilities = {
        name: [weights.probabilities(e.features) for e in rows] for name, rows in held.items()
    }
    golds = {name: [e.gold for e in rows] for name, rows in held.items()}
    weights.decode, weights.decode_long = _tune_by_length(probabilities, golds, weights.long_turns)
    reference = ReaderWeights.untrained(config.encoder)
    weights.reference_decode, weights.reference_decode_long = _tune_by_length(
        {name: [reference.probabilities(e.features) for e in rows] for name, rows in held.items()},
        golds,
        weights.long_turns,
    )
    weights.heads = fit_heads(fit, weights, config.l2)
    weights.heads = tune_heads(held, probabilities, weights)
    metrics: dict[str, Any] = {
        "train_queries": len(positives),
        "train_rows": int(len(y)),
        "seconds": round(time.perf_counter() - started, 1),
    }
    for name, rows in held.items():
        decided = _decided(rows, probabilities[name], weights)
        metrics[f"{name}/held_queries"] = len(rows)
        metrics[f"{name}/held_micro_f1"] = round(
            micro_f1(zip([ids for ids, _o in decided], golds[name], strict=True)), 4
        )
        metrics[f"{name}/held_joint_f1"] = round(
            joint_f1(_answers(rows, probabilities[name], weights.heads, decided)), 4
        )
    weights.metrics = metrics
    log.info(
        "reader trained: %s; decoding up to %d turns %s, longer %s; heads %s",
        metrics,
        weights.long_turns,
        weights.decode.model_dump(),
        weights.decode_long.model_dump() if weights.decode_long else "the same",
        {k: v for k, v in weights.heads.model_dump().items() if k.endswith("_min")},
    )
    return weights


def _fit_scorer(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, config: ReaderTrainConfig
) -> ReaderWeights:
    if not config.hidden_units:
        mean, scale, coef, intercept = fit_logistic(x, y, w, l2=config.l2)
        return ReaderWeights(
            mean=mean.tolist(),
            scale=scale.tolist(),
            coef=coef.tolist(),
            intercept=intercept,
            encoder=config.encoder,
        )
    fitted = fit_perceptron(
        x,
        y,
        w,
        units=config.hidden_units,
        epochs=config.epochs,
        weight_decay=config.weight_decay,
        seed=config.seed,
    )
    return fitted.weights(config.encoder)


#: A head is fitted only when each of its classes has at least this many training queries.
MIN_CLASS = 20


def _head(x: np.ndarray, y: np.ndarray, l2: float) -> Logistic | None:
    if min(int(y.sum()), int(len(y) - y.sum())) < MIN_CLASS:
        return None
    return Logistic.fit(x, y, l2=l2)


def fit_heads(fit: list[Example], weights: ReaderWeights, l2: float) -> QueryHeads:
    """The query-level heads, fitted on the training queries: whether the answer has utterances
    and whether it has images (from the query's vector, on answerable queries), and whether the
    dialogue answers at all (from its evidence, on every query; negatives teach it)."""
    answered = [e for e in fit if e.gold]
    vectors = np.stack([e.query_vector for e in answered])
    has_utterances = np.array([bool(e.gold_utterances) for e in answered], float)
    has_images = np.array([bool(e.gold_images) for e in answered], float)
    evidence = np.stack(
        [
            query_evidence(e.query, e.dialogue, weights.probabilities(e.features), e.cosine, e.bm25)
            for e in fit
        ]
    )
    is_answered = np.array([bool(e.gold) for e in fit], float)
    return QueryHeads(
        utterances=_head(vectors, has_utterances, l2),
        images=_head(vectors, has_images, l2),
        answer=_head(evidence, is_answered, l2),
    )


def _decided(
    rows: list[Example], probabilities: list[np.ndarray], weights: ReaderWeights
) -> list[tuple[list[int], HeadOutputs]]:
    """The decoded runs and the heads' outputs of each query: both are fixed while only the
    thresholds change, so they are computed once."""
    heads = weights.heads
    out = []
    for e, p in zip(rows, probabilities, strict=True):
        outputs = (
            heads.outputs(
                e.query_vector,
                lambda e=e, p=p: query_evidence(e.query, e.dialogue, p, e.cosine, e.bm25),
            )
            if len(p)
            else HeadOutputs()
        )
        out.append((decode(p, weights.decoding_for(len(p))), outputs))
    return out


def _answers(
    rows: list[Example],
    probabilities: list[np.ndarray],
    heads: QueryHeads,
    decided: list[tuple[list[int], HeadOutputs]],
) -> list[tuple[list[int], list[int], list[int], list[int]]]:
    """(pred utterances, pred images, gold utterances, gold images) of each held-aside query
    under ``heads``' thresholds."""
    out = []
    for e, p, (ids, outputs) in zip(rows, probabilities, decided, strict=True):
        utterances, images = heads.compose(ids, p, e.image_owners, outputs)
        out.append((utterances, images, e.gold_utterances, e.gold_images))
    return out


def tune_heads(
    held: dict[str, list[Example]],
    probabilities: dict[str, list[np.ndarray]],
    weights: ReaderWeights,
) -> QueryHeads:
    """The heads' thresholds with the best mean (over sources) of the evaluation's joint F1 on
    the held-aside queries: first what the query wants (utterances, images), then when to
    abstain. A threshold whose head is absent stays at its default."""
    heads = weights.heads
    decided = {name: _decided(rows, probabilities[name], weights) for name, rows in held.items()}

    def score(candidate: QueryHeads) -> float:
        return float(
            np.mean(
                [
                    joint_f1(_answers(rows, probabilities[name], candidate, decided[name]))
                    for name, rows in held.items()
                    if rows
                ]
            )
        )

    best, best_score = heads, score(heads)
    modality = [
        {"utterances_min": u, "images_min": i}
        for u in (HEAD_THRESHOLDS if heads.utterances is not None else (heads.utterances_min,))
        for i in (HEAD_THRESHOLDS if heads.images is not None else (heads.images_min,))
    ]
    abstain = [{"answer_min": a} for a in ((0.0, *HEAD_THRESHOLDS) if heads.answer else ())]
    for grid in (modality, abstain):
        base = best
        for update in grid:
            candidate = base.model_copy(update=update)
            value = score(candidate)
            if value > best_score + 1e-9:
                best, best_score = candidate, value
    return best


def _tune_by_length(
    probabilities: dict[str, list[np.ndarray]],
    golds: dict[str, list[list[int]]],
    long_turns: int,
) -> tuple[DecodeConfig, DecodeConfig | None]:
    """Decoding for short and for long dialogues, each tuned on the held-aside queries of that
    length (every source with such queries weighs the same). A length with no held-aside
    query shares the other's decoding."""
    tuned: dict[bool, DecodeConfig] = {}
    for long in (False, True):
        groups = []
        for name in probabilities:
            pairs = [
                (p, g)
                for p, g in zip(probabilities[name], golds[name], strict=True)
                if (len(p) > long_turns) == long
            ]
            if pairs:
                groups.append(([p for p, _g in pairs], [g for _p, g in pairs]))
        if groups:
            tuned[long], _ = tune_decoding(groups)
    short = tuned.get(False) or tuned.get(True) or DecodeConfig()
    return short, tuned.get(True)
