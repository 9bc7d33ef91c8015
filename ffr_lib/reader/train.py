"""Train the fine-stage reader: utterance features of every (query, dialogue) of the training
sources, labelled by the gold spans, with every other utterance of the same dialogue as a hard
negative; then decoding tuned on dialogues held aside from training.

Sources: MLDR train (synthetic, multi-modal, short chats) and QMSum train (real meetings with
human-marked spans, when the folder is present). Each query weighs the same in the fit whatever
its dialogue's length, and each source weighs the same in the decoding objective, so 600-turn
meetings do not drown 25-turn chats, nor the reverse.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ffr_lib.data.dataset import Dataset
from ffr_lib.data.gold import answerable
from ffr_lib.data.model import QueryType
from ffr_lib.data.sampling import spread
from ffr_lib.models.encoder import TextEncoder
from ffr_lib.reader.decode import DecodeConfig, decode, micro_f1, tune_decoding
from ffr_lib.reader.features import dialogue_features, gold_mask, utterance_texts
from ffr_lib.reader.model import ReaderWeights, fit_logistic

log = logging.getLogger(__name__)


class ReaderTrainConfig(BaseModel):
    """Hyper-parameters of the reader (defaults live here; assets override only what they must)."""

    model_config = ConfigDict(extra="forbid")

    encoder: str = Field("minilm", description="dense encoder of the features (alias or folder)")
    l2: float = Field(1.0, ge=0, description="L2 penalty of the logistic regression")
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


def _examples(
    dataset: Dataset, dialogue_ids: set[str], encoder: Any, max_queries: int | None, desc: str
) -> list[tuple[np.ndarray, np.ndarray, list[int]]]:
    """(features, labels, gold ids) per query of the chosen dialogues; negative queries (empty
    gold) are kept: they teach the abstain threshold."""
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
        gold = sorted(gold_of.get(query.id, set())) if query.type != QueryType.NEGATIVE else []
        vectors = encoder.encode(utterance_texts(dialogue))
        q = encoder.encode([query.text])[0]
        x = dialogue_features(query.text, dialogue, vectors, q)
        out.append((x, gold_mask(len(dialogue.utterances), gold), gold))
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
    train_rows: list[tuple[np.ndarray, np.ndarray]] = []
    held: dict[str, list[tuple[np.ndarray, np.ndarray, list[int]]]] = {}
    for name, dataset in sources.items():
        fit_ids, held_ids = _split_dialogues(dataset, config.holdout_share, config.seed)
        fit = _examples(dataset, fit_ids, encoder, config.max_queries, f"reader features {name}")
        train_rows += [(x, y) for x, y, gold in fit if gold]  # positives teach the scorer
        held[name] = _examples(dataset, held_ids, encoder, None, f"reader held-aside {name}")
    if not train_rows:
        raise ValueError("no training query with gold utterances in the reader's sources")
    x = np.concatenate([r[0] for r in train_rows])
    y = np.concatenate([r[1] for r in train_rows])
    # Each query weighs 1 in total, whatever its dialogue's length.
    w = np.concatenate([np.full(len(r[1]), 1.0 / len(r[1])) for r in train_rows]) * 100.0
    mean, scale, coef, intercept = fit_logistic(x, y, w, l2=config.l2)
    weights = ReaderWeights(
        mean=mean.tolist(),
        scale=scale.tolist(),
        coef=coef.tolist(),
        intercept=intercept,
        encoder=config.encoder,
    )
    probabilities = {
        name: [weights.probabilities(x) for x, _y, _g in rows] for name, rows in held.items()
    }
    golds = {name: [g for *_r, g in rows] for name, rows in held.items()}
    weights.decode, weights.decode_long = _tune_by_length(probabilities, golds, weights.long_turns)
    metrics: dict[str, Any] = {
        "train_queries": len(train_rows),
        "train_rows": int(len(y)),
        "seconds": round(time.perf_counter() - started, 1),
    }
    for name, rows in held.items():
        decoded = [decode(p, weights.decoding_for(len(p))) for p in probabilities[name]]
        metrics[f"{name}/held_queries"] = len(rows)
        metrics[f"{name}/held_micro_f1"] = round(
            micro_f1(zip(decoded, golds[name], strict=True)), 4
        )
    weights.metrics = metrics
    log.info(
        "reader trained: %s; decoding up to %d turns %s, longer %s",
        metrics,
        weights.long_turns,
        weights.decode.model_dump(),
        weights.decode_long.model_dump() if weights.decode_long else "the same",
    )
    return weights


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
