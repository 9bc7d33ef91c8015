"""Sliding windows over long dialogues and the merge of their answers back to global ids.

A window is a contiguous run of utterances (with the images they own), rendered with local ids
0.. by :func:`ffr_lib.data.format.prompt.render_prompt`. Windows are cut greedily from the start:
each holds at most ``max_utterances`` utterances and, when a token counter is given, at most
``max_tokens`` tokens of utterance lines; the next window starts ``overlap`` utterances before the
end of the previous one (always advancing by at least one utterance). A single utterance longer
than the token budget still forms a window of its own (it cannot be split without losing ids).

Merge policy: ``union`` (default) keeps every id any window predicted: a fragment cut by a window
border is only seen whole by one of the windows, and the windows that see only part of it should
not veto it. ``unanimous`` keeps an id only if every window that contains it predicted it (for
precision-leaning use). Local ids outside their window (hallucinated) are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ffr_lib.data.format.answer import ParsedAnswer
from ffr_lib.data.format.prompt import PromptConfig, render_utterance_line
from ffr_lib.data.model import Dialogue, UtteranceSpan

MergePolicy = Literal["union", "unanimous"]


class WindowConfig(BaseModel):
    """Window limits. Budgets count the utterance lines only: the caller subtracts the fixed
    part of the prompt (instruction, query, chat template) from the model's context."""

    model_config = ConfigDict(extra="forbid")

    max_utterances: int | None = Field(100, ge=1, description="utterances per window")
    max_tokens: int | None = Field(None, ge=1, description="tokens of utterance lines per window")
    overlap: int = Field(10, ge=0, description="utterances shared by consecutive windows")
    image_token_cost: int = Field(
        0, ge=0, description="extra tokens per image (vision tokens behind one <image> tag)"
    )

    @model_validator(mode="after")
    def _check(self) -> WindowConfig:
        if self.max_utterances is None and self.max_tokens is None:
            raise ValueError("set max_utterances or max_tokens")
        if self.max_utterances is not None and self.overlap >= self.max_utterances:
            raise ValueError("overlap must be smaller than max_utterances")
        return self


@dataclass(frozen=True)
class Window(UtteranceSpan):
    """Global ids of one window: ``utterance_ids[local] = global``, same for images."""

    utterance_ids: tuple[int, ...]
    image_ids: tuple[int, ...]

    def to_global(
        self, local_utt_ids: Sequence[int], local_img_ids: Sequence[int]
    ) -> tuple[list[int], list[int]]:
        """Local answer ids -> global ids (out-of-window local ids dropped)."""
        nu, ni = len(self.utterance_ids), len(self.image_ids)
        return (
            sorted({self.utterance_ids[i] for i in local_utt_ids if 0 <= i < nu}),
            sorted({self.image_ids[i] for i in local_img_ids if 0 <= i < ni}),
        )

    def to_local(
        self, global_utt_ids: Sequence[int], global_img_ids: Sequence[int]
    ) -> tuple[list[int], list[int]]:
        """Global ids -> local ids of this window (ids outside it dropped): the window's gold."""
        u = {g: i for i, g in enumerate(self.utterance_ids)}
        m = {g: i for i, g in enumerate(self.image_ids)}
        return (
            sorted({u[g] for g in global_utt_ids if g in u}),
            sorted({m[g] for g in global_img_ids if g in m}),
        )


def plan_windows(
    dialogue: Dialogue,
    config: WindowConfig | None = None,
    token_counter: Callable[[str], int] | None = None,
    prompt_config: PromptConfig | None = None,
    utterance_ids: Sequence[int] | None = None,
) -> list[Window]:
    """Cut ``dialogue`` into windows (one window when it fits). ``token_counter`` counts the
    tokens of a rendered utterance line (rendered as it will appear, local ids included);
    it is required when ``config.max_tokens`` is set. ``utterance_ids`` limits the windows to
    those utterances (a retrieved fragment), in dialogue order; None = the whole dialogue."""
    config = config or WindowConfig()
    prompt_config = prompt_config or PromptConfig()
    if config.max_tokens is not None and token_counter is None:
        raise ValueError("max_tokens needs a token_counter")
    n_dialogue = len(dialogue.utterances)
    ids = sorted(set(utterance_ids)) if utterance_ids is not None else list(range(n_dialogue))
    if ids and (ids[0] < 0 or ids[-1] >= n_dialogue):
        raise ValueError(
            f"dialogue {dialogue.id}: utterance ids {ids[0]}..{ids[-1]} outside 0..{n_dialogue - 1}"
        )
    n = len(ids)
    if n == 0:
        return []
    owned: list[list[int]] = [[] for _ in range(n_dialogue)]
    for image in dialogue.images:
        owned[image.utterance_index].append(image.index)

    def cost(global_id: int, local_id: int, first_local_image: int) -> int:
        images = [
            (first_local_image + k, dialogue.images[g]) for k, g in enumerate(owned[global_id])
        ]
        line = render_utterance_line(
            local_id, dialogue.utterances[global_id], images, prompt_config
        )
        assert token_counter is not None
        return token_counter(line) + config.image_token_cost * len(images)

    windows: list[Window] = []
    start = 0
    while True:
        end = start
        tokens = 0
        n_images = 0
        while end < n:
            if config.max_utterances is not None and end - start >= config.max_utterances:
                break
            if config.max_tokens is not None:
                c = cost(ids[end], end - start, n_images)
                if end > start and tokens + c > config.max_tokens:
                    break
                tokens += c
            n_images += len(owned[ids[end]])
            end += 1
        utt = tuple(ids[start:end])
        img = tuple(g for u in utt for g in owned[u])
        windows.append(Window(utt, img))
        if end >= n:
            return windows
        start = max(start + 1, end - config.overlap)


def merge_window_answers(
    windows: Sequence[Window],
    answers: Sequence[ParsedAnswer | tuple[Sequence[int], Sequence[int]]],
    policy: MergePolicy = "union",
) -> tuple[list[int], list[int]]:
    """Merge per-window LOCAL answers into global (utterance ids, image ids), see the module
    docstring for the policies. ``answers[k]`` belongs to ``windows[k]``."""
    if len(windows) != len(answers):
        raise ValueError(f"{len(windows)} windows but {len(answers)} answers")
    predicted_u: dict[int, int] = {}
    predicted_i: dict[int, int] = {}
    seen_u: dict[int, int] = {}
    seen_i: dict[int, int] = {}
    for window, answer in zip(windows, answers, strict=True):
        local_u, local_i = (
            (answer.utt_ids, answer.img_ids) if isinstance(answer, ParsedAnswer) else answer
        )
        glob_u, glob_i = window.to_global(local_u, local_i)
        for g in glob_u:
            predicted_u[g] = predicted_u.get(g, 0) + 1
        for g in glob_i:
            predicted_i[g] = predicted_i.get(g, 0) + 1
        for g in window.utterance_ids:
            seen_u[g] = seen_u.get(g, 0) + 1
        for g in window.image_ids:
            seen_i[g] = seen_i.get(g, 0) + 1
    if policy == "union":
        return sorted(predicted_u), sorted(predicted_i)
    if policy == "unanimous":
        return (
            sorted(g for g, k in predicted_u.items() if k == seen_u[g]),
            sorted(g for g, k in predicted_i.items() if k == seen_i[g]),
        )
    raise ValueError(f"unknown merge policy {policy!r}")
