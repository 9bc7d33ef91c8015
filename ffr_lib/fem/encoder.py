"""The frozen text encoder: one sentence-transformers model per weights folder per process.

Used by the rewards (fragment coherence) and by the index (fragment and query vectors). The model
name goes through `resolve_model`, so `minilm`, `multilingual-e5-small`, a fine-tuned checkpoint
folder or a hub id all work the same way.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ffr_lib.models.resolve import ResolvedModel, resolve_model

DEFAULT_ENCODER = "minilm"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_CONFIG_NAMES = ("config.json", "modules.json", "tokenizer.json", "sentence_bert_config.json")


def weights_fingerprint(folder: Path, length: int = 12) -> str:
    """Short sha256 of the weight and config files of a model folder (content, not mtimes)."""
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name in _CONFIG_NAMES)
    )
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:length]


class TextEncoder:
    """A frozen sentence encoder. Prefer `TextEncoder.get(name)`, which loads each model once."""

    _cache: dict[tuple[str, str], TextEncoder] = {}
    _lock = threading.Lock()

    def __init__(self, name: str = DEFAULT_ENCODER, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        self.resolved: ResolvedModel = resolve_model(name)
        self.name = name
        self.device = device
        self.model: Any = SentenceTransformer(self.resolved.path, device=device)
        self.model.eval()
        self._version: str | None = None

    @classmethod
    def get(cls, name: str = DEFAULT_ENCODER, device: str = "cpu") -> TextEncoder:
        """The process-wide encoder for `name` (same weights folder -> same object)."""
        path = resolve_model(name).path
        key = (path, device)
        with cls._lock:
            encoder = cls._cache.get(key)
            if encoder is None:
                encoder = cls(name, device=device)
                cls._cache[key] = encoder
        return encoder

    @classmethod
    def clear_cache(cls) -> None:
        """Forget loaded encoders (e.g. after a checkpoint folder was overwritten)."""
        with cls._lock:
            cls._cache.clear()

    @property
    def dimension(self) -> int:
        """Length of the embedding vectors."""
        get_dim = getattr(self.model, "get_embedding_dimension", None) or (
            self.model.get_sentence_embedding_dimension
        )
        return int(get_dim())

    @property
    def prompts(self) -> dict[str, str]:
        """Named prompts of the model (e5: {"query": "query: ", "passage": "passage: "})."""
        return dict(getattr(self.model, "prompts", None) or {})

    @property
    def model_version(self) -> str:
        """`<alias or folder name>@<12 hex of the weights>`: stable for a given weights folder."""
        if self._version is None:
            label = self.resolved.alias or Path(self.resolved.path).name
            folder = self.resolved.local_path
            fingerprint = weights_fingerprint(folder) if folder else "hub"
            self._version = f"{label}@{fingerprint}"
        return self._version

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        normalize: bool = True,
        show_progress: bool = False,
        prompt_name: str | None = None,
    ) -> np.ndarray:
        """Embed `texts` -> float32 array [len(texts), dimension] (unit length when `normalize`;
        otherwise what the model outputs, which may already be normalised, as MiniLM is).

        `prompt_name` picks a model prompt ("query"/"passage" for e5); models without prompts
        ignore None.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        kwargs: dict[str, Any] = {}
        if prompt_name is not None:
            kwargs["prompt_name"] = prompt_name
        vectors = self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=normalize,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            **kwargs,
        )
        return np.asarray(vectors, dtype=np.float32)


def get_text_encoder(name: str = DEFAULT_ENCODER, device: str = "cpu") -> TextEncoder:
    """Shortcut for `TextEncoder.get(name, device)`."""
    return TextEncoder.get(name, device=device)
