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
MEMO_MAX_ENTRIES = 400_000  # ~600 MB of 384-d vectors; the memo starts over beyond it
BULK_TEXTS = 256  # from this many texts the torch thread count follows the load (ffr_lib.threads)
PROGRESS_MIN_TEXTS = 2_000  # inputs this large are embedded in chunks with progress lines
PROGRESS_CHUNK = 1_024


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
        # Vectors already computed by this encoder, keyed by (normalize, prompt, text): each
        # distinct text is embedded once per process, however many steps ask for it (the demo
        # materializes segmentation, FEM evaluation, index and evaluation in one process).
        self._memo: dict[tuple[bool, str | None, str], np.ndarray] = {}
        self.memo_hits = 0
        self.memo_misses = 0

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
    def forget(cls, name: str) -> None:
        """Drop the loaded encoder of ``name`` (its folder was overwritten, e.g. retrained)."""
        path = resolve_model(name).path
        with cls._lock:
            for key in [k for k in cls._cache if k[0] == path]:
                del cls._cache[key]

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
        desc: str | None = None,
        memo: bool | None = None,
    ) -> np.ndarray:
        """Embed `texts` -> float32 array [len(texts), dimension] (unit length when `normalize`;
        otherwise what the model outputs, which may already be normalised, as MiniLM is).

        `prompt_name` picks a model prompt ("query"/"passage" for e5); models without prompts
        ignore None. With `memo` (default: for more than one text) each distinct text is
        embedded once per encoder: repeats and texts seen in earlier calls come from memory. A
        single text (a query) is embedded anew by default, so query latency measures real work.
        Large inputs are embedded in chunks and report progress
        (:class:`ffr_lib.progress.Progress`, titled `desc`).
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if memo is None:
            memo = len(texts) > 1
        if not memo:
            return self._encode_new(texts, batch_size, normalize, show_progress, prompt_name, desc)
        cache = self._memo
        todo: list[str] = []
        pending: set[str] = set()
        for text in texts:
            if (normalize, prompt_name, text) not in cache and text not in pending:
                pending.add(text)
                todo.append(text)
        self.memo_misses += len(todo)
        self.memo_hits += len(texts) - len(todo)
        if todo:
            if len(cache) + len(todo) > MEMO_MAX_ENTRIES:
                cache.clear()
            for text, vector in zip(
                todo,
                self._encode_new(todo, batch_size, normalize, show_progress, prompt_name, desc),
                strict=True,
            ):
                cache[(normalize, prompt_name, text)] = vector
        return np.stack([cache[(normalize, prompt_name, text)] for text in texts])

    def _encode_new(
        self,
        texts: list[str],
        batch_size: int,
        normalize: bool,
        show_progress: bool,
        prompt_name: str | None,
        desc: str | None,
    ) -> np.ndarray:
        kwargs: dict[str, Any] = {}
        if prompt_name is not None:
            kwargs["prompt_name"] = prompt_name

        def run(chunk: list[str]) -> np.ndarray:
            vectors = self.model.encode(
                chunk,
                batch_size=batch_size,
                normalize_embeddings=normalize,
                show_progress_bar=show_progress,
                convert_to_numpy=True,
                **kwargs,
            )
            return np.asarray(vectors, dtype=np.float32)

        if len(texts) < BULK_TEXTS:
            return run(texts)  # queries and small batches: no thread switching, no progress
        from ffr_lib.progress import Progress
        from ffr_lib.threads import torch_threads

        if len(texts) < PROGRESS_MIN_TEXTS:
            with torch_threads():
                return run(texts)
        parts = []
        label = desc or f"embed with {self.resolved.alias or Path(self.resolved.path).name}"
        with Progress(len(texts), label, unit="texts") as bar:
            for start in range(0, len(texts), PROGRESS_CHUNK):
                chunk = texts[start : start + PROGRESS_CHUNK]
                with torch_threads():  # re-read the load per chunk: it changes over minutes
                    parts.append(run(chunk))
                bar.update(len(chunk))
        return np.concatenate(parts)


def get_text_encoder(name: str = DEFAULT_ENCODER, device: str = "cpu") -> TextEncoder:
    """Shortcut for `TextEncoder.get(name, device)`."""
    return TextEncoder.get(name, device=device)
