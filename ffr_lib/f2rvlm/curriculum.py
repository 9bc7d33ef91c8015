"""The difficulty-aware curriculum of METHOD.md.

Per training sample, from a pass of the SFT model: F1 = (F1_utt + F1_img) / 2 of its prediction
and H, the entropy of its normalised token probabilities (p_i / sum p, natural log; an empty
completion has H = 0). With the quartiles Q25/Q50/Q75 of F1 and of H over all samples
(``numpy.quantile``, linear interpolation):

- easy:      F1 >= Q75(F1) and H <= Q25(H)
- middle:    not easy, F1 >= Q50(F1) and H <= Q50(H)
- confusing: not easy/middle, F1 >= Q25(F1) and H <= Q75(H)
- hard:      the rest.

Easy and middle samples whose gold is empty are dropped (a negative query the model already gets
right teaches nothing). Then all easy and hard samples are kept, the top 10% (by F1) of middle
and the top 50% of confusing; a fraction keeps ``ceil(fraction * n)`` samples, so a non-empty
class keeps at least one. Ties in F1 go to the lower entropy, then to the earlier sample.
Output order: easy -> middle -> confusing -> hard, dataset order inside a class (GRPO must not
shuffle it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Difficulty(StrEnum):
    EASY = "easy"
    MIDDLE = "middle"
    CONFUSING = "confusing"
    HARD = "hard"


ORDER = (Difficulty.EASY, Difficulty.MIDDLE, Difficulty.CONFUSING, Difficulty.HARD)


class CurriculumSample(BaseModel):
    """What the SFT pass yields for one sample. Give ``entropy`` directly, or the generated
    tokens' ``token_probs`` or ``token_logprobs`` to compute it from."""

    model_config = ConfigDict(extra="forbid")

    f1_utt: float = Field(ge=0, le=1)
    f1_img: float = Field(ge=0, le=1)
    gold_empty: bool = False
    token_probs: list[float] | None = None
    token_logprobs: list[float] | None = None
    entropy: float | None = None

    @model_validator(mode="after")
    def _one_source(self) -> CurriculumSample:
        given = [x is not None for x in (self.token_probs, self.token_logprobs, self.entropy)]
        if sum(given) != 1:
            raise ValueError("give exactly one of token_probs, token_logprobs, entropy")
        return self

    @property
    def f1(self) -> float:
        return (self.f1_utt + self.f1_img) / 2

    def h(self) -> float:
        if self.entropy is not None:
            return self.entropy
        if self.token_probs is not None:
            return normalised_entropy(self.token_probs)
        assert self.token_logprobs is not None
        return normalised_entropy(np.exp(np.asarray(self.token_logprobs, dtype=np.float64)))


class CurriculumConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    middle_keep: float = Field(0.10, ge=0, le=1, description="fraction of middle kept (top F1)")
    confusing_keep: float = Field(0.50, ge=0, le=1, description="fraction of confusing kept")
    drop_empty_gold: tuple[Difficulty, ...] = (Difficulty.EASY, Difficulty.MIDDLE)


@dataclass(frozen=True)
class CurriculumResult:
    """``order``: indices of the kept samples in training order. ``classes``: class of every
    input sample. ``thresholds``: the quartiles used."""

    order: list[int]
    classes: list[Difficulty]
    class_counts: dict[str, int]
    dropped_empty: dict[str, int]
    kept_counts: dict[str, int]
    thresholds: dict[str, float]

    def metadata(self) -> dict[str, int | float]:
        """Flat figures for asset metadata / MLflow."""
        out: dict[str, int | float] = {"n_samples": len(self.classes), "n_kept": len(self.order)}
        for c in ORDER:
            out[f"{c}_total"] = self.class_counts[c]
            out[f"{c}_dropped_empty"] = self.dropped_empty[c]
            out[f"{c}_kept"] = self.kept_counts[c]
        out.update(self.thresholds)
        return out


def normalised_entropy(probs: Sequence[float] | np.ndarray) -> float:
    """Entropy of the token probabilities normalised to sum 1 (natural log)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.size == 0:
        return 0.0
    if np.any(p < 0) or not np.all(np.isfinite(p)):
        raise ValueError("token probabilities must be finite and non-negative")
    total = p.sum()
    if total <= 0:
        return 0.0
    q = p[p > 0] / total
    return float(-(q * np.log(q)).sum())


def classify(f1: np.ndarray, h: np.ndarray) -> tuple[list[Difficulty], dict[str, float]]:
    """Quartile classes of METHOD.md for arrays of F1 and entropy."""
    f25, f50, f75 = (float(x) for x in np.quantile(f1, [0.25, 0.5, 0.75]))
    h25, h50, h75 = (float(x) for x in np.quantile(h, [0.25, 0.5, 0.75]))
    classes = []
    for f, e in zip(f1.tolist(), h.tolist(), strict=True):
        if f >= f75 and e <= h25:
            classes.append(Difficulty.EASY)
        elif f >= f50 and e <= h50:
            classes.append(Difficulty.MIDDLE)
        elif f >= f25 and e <= h75:
            classes.append(Difficulty.CONFUSING)
        else:
            classes.append(Difficulty.HARD)
    thresholds = {
        "f1_q25": f25,
        "f1_q50": f50,
        "f1_q75": f75,
        "entropy_q25": h25,
        "entropy_q50": h50,
        "entropy_q75": h75,
    }
    return classes, thresholds


def build_curriculum(
    samples: Sequence[CurriculumSample], config: CurriculumConfig | None = None
) -> CurriculumResult:
    """Classify, filter and order ``samples`` (see the module docstring)."""
    config = config or CurriculumConfig()
    if not samples:
        zero = {c.value: 0 for c in ORDER}
        return CurriculumResult([], [], dict(zero), dict(zero), dict(zero), {})
    f1 = np.array([s.f1 for s in samples], dtype=np.float64)
    h = np.array([s.h() for s in samples], dtype=np.float64)
    classes, thresholds = classify(f1, h)

    members: dict[Difficulty, list[int]] = {c: [] for c in ORDER}
    dropped = {c.value: 0 for c in ORDER}
    for i, c in enumerate(classes):
        if samples[i].gold_empty and c in config.drop_empty_gold:
            dropped[c.value] += 1
        else:
            members[c].append(i)

    keep_fraction = {
        Difficulty.MIDDLE: config.middle_keep,
        Difficulty.CONFUSING: config.confusing_keep,
    }
    order: list[int] = []
    kept = {}
    for c in ORDER:
        chosen = members[c]
        if c in keep_fraction:
            n_keep = math.ceil(keep_fraction[c] * len(chosen) - 1e-9)
            best = sorted(chosen, key=lambda i: (-f1[i], h[i], i))[:n_keep]
            chosen = sorted(best)
        order.extend(chosen)
        kept[c.value] = len(chosen)
    counts = {c.value: classes.count(c) for c in ORDER}
    return CurriculumResult(order, classes, counts, dropped, kept, thresholds)
