"""What a fragment looks like to the Fragment Embedding Model, and to the index.

A fragment's text is its utterances, one ``speaker: text`` line each, with every image inline as
``[image: caption | ocr text]`` (the format of :func:`ffr_lib.segment.render_span`). Images are
understood through words: their caption, and for an image that has pixels but no caption and no
stored OCR text, the text OCR reads in it (rapidocr), so a screenshot of a menu is findable by
the dishes on it.

Long fragments: the encoder reads at most ``max_seq_length`` tokens (MiniLM: 256, special
tokens included) and cuts the rest, while real meeting fragments run to ~225 words and more. By
default (``FragmentTextConfig.long_text = "chunk_mean"``) the index embeds a longer text with
:class:`ChunkedEmbedder`: line-aligned chunks that each fit the window and together cover every
token, combined into one vector, so a line at the end of a fragment counts as much as one at the
start. A text that fits is embedded exactly as before, and the SQL functions still see one vector
per fragment, and keeps each chunk's vector as a part of the fragment: the search scores a
fragment by its nearest part (sql/migrations/0008), so one relevant line in a long fragment is
not diluted by the rest. The FEM version gets ``+parts``, so chunked and truncated vectors never
mix.

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
from typing import Any, Literal, Protocol, runtime_checkable

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
    long_text: Literal["chunk_mean", "truncate"] = Field(
        "chunk_mean",
        description="a fragment text longer than the encoder's window (max_seq_length tokens): "
        "'chunk_mean' embeds it in line-aligned chunks that fit the window and cover every token "
        "(one line of overlap; an over-long line is split by tokens), one vector = the "
        "token-count-weighted mean of the chunk vectors, unit length, and each chunk's vector "
        "kept as a part the search scores the fragment by (FEM version + '+parts'); "
        "'truncate' lets the encoder cut it at the window (what it reads ends there)",
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


#: Version suffix of a chunked index with parts (0008).
CHUNKS_SUFFIX = "+parts"
#: The suffix of chunked indexes built before 0008 (means, no parts): they still serve queries.
LEGACY_CHUNKS_SUFFIX = "+chunks"


class ChunkedEmbedder:
    """A text encoder that reads every token of a long text.

    A text that fits the encoder's window (``max_seq_length`` tokens with the special tokens and
    the prompt, if any) is embedded exactly as the encoder does it. A longer one is split at its
    line (utterance) boundaries into chunks that each fit the window, with one line of overlap
    between neighbours (a single line longer than the window is split by tokens); the chunks of
    every text in the call are embedded in one batched encoder call, and the text's vector is
    the mean of its chunk vectors weighted by their token counts, at unit length. Queries go
    through the same :meth:`encode` (a short query is unchanged).

    ``model_version`` is the encoder's plus ``+parts``: an index built this way is its own FEM
    version, never mixed with truncated vectors; the index registers the encoder's ``spec`` as
    the version's model path, and :func:`embedder_for_version` rebuilds the embedder from it.
    """

    overlap_lines = 1

    def __init__(self, text: Any, suffix: str = CHUNKS_SUFFIX) -> None:
        if not self.supports(text):
            raise TypeError(f"{type(text).__name__} has no tokenizer/max_seq_length to chunk by")
        self.text, self.suffix = text, suffix

    @staticmethod
    def supports(text: Any) -> bool:
        """Whether ``text`` exposes what chunking needs (a tokenizer and a window)."""
        return getattr(text, "tokenizer", None) is not None and bool(
            getattr(text, "max_seq_length", None)
        )

    @property
    def dimension(self) -> int:
        return int(self.text.dimension)

    @property
    def model_version(self) -> str:
        return f"{self.text.model_version}{self.suffix}"

    @property
    def prompts(self) -> dict[str, str]:
        return dict(getattr(self.text, "prompts", {}) or {})

    @property
    def spec(self) -> str | None:
        """What loads the text encoder again (the index's ``model_path``)."""
        return getattr(self.text, "spec", None)

    @property
    def resolved(self) -> Any:
        return getattr(self.text, "resolved", None)

    def budget(self, prompt_name: str | None = None) -> int:
        """Tokens of text one encoder call reads: the window less the special tokens and the
        prompt."""
        tokenizer = self.text.tokenizer
        budget = int(self.text.max_seq_length) - tokenizer.num_special_tokens_to_add(pair=False)
        prompt = self.prompts.get(prompt_name) if prompt_name else None
        if prompt:
            budget -= len(self._ids([prompt])[0])
        return max(budget, 1)

    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        return self.text.tokenizer(list(texts), add_special_tokens=False, verbose=False)[
            "input_ids"
        ]

    def _split_by_tokens(self, line: str, budget: int) -> list[str]:
        """``line`` cut into pieces of at most ``budget`` tokens, at word starts (mid-word only
        for a word longer than the budget), so the pieces' tokens are the line's."""
        tokenizer = self.text.tokenizer
        if getattr(tokenizer, "is_fast", False):
            encoding = tokenizer(
                line, add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )
            offsets, words = encoding["offset_mapping"], encoding.word_ids()
            cuts, begin = [], 0
            while len(offsets) - begin > budget:
                cut = begin + budget
                while cut > begin and words[cut] is not None and words[cut] == words[cut - 1]:
                    cut -= 1  # back to the first token of the word
                cut = cut if cut > begin else begin + budget
                cuts.append(offsets[cut][0])
                begin = cut
            bounds = [0, *cuts, len(line)]
            return [line[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if line[a:b]]
        ids = self._ids([line])[0]
        return [tokenizer.decode(ids[i : i + budget]) for i in range(0, len(ids), budget)]

    def chunks(self, text: str, prompt_name: str | None = None) -> list[tuple[str, int]]:
        """The pieces ``text`` is embedded as, with their token counts: ``[(text, n)]`` when it
        fits the window, else line-aligned chunks that cover all of its tokens."""
        budget = self.budget(prompt_name)
        n = len(self._ids([text])[0])
        return [(text, n)] if n <= budget else self._chunks(text, budget)

    def _chunks(self, text: str, budget: int) -> list[tuple[str, int]]:
        lines = text.split("\n")
        units: list[tuple[str, int, bool]] = []  # (text, tokens, a whole line)
        for line, ids in zip(lines, self._ids(lines), strict=True):
            if len(ids) <= budget:
                units.append((line, len(ids), True))
            else:
                pieces = self._split_by_tokens(line, budget)
                units.extend(
                    (p, len(i), False) for p, i in zip(pieces, self._ids(pieces), strict=True)
                )
        groups: list[list[tuple[str, int, bool]]] = []
        current: list[tuple[str, int, bool]] = []
        for unit in units:
            if current and sum(u[1] for u in current) + unit[1] > budget:
                groups.append(current)
                keep = current[-self.overlap_lines :] if self.overlap_lines else []
                whole = all(u[2] for u in keep) and unit[2]
                fits = sum(u[1] for u in keep) + unit[1] <= budget
                current = list(keep) if whole and fits else []
            current.append(unit)
        groups.append(current)
        texts = ["\n".join(u[0] for u in group) for group in groups]
        out: list[tuple[str, int]] = []
        # Counted again as joined: a tokenizer that is not additive over lines may go over.
        for chunk, ids in zip(texts, self._ids(texts), strict=True):
            if len(ids) <= budget:
                out.append((chunk, len(ids)))
            else:
                pieces = self._split_by_tokens(chunk, budget)
                out.extend((p, len(i)) for p, i in zip(pieces, self._ids(pieces), strict=True))
        return out

    def encode(self, texts: Sequence[str], batch_size: int = 64, normalize: bool = True, **kw: Any):
        """Vectors of ``texts`` (``kw`` goes to the encoder: ``prompt_name``, ``memo``, ...)."""
        return self.encode_parts(texts, batch_size=batch_size, normalize=normalize, **kw)[0]

    def encode_parts(
        self, texts: Sequence[str], batch_size: int = 64, normalize: bool = True, **kw: Any
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The vectors of ``texts`` and, for each text longer than the window, the vectors of its
        chunks (``[n_chunks, dim]``; ``[0, dim]`` for a text that fits). The index stores the
        chunks as the fragment's parts, and the search scores a fragment by its nearest part
        (sql/migrations/0008)."""
        texts = list(texts)
        if not texts:
            empty = np.asarray(
                self.text.encode(texts, batch_size=batch_size, normalize=normalize, **kw),
                np.float32,
            )
            return empty, []
        budget = self.budget(kw.get("prompt_name"))
        counts = [len(ids) for ids in self._ids(texts)]
        plans = {i: self._chunks(texts[i], budget) for i, n in enumerate(counts) if n > budget}
        short = [i for i in range(len(texts)) if i not in plans]
        batch = [texts[i] for i in short] + [c for i in plans for c, _ in plans[i]]
        vectors = np.asarray(
            self.text.encode(batch, batch_size=batch_size, normalize=normalize, **kw), np.float32
        )
        out = np.empty((len(texts), vectors.shape[1]), np.float32)
        parts = [np.zeros((0, vectors.shape[1]), np.float32) for _ in texts]
        out[short] = vectors[: len(short)]
        at = len(short)
        for i, plan in plans.items():
            weights = np.array([max(n, 1) for _, n in plan], np.float32)
            parts[i] = vectors[at : at + len(weights)]
            at += len(weights)
            mean = (weights[:, None] * parts[i]).sum(axis=0) / weights.sum()
            out[i] = _unit(mean[None])[0] if normalize else mean
        return out, parts


def embedder_for_version(text_encoder: Any, version: str) -> Any | None:
    """The embedder of ``text_encoder`` whose ``model_version`` is ``version`` (the encoder itself,
    or its :class:`ChunkedEmbedder`, with parts or from before them), or None when none is (the
    weights changed)."""
    if str(text_encoder.model_version) == version:
        return text_encoder
    if ChunkedEmbedder.supports(text_encoder):
        for suffix in (CHUNKS_SUFFIX, LEGACY_CHUNKS_SUFFIX):
            chunked = ChunkedEmbedder(text_encoder, suffix)
            if chunked.model_version == version:
                return chunked
    return None


def build_embedder(
    text_encoder: Any, config: FragmentTextConfig | None = None, image_encoder: Any = None
) -> Any:
    """The FEM the index uses: the text encoder, through a :class:`ChunkedEmbedder` when
    ``config.long_text`` is ``chunk_mean`` (the default) and the encoder has a tokenizer, inside
    a :class:`FusedEmbedder` when an image encoder is given or configured."""
    config = config or FragmentTextConfig()
    if isinstance(text_encoder, ChunkedEmbedder):
        text_encoder = text_encoder.text
    if config.long_text == "chunk_mean" and ChunkedEmbedder.supports(text_encoder):
        text_encoder = ChunkedEmbedder(text_encoder)
    if image_encoder is None and config.image_encoder:
        image_encoder = load_image_encoder(config.image_encoder)
    if image_encoder is None:
        return text_encoder
    return FusedEmbedder(text_encoder, image_encoder, config.image_weight)
