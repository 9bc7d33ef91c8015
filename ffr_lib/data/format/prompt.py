"""The F2RVLM prompt in the reference format of METHOD.md.

One line per utterance, images inline on the line of the utterance they were sent with::

    <|utt_id_start|>0<|utt_id_end|> Alice: look at the lake <|img_id_start|>0<|img_id_end|><image>

The query is wrapped as ``<|query_start|>...<|query_end|>``. The result is a chat (system, user)
plus the images in the order of their ``<image>`` tags (what ms-swift and VLM processors expect).

For a text LM the image can be written as its caption / OCR text instead of (``caption``) or after
(``both``) the ``<image>`` tag. A subset of utterances (a sliding window, a retrieved fragment) is
rendered with LOCAL ids 0..; :class:`RenderedPrompt` keeps the local -> global maps.

Text is normalised so that each utterance stays on one line (newlines become spaces) and a text
cannot forge a marker (marker strings inside the text are neutralised).

The instruction asks for the answer only (see :mod:`ffr_lib.data.format.answer` for the think-tag
policy: a leading think block is tolerated, never requested).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ffr_lib.data.format.answer import (
    IMG_IDS_END,
    IMG_IDS_START,
    UTT_IDS_END,
    UTT_IDS_START,
    AnswerForm,
)
from ffr_lib.data.model import Dialogue, Image, Utterance

UTT_ID_START = "<|utt_id_start|>"
UTT_ID_END = "<|utt_id_end|>"
IMG_ID_START = "<|img_id_start|>"
IMG_ID_END = "<|img_id_end|>"
QUERY_START = "<|query_start|>"
QUERY_END = "<|query_end|>"
IMAGE_TOKEN = "<image>"

#: Every marker string of the prompt and the answer (to add as special tokens).
SPECIAL_TOKENS: tuple[str, ...] = (
    UTT_ID_START,
    UTT_ID_END,
    IMG_ID_START,
    IMG_ID_END,
    QUERY_START,
    QUERY_END,
    UTT_IDS_START,
    UTT_IDS_END,
    IMG_IDS_START,
    IMG_IDS_END,
)

DEFAULT_SYSTEM_PROMPT = (
    "You are a fine-grained fragment retriever for long multimodal chats. You read a dialogue "
    "and return exactly the utterances and images that answer the user's query."
)

REFERENCE_INSTRUCTION = (
    "Below is a dialogue. Each line is one utterance and starts with its utterance id between "
    "<|utt_id_start|> and <|utt_id_end|>; an image sent with an utterance appears on its line "
    "with its image id between <|img_id_start|> and <|img_id_end|>. Find every utterance and "
    "every image that the query asks about (they may be scattered). Reply with the answer only, "
    "exactly in this form: <|utt_ids_start|>[utterance ids]<|utt_ids_end|>;"
    "<|img_ids_start|>[image ids]<|img_ids_end|>, for example "
    "<|utt_ids_start|>[3, 4, 5]<|utt_ids_end|>;<|img_ids_start|>[1]<|img_ids_end|>. "
    "Use [] for an empty list; if nothing in the dialogue matches, both lists are empty."
)

COMPACT_INSTRUCTION = (
    "Below is a dialogue. Each line is one utterance and starts with its utterance id between "
    "<|utt_id_start|> and <|utt_id_end|>; an image sent with an utterance appears on its line "
    "with its image id between <|img_id_start|> and <|img_id_end|>. Find every utterance and "
    "every image that the query asks about (they may be scattered). Reply with the answer only, "
    "exactly in this form: U <utterance ids>; I <image ids>, with ranges for consecutive ids, "
    "for example U 3-5, 9; I 1. Write none for an empty list; if nothing in the dialogue "
    "matches, answer U none; I none."
)

ImageMode = Literal["placeholder", "caption", "both"]

_MARKER_RE = re.compile("|".join(re.escape(m) for m in (*SPECIAL_TOKENS, IMAGE_TOKEN)))
_WS_RE = re.compile(r"\s+")


class PromptConfig(BaseModel):
    """How a dialogue and a query become a chat prompt."""

    model_config = ConfigDict(extra="forbid")

    image_mode: ImageMode = Field(
        "placeholder",
        description="placeholder: <image> tag (VLM); caption: caption/OCR text (text LM); both",
    )
    answer_form: AnswerForm = Field(
        "reference", description="answer form the instruction asks for (and SFT targets use)"
    )
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    instruction: str | None = Field(
        None, description="task text at the start of the user turn; None = default for the form"
    )
    query_position: Literal["before", "after"] = Field(
        "after", description="query before or after the dialogue lines"
    )
    include_speaker: bool = True
    caption_template: str = Field("[image: {text}]", description="image as text; {text} field")
    empty_caption: str = Field("[image]", description="image as text when it has no caption/OCR")
    dialogue_header: str = "Dialogue:"
    query_header: str = "Query:"

    def instruction_text(self) -> str:
        if self.instruction is not None:
            return self.instruction
        return COMPACT_INSTRUCTION if self.answer_form == "compact" else REFERENCE_INSTRUCTION


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered prompt. ``images`` are the images of the ``<image>`` tags in prompt order
    (empty in caption mode). ``utterance_ids[local] = global`` and ``image_ids[local] = global``.
    """

    messages: list[dict[str, str]]
    images: list[Image]
    utterance_ids: list[int]
    image_ids: list[int]

    @property
    def system(self) -> str:
        return self.messages[0]["content"]

    @property
    def user(self) -> str:
        return self.messages[1]["content"]

    def to_global(
        self, local_utt_ids: Sequence[int], local_img_ids: Sequence[int]
    ) -> tuple[list[int], list[int]]:
        """Map local answer ids to global ids; local ids outside the prompt are dropped."""
        return _map_ids(local_utt_ids, self.utterance_ids), _map_ids(local_img_ids, self.image_ids)

    def to_local(
        self, global_utt_ids: Sequence[int], global_img_ids: Sequence[int]
    ) -> tuple[list[int], list[int]]:
        """Map global ids to local ids; ids not in the prompt are dropped (a gold answer
        restricted to a window)."""
        u = {g: i for i, g in enumerate(self.utterance_ids)}
        m = {g: i for i, g in enumerate(self.image_ids)}
        return (
            sorted({u[g] for g in global_utt_ids if g in u}),
            sorted({m[g] for g in global_img_ids if g in m}),
        )


