"""What a fragment looks like to the Fragment Embedding Model, and to the index.

A fragment's text is its utterances, one ``speaker: text`` line each, with every image inline as
``[image: caption | ocr text]`` (the format of :func:`ffr_lib.segment.render_span`). Images are
understood through words: their caption, and for an image that has pixels but no caption and no
stored OCR text, the text OCR reads in it (rapidocr), so a screenshot of a menu is findable by
the dishes on it.

Extension point: when an image encoder is configured, :class:`FusedEmbedder` mixes the mean
image vector of a fragment into its text vector. None with bundled weights exists offline (no
CLIP/SigLIP on PyPI), so the default is text only; the hook is exercised by tests with a fake
encoder.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, Field

from ffr_lib.data.model import Dialogue, Image
from ffr_lib.ocr import OcrConfig, OcrReader, get_reader
from ffr_lib.segment.fragments import Fragment, render_span


class FragmentTextConfig(BaseModel):
    """How fragment texts (and vectors) are made from dialogues."""

    ocr: bool = Field(True, description="OCR images that have pixels but no caption/OCR text")
    ocr_config: OcrConfig = Field(default_factory=OcrConfig)
    image_root: Path | None = Field(
        None, description="folder that relative Image.path values are relative to"
    )
    image_encoder: str | None = Field(
        None,
        description="'package.module:factory' returning an ImageEncoder; None = text only",
    )
    image_weight: float = Field(
        0.3, ge=0, le=1, description="share of the mean image vector in a fused fragment vector"
    )


@dataclass
class FragmentRow:
    """One fragment as the index stores it. ``content_hash`` covers everything that decides the
    vector (dialogue, ids, text), so an unchanged fragment is never embedded or written twice."""

    id: str
    dialogue_id: str
    utterance_ids: list[int]
    image_ids: list[int]
    text: str
    speakers: list[str]
    started_at: datetime | None
    ended_at: datetime | None
    image_paths: list[str] = field(default_factory=list)
    content_hash: str = ""

    def __post_init__(self) -> None:
        if not self.content_hash:
            self.content_hash = fragment_content_hash(
                self.dialogue_id, self.utterance_ids, self.image_ids, self.text
            )


def fragment_content_hash(
    dialogue_id: str, utterance_ids: Sequence[int], image_ids: Sequence[int], text: str
) -> str:
    """sha256 over what the fragment vector depends on (the dialogue id is included: the same
    line in two dialogues is two fragments)."""
    payload = "\x00".join(
        [dialogue_id, ",".join(map(str, utterance_ids)), ",".join(map(str, image_ids)), text]
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def image_file(image: Image, image_root: Path | None) -> Path | None:
    """The image's pixel file if it exists locally (absolute, or relative to ``image_root``)."""
    if not image.path:
        return None
    path = Path(image.path)
    if not path.is_absolute() and image_root is not None:
        path = image_root / path
    return path if path.is_file() else None


def with_ocr(
    dialogue: Dialogue,
    config: FragmentTextConfig | None = None,
    reader: OcrReader | None = None,
) -> Dialogue:
    """The dialogue with ``ocr_text`` filled for every image that has a readable file but neither
    a caption nor OCR text yet (the input is not modified). Images with a caption keep it as
    their description: OCR is for images nobody described."""
    config = config or FragmentTextConfig()
    if not config.ocr:
        return dialogue
    todo = [
        (i, path)
        for i, image in enumerate(dialogue.images)
        if not (image.caption or "").strip()
        and not (image.ocr_text or "").strip()
        and (path := image_file(image, config.image_root)) is not None
    ]
    if not todo:
        return dialogue
    reader = reader or get_reader(config.ocr_config)
    images = list(dialogue.images)
    for i, path in todo:
        text = reader.read(path).strip()
        if text:
            images[i] = images[i].model_copy(update={"ocr_text": text})
    return dialogue.model_copy(update={"images": images})


def render_fragment(dialogue: Dialogue, utterance_ids: Sequence[int]) -> str:
    """The fragment text: the lines of ``utterance_ids`` in order (same format as render_span)."""
    return "\n".join(render_span(dialogue, i, i + 1) for i in sorted(utterance_ids))


