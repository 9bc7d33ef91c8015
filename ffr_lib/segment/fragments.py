"""The ``Fragment`` type: a run of consecutive utterances (with their images) cut from a dialogue."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pydantic import BaseModel, Field

from ffr_lib.data.model import Dialogue, UtteranceSpan


class Fragment(UtteranceSpan, BaseModel):
    """A minimal semantic fragment. ``id`` is stable: it hashes the dialogue id, the utterance
    span and the rendered content, so re-cutting unchanged content gives the same ids."""

    id: str
    dialogue_id: str
    utterance_ids: list[int] = Field(min_length=1)
    image_ids: list[int] = Field(default_factory=list)
    text: str = Field(description="speaker-prefixed lines with image caption/OCR inline")


def render_span(dialogue: Dialogue, start: int, end: int) -> str:
    """Text of utterances ``[start, end)``: one line each, images as ``[image: caption | ocr]``."""
    lines = []
    for i in range(start, end):
        u = dialogue.utterances[i]
        parts = [f"{u.speaker}: {u.text}".rstrip()]
        for image in dialogue.images_of(i):
            content = image.content_text()
            parts.append(f"[image: {content}]" if content else "[image]")
        lines.append(" ".join(parts))
    return "\n".join(lines)


def fragment_id(dialogue_id: str, start: int, end: int, text: str) -> str:
    digest = hashlib.sha256(f"{dialogue_id}\x00{start}:{end}\x00{text}".encode()).hexdigest()
    return f"frag-{digest[:20]}"


def fragments_from_boundaries(dialogue: Dialogue, boundaries: Sequence[int]) -> list[Fragment]:
    """Cut ``dialogue`` at ``boundaries`` (utterance ids that start a new fragment; 0 and
    out-of-range ids are ignored). Every utterance lands in exactly one fragment and every image
    in the fragment of its utterance."""
    n = len(dialogue.utterances)
    cuts = sorted({b for b in boundaries if 0 < b < n})
    edges = [0, *cuts, n] if n else []
    out: list[Fragment] = []
    for start, end in zip(edges, edges[1:], strict=False):
        text = render_span(dialogue, start, end)
        out.append(
            Fragment(
                id=fragment_id(dialogue.id, start, end, text),
                dialogue_id=dialogue.id,
                utterance_ids=list(range(start, end)),
                image_ids=[im.index for im in dialogue.images if start <= im.utterance_index < end],
                text=text,
            )
        )
    return out