def _map_ids(local: Sequence[int], table: Sequence[int]) -> list[int]:
    n = len(table)
    return sorted({table[i] for i in local if 0 <= i < n})


def clean_text(text: str) -> str:
    """One line, no marker strings: a text must not break the line format or forge an id."""
    text = _MARKER_RE.sub(lambda m: m.group(0).replace("<", "‹").replace(">", "›"), text)
    return _WS_RE.sub(" ", text).strip()


def render_image(local_id: int, image: Image, config: PromptConfig) -> str:
    """One image as it appears on its utterance line."""
    out = f"{IMG_ID_START}{local_id}{IMG_ID_END}"
    if config.image_mode in ("placeholder", "both"):
        out += IMAGE_TOKEN
    if config.image_mode in ("caption", "both"):
        content = clean_text(image.content_text())
        out += config.caption_template.format(text=content) if content else config.empty_caption
    return out


def render_utterance_line(
    local_id: int,
    utterance: Utterance,
    images: Sequence[tuple[int, Image]],
    config: PromptConfig,
    annotation: str | None = None,
) -> str:
    """One utterance line: id marker, ``speaker: text``, then its images (local id, image), then
    an optional annotation (e.g. a retriever score)."""
    line = f"{UTT_ID_START}{local_id}{UTT_ID_END}"
    text = clean_text(utterance.text)
    speaker = clean_text(utterance.speaker).replace(":", "") if config.include_speaker else ""
    if speaker:
        line += f" {speaker}:"
    if text:
        line += f" {text}"
    for image_local_id, image in images:
        line += " " + render_image(image_local_id, image, config)
    if annotation:
        line += " " + clean_text(annotation)
    return line


def wrap_query(query: str) -> str:
    return f"{QUERY_START}{clean_text(query)}{QUERY_END}"


def render_prompt(
    dialogue: Dialogue,
    query: str,
    config: PromptConfig | None = None,
    utterance_ids: Sequence[int] | None = None,
    annotations: Mapping[int, str] | None = None,
) -> RenderedPrompt:
    """Render ``dialogue`` (or the utterances ``utterance_ids`` of it, global ids) and ``query``.

    The selected utterances are renumbered 0.. in dialogue order, their images 0.. in order of
    appearance. ``annotations`` maps GLOBAL utterance ids to a short text appended to the line.
    """
    config = config or PromptConfig()
    if utterance_ids is None:
        selected = list(range(len(dialogue.utterances)))
    else:
        selected = sorted(set(utterance_ids))
        if selected and (selected[0] < 0 or selected[-1] >= len(dialogue.utterances)):
            raise ValueError(
                f"utterance ids {selected[0]}..{selected[-1]} outside dialogue {dialogue.id} "
                f"({len(dialogue.utterances)} utterances)"
            )
    images_by_owner: dict[int, list[Image]] = {}
    for image in dialogue.images:
        images_by_owner.setdefault(image.utterance_index, []).append(image)

    lines: list[str] = []
    image_ids: list[int] = []
    tagged: list[Image] = []
    for local_id, global_id in enumerate(selected):
        owned = []
        for image in images_by_owner.get(global_id, []):
            owned.append((len(image_ids), image))
            image_ids.append(image.index)
        if config.image_mode != "caption":
            tagged.extend(image for _, image in owned)
        note = annotations.get(global_id) if annotations else None
        lines.append(
            render_utterance_line(local_id, dialogue.utterances[global_id], owned, config, note)
        )

    query_block = f"{config.query_header} {wrap_query(query)}".strip()
    dialogue_block = "\n".join([config.dialogue_header, *lines]).strip()
    blocks = [config.instruction_text()]
    blocks += (
        [query_block, dialogue_block]
        if config.query_position == "before"
        else [dialogue_block, query_block]
    )
    user = "\n\n".join(b for b in blocks if b)
    messages = [
        {"role": "system", "content": config.system_prompt},
        {"role": "user", "content": user},
    ]
    return RenderedPrompt(messages, tagged, selected, image_ids)