def fragment_rows(
    dialogue: Dialogue,
    fragments: Sequence[Fragment],
    config: FragmentTextConfig | None = None,
    reader: OcrReader | None = None,
) -> list[FragmentRow]:
    """Index rows for the ``fragments`` of ``dialogue``: text with captions/OCR, speakers, time
    span, and the pixel files of their images (for an image encoder)."""
    config = config or FragmentTextConfig()
    enriched = with_ocr(dialogue, config, reader)
    rows = []
    for fragment in fragments:
        if fragment.dialogue_id != dialogue.id:
            raise ValueError(f"fragment {fragment.id} belongs to {fragment.dialogue_id}")
        utterances = [enriched.utterances[i] for i in fragment.utterance_ids]
        stamps = [u.timestamp for u in utterances if u.timestamp is not None]
        paths = [
            str(p)
            for j in fragment.image_ids
            if (p := image_file(enriched.images[j], config.image_root)) is not None
        ]
        rows.append(
            FragmentRow(
                id=fragment.id,
                dialogue_id=dialogue.id,
                utterance_ids=list(fragment.utterance_ids),
                image_ids=list(fragment.image_ids),
                text=render_fragment(enriched, fragment.utterance_ids),
                speakers=sorted({u.speaker for u in utterances}),
                started_at=min(stamps) if stamps else None,
                ended_at=max(stamps) if stamps else None,
                image_paths=paths,
            )
        )
    return rows


# ----------------------------------------------------------------------------- embedders


class Embedder(Protocol):
    """What the index needs from a FEM (``TextEncoder`` is one)."""

    @property
    def dimension(self) -> int: ...

    @property
    def model_version(self) -> str: ...

    def encode(self, texts: Sequence[str], batch_size: int = 64, normalize: bool = True) -> Any: ...


@runtime_checkable
class ImageEncoder(Protocol):
    """An image encoder whose vectors live in the same space as the text encoder's (CLIP-like)."""

    @property
    def dimension(self) -> int: ...

    @property
    def model_version(self) -> str: ...

    def encode_images(self, paths: Sequence[str]) -> np.ndarray: ...


def load_image_encoder(spec: str) -> ImageEncoder:
    """Build the image encoder named ``'package.module:factory'`` (factory called without
    arguments)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"image_encoder must look like 'package.module:factory', got {spec!r}")
    factory = getattr(importlib.import_module(module_name), attr)
    encoder = factory()
    if not isinstance(encoder, ImageEncoder):
        raise TypeError(f"{spec} did not return an ImageEncoder (encode_images, dimension, ...)")
    return encoder


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


class FusedEmbedder:
    """Text encoder + image encoder: a fragment's vector is
    ``unit((1 - w) * text_vec + w * mean(image_vecs))`` (text only when it has no image file);
    queries are embedded by the text encoder alone, in the shared space. The version string names
    both models and the weight, so fused vectors never mix with text-only ones."""

    def __init__(self, text: Any, image: ImageEncoder, weight: float = 0.3) -> None:
        if text.dimension != image.dimension:
            raise ValueError(
                f"image encoder dimension {image.dimension} != text encoder {text.dimension}: "
                "fusion needs one shared embedding space"
            )
        self.text, self.image, self.weight = text, image, weight

    @property
    def dimension(self) -> int:
        return int(self.text.dimension)

    @property
    def model_version(self) -> str:
        return f"{self.text.model_version}+img:{self.image.model_version}@w{self.weight:g}"

    @property
    def prompts(self) -> dict[str, str]:
        return dict(getattr(self.text, "prompts", {}) or {})

    def encode(self, texts: Sequence[str], batch_size: int = 64, normalize: bool = True, **kw: Any):
        return self.text.encode(texts, batch_size=batch_size, normalize=normalize, **kw)

    def encode_rows(self, rows: Sequence[FragmentRow], batch_size: int = 64, **kw: Any):
        """Fragment vectors with their images fused in."""
        vectors = np.asarray(
            self.text.encode([r.text for r in rows], batch_size=batch_size, normalize=True, **kw),
            dtype=np.float32,
        )
        for i, row in enumerate(rows):
            if row.image_paths:
                images = _unit(np.asarray(self.image.encode_images(row.image_paths), np.float32))
                vectors[i] = (1 - self.weight) * vectors[i] + self.weight * images.mean(axis=0)
        return _unit(vectors).astype(np.float32)


def build_embedder(
    text_encoder: Any, config: FragmentTextConfig | None = None, image_encoder: Any = None
) -> Any:
    """The FEM the index uses: the text encoder, or a :class:`FusedEmbedder` when an image
    encoder is given or configured."""
    config = config or FragmentTextConfig()
    if image_encoder is None and config.image_encoder:
        image_encoder = load_image_encoder(config.image_encoder)
    if image_encoder is None:
        return text_encoder
    return FusedEmbedder(text_encoder, image_encoder, config.image_weight)
