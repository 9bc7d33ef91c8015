"""The typed data model every stage shares: dialogues, utterances, images and queries.

Ids follow METHOD.md: utterance ids and image ids are two separate 0-based counters in order of
appearance inside one dialogue. An image belongs to the utterance it was sent with.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The longest utterance text accepted (characters). Chat apps cap a message at 4k-65k characters;
# a longer "utterance" is a pasted document or an attack. Readers refuse it with an InputError
# naming file, dialogue and field (docs/operations.md, "Limits").
MAX_UTTERANCE_CHARS = 100_000


class UtteranceSpan:
    """``start`` and ``end`` of a run of consecutive utterances, for classes with ascending
    ``utterance_ids`` (a fragment, a window). No annotation here: the classes declare the
    field themselves (pydantic and dataclasses would take it as a field of their own)."""

    @property
    def start(self) -> int:
        return self.utterance_ids[0]  # type: ignore[attr-defined]

    @property
    def end(self) -> int:
        """One past the last utterance id."""
        return self.utterance_ids[-1] + 1  # type: ignore[attr-defined]


class QueryType(StrEnum):
    """The four query types of the MLDR training data."""

    MULTIMODAL = "multimodal"
    UTTERANCE_ONLY = "utterance-only"
    IMAGE_ONLY = "image-only"
    NEGATIVE = "negative"

    @classmethod
    def from_gold(cls, utterance_ids: list[int], image_ids: list[int]) -> QueryType:
        """The type a gold answer implies (for readers whose data has no type field)."""
        if utterance_ids and image_ids:
            return cls.MULTIMODAL
        if utterance_ids:
            return cls.UTTERANCE_ONLY
        if image_ids:
            return cls.IMAGE_ONLY
        return cls.NEGATIVE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=False)


class Image(_Strict):
    """An image sent inside a dialogue. Pixels may be absent (PhotoChat, LoCoMo): then the caption
    and OCR text are its whole content."""

    index: int = Field(ge=0, description="dialogue-wide 0-based image id")
    utterance_index: int = Field(ge=0, description="id of the utterance the image was sent with")
    path: str | None = Field(None, description="file path, relative to the canonical file's folder")
    url: str | None = None
    caption: str | None = None
    ocr_text: str | None = None
    sha256: str | None = None
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)

    def content_text(self) -> str:
        """What a text model can know of the image: caption and OCR text."""
        parts = [p.strip() for p in (self.caption, self.ocr_text) if p and p.strip()]
        return " | ".join(parts)


class Utterance(_Strict):
    index: int = Field(ge=0, description="dialogue-wide 0-based utterance id")
    speaker: str
    text: str = ""
    timestamp: datetime | None = None


class Dialogue(_Strict):
    """A whole conversation. ``metadata`` holds provenance (source dialogue and span per
    utterance for built dialogues, session dates, topic boundaries)."""

    id: str = Field(min_length=1)
    source: str = Field(min_length=1, description="reader or builder that produced it")
    speakers: list[str] = Field(default_factory=list)
    utterances: list[Utterance] = Field(default_factory=list)
    images: list[Image] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ids_are_dense_and_owned(self) -> Dialogue:
        for position, utterance in enumerate(self.utterances):
            if utterance.index != position:
                raise ValueError(
                    f"utterances[{position}].index is {utterance.index}, expected {position} "
                    "(utterance ids are 0-based and in order)"
                )
        for position, image in enumerate(self.images):
            if image.index != position:
                raise ValueError(
                    f"images[{position}].index is {image.index}, expected {position} "
                    "(image ids are 0-based and in order)"
                )
            if image.utterance_index >= len(self.utterances):
                raise ValueError(
                    f"images[{position}].utterance_index {image.utterance_index} is out of range "
                    f"(dialogue has {len(self.utterances)} utterances)"
                )
        owners = [image.utterance_index for image in self.images]
        if owners != sorted(owners):
            raise ValueError("images must be in order of appearance (utterance_index ascending)")
        return self

    def images_of(self, utterance_index: int) -> list[Image]:
        return [image for image in self.images if image.utterance_index == utterance_index]

    def content_hash(self) -> str:
        """Stable hash of the content (not of the metadata) to detect changed re-ingests."""
        payload = {
            "id": self.id,
            "utterances": [u.model_dump(mode="json") for u in self.utterances],
            "images": [i.model_dump(mode="json") for i in self.images],
        }
        return hashlib.sha256(
            json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
        ).hexdigest()


class Query(_Strict):
    """A question with its gold fragment. ``dialogue_id`` is None for a corpus query whose gold
    lives in ``metadata['gold_by_dialogue']``; for a single-dialogue query the gold ids refer to
    that dialogue. A negative query has both gold sets empty."""

    id: str = Field(min_length=1)
    dialogue_id: str | None = None
    text: str = Field(min_length=1)
    type: QueryType
    gold_utterance_ids: list[int] = Field(default_factory=list)
    gold_image_ids: list[int] = Field(default_factory=list)
    family: str | None = Field(None, description="generator family, for difficulty reports")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _gold_matches_type(self) -> Query:
        for name in ("gold_utterance_ids", "gold_image_ids"):
            ids = getattr(self, name)
            if any(i < 0 for i in ids):
                raise ValueError(f"{name} has a negative id")
            if len(set(ids)) != len(ids):
                raise ValueError(f"{name} has duplicate ids")
            setattr(self, name, sorted(ids))
        has_utt, has_img = bool(self.gold_utterance_ids), bool(self.gold_image_ids)
        if self.dialogue_id is None and not (has_utt or has_img):
            # A corpus query keeps its gold per dialogue in metadata; the type says what it asks.
            return self
        if self.type is QueryType.NEGATIVE and (has_utt or has_img):
            raise ValueError("a negative query must have empty gold sets")
        if self.type is QueryType.IMAGE_ONLY and (has_utt or not has_img):
            raise ValueError("an image-only query needs image gold and no utterance gold")
        if self.type is QueryType.UTTERANCE_ONLY and (has_img or not has_utt):
            raise ValueError("an utterance-only query needs utterance gold and no image gold")
        if self.type is QueryType.MULTIMODAL and not (has_utt and has_img):
            raise ValueError("a multimodal query needs both utterance and image gold")
        return self

    def check_against(self, dialogue: Dialogue) -> None:
        """Raise ValueError if a gold id is outside the dialogue."""
        n_utt, n_img = len(dialogue.utterances), len(dialogue.images)
        bad_utt = [i for i in self.gold_utterance_ids if i >= n_utt]
        bad_img = [i for i in self.gold_image_ids if i >= n_img]
        if bad_utt:
            raise ValueError(f"gold utterance ids {bad_utt} out of range (0..{n_utt - 1})")
        if bad_img:
            raise ValueError(f"gold image ids {bad_img} out of range (0..{n_img - 1})")
