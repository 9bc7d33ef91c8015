"""From per-utterance relevance probabilities to the final ids: contiguous runs, several allowed,
and an abstain threshold for queries whose answer is not in the chat.

A run is the contiguous stretch that maximises the sum of ``p - tau`` (so a run grows while its
utterances are more likely relevant than ``tau``, and bridges a short dip between two relevant
stretches). Further runs are taken the same way from what is left, while their gain is at least
``extra_run_gain`` times the first run's. The query is answered with nothing when no utterance
reaches ``abstain``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class DecodeConfig(BaseModel):
    """How scores become ids (tuned on held-aside data, see :func:`tune_decoding`)."""

    model_config = ConfigDict(extra="forbid")

    tau: float = Field(0.5, ge=0, le=1, description="probability a run's utterances must beat")
    abstain: float = Field(
        0.0, ge=0, le=1, description="answer nothing when no utterance's probability reaches this"
    )
    max_runs: int = Field(3, ge=1, description="most runs in one answer")
    extra_run_gain: float = Field(
        0.5, ge=0, le=1, description="a further run is kept if its gain is this share of the first"
    )


def best_run(gains: np.ndarray) -> tuple[int, int, float]:
    """[start, end) and total of the contiguous run with the largest sum (Kadane; -inf entries
    are never taken). Returns (0, 0, 0.0) when every gain is <= 0."""
    best, best_span = 0.0, (0, 0)
    total, start = 0.0, 0
    for i, gain in enumerate(gains):
        if total <= 0:
            total, start = 0.0, i
        total += float(gain)
        if total > best + 1e-12:
            best, best_span = total, (start, i + 1)
    return best_span[0], best_span[1], best


def decode(probabilities: Sequence[float] | np.ndarray, config: DecodeConfig) -> list[int]:
    """The ids the reader answers with (sorted; empty = abstain)."""
    p = np.asarray(probabilities, dtype=float)
    if not len(p) or float(p.max()) < config.abstain:
        return []
    gains = p - config.tau
    chosen: list[int] = []
    first_gain = 0.0
    for _ in range(config.max_runs):
        start, end, gain = best_run(gains)
        if end <= start or gain <= 0:
            break
        if chosen and gain < config.extra_run_gain * first_gain:
            break
        first_gain = first_gain or gain
        chosen.extend(range(start, end))
        gains[start:end] = -np.inf
    if not chosen:  # nothing beats tau: the single most likely utterance
        chosen = [int(p.argmax())]
    return sorted(chosen)


def micro_f1(pairs: Iterable[tuple[Sequence[int], Sequence[int]]]) -> float:
    """Micro F1 over (predicted, gold) id sets: an answer to a negative query is all false
    positives; abstaining on a positive one is all misses."""
    tp = fp = fn = 0
    for predicted, gold in pairs:
        p, g = set(predicted), set(gold)
        tp += len(p & g)
        fp += len(p - g)
        fn += len(g - p)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


TAUS: tuple[float, ...] = tuple(round(x, 2) for x in np.arange(0.05, 0.96, 0.05))
ABSTAINS: tuple[float, ...] = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def tune_decoding(
    groups: Sequence[tuple[Sequence[np.ndarray], Sequence[Sequence[int]]]],
    taus: Sequence[float] = TAUS,
    abstains: Sequence[float] = ABSTAINS,
    max_runs: Sequence[int] = (1, 2, 3),
) -> tuple[DecodeConfig, float]:
    """The decoding with the best mean, over ``groups`` (e.g. one per data source), of each
    group's micro F1 on (probabilities, gold) of held-aside queries (negative queries have empty
    gold), and that mean. Without any negative query there is no abstention (``abstain`` 0)."""
    groups = [(list(p), list(g)) for p, g in groups if len(p)]
    if not any(not gold for _p, golds in groups for gold in golds):
        # No negative query to learn from: abstaining could only trade recall for precision on
        # these very queries, which does not carry over (seen on QMSum val).
        abstains = (0.0,)
    best, best_score = DecodeConfig(), -1.0
    for runs in max_runs:
        for tau in taus:
            base = DecodeConfig(tau=tau, max_runs=runs)
            decoded = [[decode(p, base) for p in probs] for probs, _g in groups]
            peaks = [[float(np.max(p)) if len(p) else 0.0 for p in probs] for probs, _g in groups]
            for abstain in abstains:
                score = float(
                    np.mean(
                        [
                            micro_f1(
                                ([] if peak < abstain else d, g)
                                for d, peak, g in zip(ds, ps, golds, strict=True)
                            )
                            for ds, ps, (_p, golds) in zip(decoded, peaks, groups, strict=True)
                        ]
                    )
                )
                if score > best_score + 1e-9:
                    best, best_score = base.model_copy(update={"abstain": abstain}), score
    return best, best_score


# ----------------------------------------------------------------------------- query-level heads


def compose_answer(
    ids: Sequence[int],
    probabilities: np.ndarray,
    image_owners: dict[int, int],
    *,
    wants_utterances: float | None = None,
    wants_images: float | None = None,
    answerable: float | None = None,
    utterances_min: float = 0.5,
    images_min: float = 0.5,
    answer_min: float = 0.0,
) -> tuple[list[int], list[int]]:
    """(utterance ids, image ids) of the answer, from the decoded runs ``ids`` and the
    query-level heads (None = no such head: the runs decide alone).

    ``image_owners`` maps each image id of the dialogue to the utterance that sent it. The
    images of the runs are named when the query wants an image; when it wants one and the runs
    sent none, the image whose sender is most likely relevant. The run's utterances are left
    out only when the query wants an image but not the lines around it, and there is an image
    to answer with. Nothing is answered when the answer head says the dialogue does not hold
    the answer."""
    if not len(ids) or (answerable is not None and answerable < answer_min):
        return [], []
    chosen = set(ids)
    images = sorted(j for j, owner in image_owners.items() if owner in chosen)
    if wants_images is not None and image_owners:
        if wants_images < images_min:
            images = []
        elif not images:
            images = [max(image_owners, key=lambda j: (probabilities[image_owners[j]], -j))]
    utterances = sorted(chosen)
    if wants_utterances is not None and images and wants_utterances < utterances_min:
        utterances = []
    return utterances, images


def joint_f1(
    samples: Iterable[tuple[Sequence[int], Sequence[int], Sequence[int], Sequence[int]]],
) -> float:
    """The evaluation's headline F1 on (pred utterances, pred images, gold utterances, gold
    images) samples: micro F1 per modality, averaged over the modalities that occur."""
    counts = np.zeros((2, 3))  # [utterances, images] x [tp, fp, fn]
    for pred_u, pred_i, gold_u, gold_i in samples:
        for row, (pred, gold) in enumerate(((pred_u, gold_u), (pred_i, gold_i))):
            p, g = set(pred), set(gold)
            counts[row] += (len(p & g), len(p - g), len(g - p))
    f1s = [2 * tp / (2 * tp + fp + fn) if tp else 0.0 for tp, fp, fn in counts if tp + fp + fn > 0]
    return float(np.mean(f1s)) if f1s else 0.0


HEAD_THRESHOLDS: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
