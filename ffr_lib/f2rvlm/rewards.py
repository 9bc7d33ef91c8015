"""GRPO reward functions of F2RVLM (METHOD.md), in the shape trl's GRPOTrainer calls them.

Each reward is a plain function ``(completions, **columns) -> list[float]``: ``completions`` are
strings or chat message lists (``[{"role": "assistant", "content": ...}]``, content a string or
a list of ``{"type": "text", "text": ...}`` parts); ``columns`` are the dataset columns, one value
per completion. The gold answer comes from the column ``solution`` (an answer string in the
reference format) or from the columns ``gold_utterance_ids`` and ``gold_image_ids``. Which gold
that is follows the profile's prompt shape (``retriever.training_records``): in the ``whole``
shape the query's own answer over the whole dialogue (for a chat too long for one prompt, the
query's gold inside the window read), in the ``windowed`` shape each window's share ("none" for a
window without gold).

- **R_F1** = sum over m in {utt, img} of 0.5 * F1(pred_m, gold_m) * 0.95^| |pred_m| - |gold_m| |;
  F1 of two empty sets is 1; 0 when the completion is not in the exact format. Duplicate ids
  are collapsed before scoring (R_Format punishes them).
- **R_Fragment** (coherence): the predicted utterances plus the owners of the predicted images,
  in dialogue order; for each, its embedding, then (if it has predicted images) the mean
  embedding of those images; reward = mean cosine similarity of neighbouring elements. 1 if the
  prediction and the gold are both empty, 0 if exactly one is empty, 0.5 for fewer than two
  elements, 0 if the completion is not in the exact format. Predicted ids outside the dialogue
  have no content and are ignored here (R_F1 punishes them). Needs the columns
  ``utterance_texts`` (text per utterance id), ``image_texts`` (text per image id) and
  ``image_owner`` (owning utterance id per image id); embeddings come from the frozen encoder
  given to :func:`make_fragment_reward`. A zero embedding has cosine 0 with everything.
- **R_Format** = 1 if the completion is in the exact format with no duplicate ids, else 0.

The think-tag policy is the one of :mod:`ffr_lib.data.format.answer`. Weights default to 1 / 1 / 0.3.
The rewards are registered by name in :data:`REWARDS`; a profile names the ones GRPO uses
(``GRPOSettings.rewards``, default all three) and :func:`build_rewards` builds them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ffr_lib.data.format.answer import AnswerForm, ParsedAnswer, parse, parse_answer
from ffr_lib.data.gold import set_f1
from ffr_lib.registry import Entry, Registry

RewardFn = Callable[..., list[float]]
Embedder = Callable[[list[str]], np.ndarray]

LENGTH_PENALTY_BASE = 0.95


class RewardWeights(BaseModel):
    """Weights of the three rewards (trl ``reward_weights``)."""

    model_config = ConfigDict(extra="forbid")

    f1: float = Field(1.0, ge=0)
    fragment: float = Field(1.0, ge=0)
    format: float = Field(0.3, ge=0)


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or the last message of a chat message list."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "") if isinstance(completion[-1], dict) else ""
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(
                part.get("text", "")
                for part in content
                if isinstance(part, dict) and part.get("type", "text") == "text"
            )
    return ""


def f1_with_length_penalty(pred: set[int], gold: set[int]) -> float:
    return set_f1(pred, gold) * LENGTH_PENALTY_BASE ** abs(len(pred) - len(gold))


def _gold(index: int, columns: dict[str, Any]) -> tuple[set[int], set[int]]:
    if "solution" in columns and columns["solution"] is not None:
        solution = columns["solution"][index]
        gold = parse_answer(solution)
        if not gold.syntax_ok:  # a dataset built for the compact form may store it that way
            gold = parse(solution, "compact")
        if not gold.syntax_ok:
            raise ValueError(f"solution of sample {index} is not an answer: {solution!r}")
        return set(gold.utt_ids), set(gold.img_ids)
    if "gold_utterance_ids" in columns and "gold_image_ids" in columns:
        return set(columns["gold_utterance_ids"][index]), set(columns["gold_image_ids"][index])
    raise ValueError("rewards need a 'solution' column or 'gold_utterance_ids'/'gold_image_ids'")


def _parsed(completions: Sequence[Any], form: AnswerForm) -> list[ParsedAnswer]:
    return [parse(completion_text(c), form) for c in completions]


def make_f1_reward(form: AnswerForm = "reference") -> RewardFn:
    """R_F1 for completions in ``form``."""

    def f1_reward(completions: Sequence[Any], **columns: Any) -> list[float]:
        out = []
        for i, answer in enumerate(_parsed(completions, form)):
            if not answer.syntax_ok:
                out.append(0.0)
                continue
            gold_u, gold_i = _gold(i, columns)
            out.append(
                0.5 * f1_with_length_penalty(set(answer.utt_ids), gold_u)
                + 0.5 * f1_with_length_penalty(set(answer.img_ids), gold_i)
            )
        return out

    return f1_reward


def make_format_reward(form: AnswerForm = "reference") -> RewardFn:
    """R_Format for completions in ``form``."""

    def format_reward(completions: Sequence[Any], **columns: Any) -> list[float]:
        return [1.0 if a.well_formed else 0.0 for a in _parsed(completions, form)]

    return format_reward


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def coherence_sequence(
    utt_ids: Sequence[int],
    img_ids: Sequence[int],
    image_owner: Sequence[int],
    n_utterances: int,
) -> list[tuple[str, tuple[int, ...]]]:
    """The element sequence of R_Fragment: ``("u", (id,))`` for an utterance, ``("i", ids)`` for
    the predicted images of the preceding utterance. Out-of-range ids are ignored."""
    n_images = len(image_owner)
    images = sorted({i for i in img_ids if 0 <= i < n_images})
    by_owner: dict[int, list[int]] = {}
    for i in images:
        by_owner.setdefault(int(image_owner[i]), []).append(i)
    utterances = sorted({u for u in utt_ids if 0 <= u < n_utterances} | set(by_owner))
    sequence: list[tuple[str, tuple[int, ...]]] = []
    for u in utterances:
        sequence.append(("u", (u,)))
        if u in by_owner:
            sequence.append(("i", tuple(by_owner[u])))
    return sequence


def make_fragment_reward(embed: Embedder, form: AnswerForm = "reference") -> RewardFn:
    """R_Fragment bound to a frozen encoder ``embed(texts) -> array (len(texts), dim)``.

    All texts of a batch are embedded in one call (deduplicated)."""

    def fragment_reward(completions: Sequence[Any], **columns: Any) -> list[float]:
        for name in ("utterance_texts", "image_texts", "image_owner"):
            if name not in columns:
                raise ValueError(f"R_Fragment needs the column '{name}'")
        answers = _parsed(completions, form)
        out: list[float | None] = [None] * len(answers)
        sequences: dict[int, list[tuple[str, tuple[int, ...]]]] = {}
        for k, answer in enumerate(answers):
            if not answer.syntax_ok:
                out[k] = 0.0
                continue
            gold_u, gold_i = _gold(k, columns)
            gold_empty = not gold_u and not gold_i
            if answer.is_empty or gold_empty:
                out[k] = 1.0 if (answer.is_empty and gold_empty) else 0.0
                continue
            sequence = coherence_sequence(
                answer.utt_ids,
                answer.img_ids,
                columns["image_owner"][k],
                len(columns["utterance_texts"][k]),
            )
            if len(sequence) < 2:
                out[k] = 0.5
            else:
                sequences[k] = sequence

        # One embedding call for every text the batch needs.
        text_index: dict[str, int] = {}
        for k, sequence in sequences.items():
            for kind, ids in sequence:
                texts = columns["utterance_texts"][k] if kind == "u" else columns["image_texts"][k]
                for i in ids:
                    text_index.setdefault(str(texts[i]), len(text_index))
        if text_index:
            vectors = np.asarray(embed(list(text_index)), dtype=np.float64)
            if vectors.shape[0] != len(text_index):
                raise ValueError(f"embed returned {vectors.shape[0]} rows for {len(text_index)}")
            for k, sequence in sequences.items():
                elements = []
                for kind, ids in sequence:
                    texts = (
                        columns["utterance_texts"][k] if kind == "u" else columns["image_texts"][k]
                    )
                    rows = vectors[[text_index[str(texts[i])] for i in ids]]
                    elements.append(rows.mean(axis=0))
                unit = _normalise(np.stack(elements))
                out[k] = float(np.mean(np.sum(unit[:-1] * unit[1:], axis=1)))
        return [float(x) for x in out]  # type: ignore[arg-type]

    return fragment_reward


f1_reward = make_f1_reward()
format_reward = make_format_reward()


@dataclass(frozen=True)
class RewardEntry(Entry):
    """A registered reward: ``factory(form)``, or ``factory(embed, form)`` when it
    ``needs_embed`` (a frozen encoder); its weight is the :class:`RewardWeights` field of the
    same name."""

    needs_embed: bool = False


#: Every GRPO reward by name, in the order GRPOTrainer gets them.
REWARDS: Registry[RewardEntry] = Registry(
    "reward",
    {
        "f1": RewardEntry("R_F1: F1 of the picked ids with a length penalty", make_f1_reward),
        "fragment": RewardEntry(
            "R_Fragment: coherence of the pick under the frozen encoder",
            make_fragment_reward,
            needs_embed=True,
        ),
        "format": RewardEntry(
            "R_Format: the exact answer format, no duplicate ids", make_format_reward
        ),
    },
)
#: The rewards of a profile unless it names others (:class:`ffr_lib.f2rvlm.profiles.GRPOSettings`).
DEFAULT_REWARDS: tuple[str, ...] = REWARDS.names()


def _active(names: Sequence[str], weights: RewardWeights) -> list[str]:
    # A reward that needs the encoder is left out at weight 0: it would load it for nothing.
    return [
        n
        for n in REWARDS.check(names)
        if not (REWARDS.entry(n).needs_embed and getattr(weights, n) == 0)
    ]


def needs_embed(names: Sequence[str], weights: RewardWeights | None = None) -> bool:
    """Whether :func:`build_rewards` needs an ``embed`` function for these rewards."""
    weights = weights or RewardWeights()
    return any(REWARDS.entry(n).needs_embed for n in _active(names, weights))


def build_rewards(
    weights: RewardWeights | None = None,
    embed: Embedder | None = None,
    form: AnswerForm = "reference",
    names: Sequence[str] = DEFAULT_REWARDS,
) -> tuple[list[RewardFn], list[float]]:
    """The reward functions and weights for GRPOTrainer (``reward_funcs``, ``reward_weights``):
    the rewards ``names`` from :data:`REWARDS` (:class:`~ffr_lib.registry.UnknownNameError` for
    an unknown one), weighted by the ``weights`` field of the same name. A reward that needs the
    encoder (R_Fragment) is left out at weight 0; otherwise it needs ``embed``."""
    weights = weights or RewardWeights()
    funcs: list[RewardFn] = []
    ws: list[float] = []
    for name in _active(names, weights):
        entry = REWARDS.entry(name)
        factory = REWARDS.factory(name)
        if entry.needs_embed:
            if embed is None:
                raise ValueError(f"reward {name!r} has a non-zero weight but no embed function")
            funcs.append(factory(embed, form))
        else:
            funcs.append(factory(form))
        ws.append(getattr(weights, name))
    return funcs, ws
