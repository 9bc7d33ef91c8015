"""Inputs of the difficulty-aware curriculum: run the SFT model over the GRPO training records
(greedy, keeping the log-probability of every generated token) and score each sample.

Per sample (METHOD.md): F1 = (F1_utt + F1_img) / 2 of the prediction against the gold (F1 of two
empty sets is 1; the gold is the record's, i.e. the query's own answer in the ``whole`` prompt
shape), and the entropy of the normalised token probabilities
``q_t = p_t / sum p`` , ``H = -sum q_t log q_t``. The classes and the order are computed by
:mod:`ffr_lib.f2rvlm.curriculum` from these numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ffr_lib.data.format.answer import parse
from ffr_lib.data.gold import set_f1
from ffr_lib.f2rvlm.backbone import Backbone, load_trained, read_adapter_meta
from ffr_lib.f2rvlm.curriculum import CurriculumSample
from ffr_lib.f2rvlm.profiles import F2RVLMProfile
from ffr_lib.f2rvlm.retriever import generate


@dataclass
class ScoredRecords:
    """Records with the SFT model's prediction, F1, token probabilities and entropy each."""

    records: list[dict[str, Any]]
    f1: list[float] = field(default_factory=list)
    f1_utt: list[float] = field(default_factory=list)
    f1_img: list[float] = field(default_factory=list)
    entropy: list[float] = field(default_factory=list)
    token_probs: list[list[float]] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def curriculum_samples(self) -> list[Any]:
        """The scores as :class:`ffr_lib.f2rvlm.curriculum.CurriculumSample` objects."""
        return [
            CurriculumSample(
                f1_utt=u,
                f1_img=i,
                gold_empty=not (r["gold_utterance_ids"] or r["gold_image_ids"]),
                token_probs=p,
            )
            for r, u, i, p in zip(
                self.records, self.f1_utt, self.f1_img, self.token_probs, strict=True
            )
        ]


def normalised_entropy(logprobs: Sequence[float]) -> float:
    """Entropy of the token probabilities normalised to sum 1 (0 for <= 1 token)."""
    if len(logprobs) <= 1:
        return 0.0
    probs = [math.exp(lp) for lp in logprobs]
    total = sum(probs)
    if total <= 0:
        return 0.0
    return float(-sum((p / total) * math.log(p / total) for p in probs if p > 0))


def sample_f1(prediction: str, record: dict[str, Any], form: str) -> tuple[float, float]:
    """(F1_utt, F1_img) of a prediction; (0, 0) when it does not parse."""
    answer = parse(prediction, form)  # type: ignore[arg-type]
    if not answer.syntax_ok:
        return 0.0, 0.0
    utt = set_f1(set(answer.utt_ids), set(record["gold_utterance_ids"]))
    img = set_f1(set(answer.img_ids), set(record["gold_image_ids"]))
    return utt, img


def score_records(
    sft_adapter: str | Path | Backbone,
    records: list[dict[str, Any]],
    profile: F2RVLMProfile | None = None,
    batch_size: int = 8,
) -> ScoredRecords:
    """Score ``records`` (built by ``retriever.training_records``) with the SFT model."""
    if isinstance(sft_adapter, Backbone):
        if profile is None:
            raise ValueError("pass the profile with a loaded backbone")
        backbone = sft_adapter
    else:
        meta = read_adapter_meta(Path(sft_adapter))
        profile = profile or F2RVLMProfile.model_validate(meta["profile"])
        backbone = load_trained(sft_adapter)
    started = time.perf_counter()
    outputs = generate(
        backbone,
        [r["prompt"] for r in records],
        profile.curriculum.max_new_tokens,
        images=[r.get("images", []) for r in records] if backbone.is_vlm else None,
        with_logprobs=True,
        batch_size=batch_size,
    )
    scored = ScoredRecords(records=list(records), seconds=time.perf_counter() - started)
    for record, (text, logprobs) in zip(records, outputs, strict=True):
        scored.predictions.append(text)
        f1_utt, f1_img = sample_f1(text, record, profile.answer_form)
        scored.f1_utt.append(f1_utt)
        scored.f1_img.append(f1_img)
        scored.f1.append((f1_utt + f1_img) / 2)
        scored.token_probs.append([math.exp(lp) for lp in logprobs])
        scored.entropy.append(normalised_entropy(logprobs))
    return scored
